"""`mirnet-bench`: statistics, report formats, backends, models, real runs in fresh processes, memory."""

from __future__ import annotations

import csv
import json
import platform
import re
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from bench.backends import ALL_AVAILABLE, probe_backends, resolve_backends
from bench.latency import summarize, throughput, time_runs
from bench.latency_cli import mirnet_bench
from bench.models import Artifacts, Unsupported, gmacs, resolve_engine, resolve_model
from bench.report import BenchResult, format_table, load_json, to_markdown, write_csv, write_json
from bench.worker import Job, WorkerFailed, measure, run_fresh
from mirnet_deploy.errors import UserError
from mirnet_deploy.host_allocator import configure_host_allocator

#: The fields the issue requires in every JSON record.
REQUIRED_FIELDS = ("backend", "precision", "model", "resolution", "batch", "first_ms", "p50_ms", "p90_ms",
                   "p99_ms", "mean_ms", "std_ms", "mp_per_s", "gmacs_per_s", "peak_host_mb")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    """The small preset's cache (seeded checkpoint, FP32 export), shared by this module's tests."""
    return Artifacts(resolve_model("small"), tmp_path_factory.mktemp("bench-cache"), log=lambda _: None)


# ---------------------------------------------------------------------------------------------------
# Timing and statistics


def test_statistics_of_known_samples():
    stats = summarize([float(v) for v in range(1, 101)])  # 1..100 ms
    assert stats.iterations == 100
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == pytest.approx((50.5, 90.1, 99.01))
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.std_ms == pytest.approx((100 * 101 / 12) ** 0.5)  # sample std of 1..n: sqrt(n(n+1)/12)
    assert (stats.min_ms, stats.max_ms) == (1.0, 100.0)
    assert summarize([7.0]).std_ms == 0.0


def test_throughput_and_peak_fraction():
    stats = summarize([100.0, 100.0])  # 10 runs/s
    rates = throughput(stats, batch=2, output_pixels=1_000_000, gmacs=10.0, peak_gmacs_per_s=200.0)
    assert rates.images_per_s == pytest.approx(20.0)
    assert rates.mp_per_s == pytest.approx(20.0)
    assert rates.gmacs_per_s == pytest.approx(100.0)
    assert rates.cpu_peak_fraction == pytest.approx(0.5)
    unknown = throughput(stats, batch=1, output_pixels=1, gmacs=None, peak_gmacs_per_s=None)
    assert unknown.gmacs_per_s is None
    assert unknown.cpu_peak_fraction is None


def test_time_runs_separates_first_run_and_warmup_and_meets_both_minimums():
    durations = iter([0.05] + [0.0] * 1000)  # the first call is slow, as a first run is
    calls = []

    def run() -> None:
        calls.append(1)
        time.sleep(next(durations))

    timing = time_runs(run, warmup=2, min_iters=4, min_seconds=0.0)
    assert timing.first_ms >= 50.0
    assert len(timing.samples_ms) == 4
    assert max(timing.samples_ms) < 50.0
    assert len(calls) == 1 + 2 + 4
    long = time_runs(lambda: time.sleep(0.002), warmup=0, min_iters=1, min_seconds=0.03)
    # the loop runs until 30 ms of wall time have passed; the time between samples is not in them
    assert sum(long.samples_ms) >= 0.8 * 30.0
    assert len(long.samples_ms) >= 2


# ---------------------------------------------------------------------------------------------------
# Reports


def _results() -> list[BenchResult]:
    ok = BenchResult(model="small", backend="ort", precision="fp32", resolution="64x64", batch=1, status="ok",
                     device="cpu", threads=1, output_mp=0.004096, first_ms=25.5, p50_ms=10.25, p90_ms=11.0,
                     p99_ms=12.125, mean_ms=10.5, std_ms=0.5, min_ms=9.75, iterations=3, measured_s=0.0315,
                     images_per_s=95.238, mp_per_s=0.39, gmacs=0.62, gmacs_per_s=59.0,
                     cpu_peak_fraction=0.61, peak_host_mb=300.5, host_baseline_mb=240.0,
                     peak_host_delta_mb=60.5, artifact="small.fp32.onnx")
    unsupported = BenchResult(model="small", backend="torch", precision="int8", resolution="64x64", batch=1,
                              status="unsupported", reason="PyTorch eager is benchmarked in FP32 only")
    return [ok, unsupported]


ENVIRONMENT = {"timestamp": "2025-01-01T00:00:00+00:00", "command": "mirnet-bench --res 64", "threads": 1,
               "cpu_model": "Test CPU", "versions": {"torch": "2.13.0", "tensorrt": None},
               "cuda": "no CUDA device found", "gpus": [],
               "cpu_peak": {"gmacs_per_s": 96.5, "matmul": "float32 2048x2048 matmul, torch.mm",
                            "threads": 1}}


def test_json_round_trip_and_required_fields(tmp_path):
    results = _results()
    skipped = [{"backend": "tensorrt", "reason": "the `tensorrt` package is not installed"}]
    write_json(tmp_path / "r.json", results, ENVIRONMENT, skipped)
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) >= {"environment", "results"}
    assert all(field in record for record in data["results"] for field in REQUIRED_FIELDS)
    assert load_json(tmp_path / "r.json") == (results, ENVIRONMENT, skipped)


def test_csv_round_trip(tmp_path):
    results = _results()
    write_csv(tmp_path / "r.csv", results)
    with open(tmp_path / "r.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert float(rows[0]["p99_ms"]) == results[0].p99_ms
    assert float(rows[0]["peak_host_mb"]) == 300.5
    assert rows[1]["status"] == "unsupported"
    assert rows[1]["p50_ms"] == ""  # None is an empty cell


def test_tables_show_measured_rows_and_reasons():
    results = _results()
    table = format_table(results, ENVIRONMENT, [{"backend": "tensorrt", "reason": "not installed"}])
    assert "Test CPU, 1 thread" in table
    assert "96.5 GMAC/s" in table
    ort_row = next(line for line in table.splitlines() if line.startswith("ort"))
    assert re.search(r"10\.2 +11\.0 +12\.1 ", ort_row)
    assert "300 (+60)" in ort_row
    assert "unsupported: PyTorch eager is benchmarked in FP32 only" in table
    assert "skipped tensorrt: not installed" in table
    markdown = to_markdown(results, ENVIRONMENT)
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(results)  # header, rule, one line per result
    assert len({line.count("|") for line in table_lines}) == 1  # every row has every column


# ---------------------------------------------------------------------------------------------------
# Backends and models


def test_backends_are_probed_and_unavailable_ones_explained():
    availability = probe_backends()
    assert availability["torch"].available
    assert availability["ort"].available
    run, skipped = resolve_backends(ALL_AVAILABLE)
    assert set(run) == {name for name, a in availability.items() if a.available}
    assert {a.backend for a in skipped} == {name for name, a in availability.items() if not a.available}
    for name in (a.backend for a in skipped):
        with pytest.raises(UserError, match=re.escape(availability[name].reason[:40])):
            resolve_backends(f"torch,{name}")
    with pytest.raises(UserError, match="Unknown backend nope"):
        resolve_backends("nope")


@pytest.mark.slow
def test_macs_come_from_the_preset_or_onnx_metadata_and_are_null_without(artifacts, tmp_path):
    small = resolve_model("small")
    expected = gmacs(small, (64, 48), 2)
    assert expected == pytest.approx(0.15e6 * 64 * 48 * 2 / 1e9, rel=0.1)  # README: 0.15 M MAC/pixel
    onnx_path = artifacts.for_run("ort", "fp32", (64, 64), 1)
    from_onnx = resolve_model(str(onnx_path))
    assert (from_onnx.kind, from_onnx.precision, from_onnx.task) == ("onnx", "fp32", "denoise")
    assert gmacs(from_onnx, (64, 48), 2) == expected
    bare = onnx.load(onnx_path)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    assert gmacs(resolve_model(str(tmp_path / "bare.onnx")), (64, 48), 2) is None


def test_unsupported_combinations_say_why(artifacts, tmp_path):
    with pytest.raises(Unsupported, match="FP32 only"):
        artifacts.for_run("torch", "fp16", (64, 64), 1)
    onnx_path = artifacts.for_run("ort", "fp32", (64, 64), 1)
    from_onnx = Artifacts(resolve_model(str(onnx_path)), tmp_path, log=lambda _: None)
    with pytest.raises(Unsupported, match=r"preset or a \.pth checkpoint"):
        from_onnx.for_run("torch", "fp32", (64, 64), 1)
    assert from_onnx.for_run("ort", "fp32", (64, 64), 1) == onnx_path  # an FP32 ONNX runs as it is


def test_tiling_reaches_the_runner(artifacts):
    """In this process (no spawn): a tiled job runs through TiledRunner and still returns timings."""
    checkpoint = artifacts.for_run("torch", "fp32", (96, 80), 1)
    result = measure(Job("torch", str(checkpoint), (96, 80), warmup=0, min_iters=1, min_seconds=0, threads=1,
                         tile=48, overlap=8, size_multiple=4))
    assert result.runner == "torch+tiles"
    assert result.device == "cpu"
    assert result.peak_gpu_mb is None
    assert result.first_ms > 0


# ---------------------------------------------------------------------------------------------------
# Real runs: the CLI end to end, and the memory column


@pytest.mark.slow
def test_real_run_of_the_small_preset(artifacts, tmp_path):
    out = {name: tmp_path / f"b.{name}" for name in ("json", "csv", "md", "png")}
    result = CliRunner().invoke(mirnet_bench, [
        "--model", "small", "--res", "64", "--backend", "torch,ort", "--precision", "fp32,fp16",
        "--warmup", "0", "--min-iters", "3", "--min-seconds", "0", "--threads", "1",
        "--cache-dir", str(artifacts.cache_dir), "--json", str(out["json"]), "--csv", str(out["csv"]),
        "--md", str(out["md"]), "--plot", str(out["png"])])
    assert result.exit_code == 0, result.output
    data = json.loads(out["json"].read_text())
    assert data["environment"]["threads"] == 1
    peak = data["environment"]["cpu_peak"]  # measured before and after the rows; the better one counts
    assert peak["gmacs_per_s"] == max(peak["before_gmacs_per_s"], peak["after_gmacs_per_s"]) > 1
    assert (f"the better of {peak['before_gmacs_per_s']:.1f} before and {peak['after_gmacs_per_s']:.1f} "
            "after the runs") in out["md"].read_text()
    default = configure_host_allocator("retain")  # the default policy
    assert data["environment"]["host_allocators"] == {default.policy: default.description}
    assert {r["host_allocator"] for r in data["results"] if r["status"] == "ok"} == {default.policy}
    rows = {(r["backend"], r["precision"]): r for r in data["results"]}
    assert rows["torch", "fp16"]["status"] == "unsupported"
    for key in (("torch", "fp32"), ("ort", "fp32"), ("ort", "fp16")):
        row = rows[key]
        print(key, {k: row[k] for k in ("first_ms", "p50_ms", "p99_ms", "gmacs_per_s", "peak_host_mb")})
        assert row["status"] == "ok"
        assert row["resolution"] == "64x64"
        assert row["iterations"] >= 3
        assert all(row[field] is not None for field in REQUIRED_FIELDS)
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["mp_per_s"] == pytest.approx(64 * 64 / 1e6 / (row["mean_ms"] / 1e3), rel=1e-3)
        assert row["gmacs_per_s"] == pytest.approx(row["gmacs"] / (row["mean_ms"] / 1e3), rel=1e-3)
        assert row["cpu_peak_fraction"] == pytest.approx(row["gmacs_per_s"] / peak["gmacs_per_s"], rel=1e-4)
        assert 0 < row["cpu_peak_fraction"] < 1.2
        assert row["peak_host_mb"] > row["host_baseline_mb"] > 50
    with open(out["csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert "| torch | fp16 | 64x64 | 1 | unsupported: PyTorch eager" in out["md"].read_text()
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_engines_are_timed_as_built(artifacts, tmp_path):
    """`--engine`: an engine `mirnet build` made, named by its manifest, timed on the runtime and at the
    precision the manifest names, beside PyTorch FP32 on the same weights; MACs from the source ONNX.
    (OpenVINO engines take the same path: the worker runs the backend the manifest names.)"""
    from engines.build import EngineSettings, build_engine
    from engines.manifest import manifest_path

    onnx_path = artifacts.for_run("ort", "fp32", (64, 64), 1)
    settings = EngineSettings(engine_dir=tmp_path, threads=1, progress=False)
    engine = build_engine(onnx_path, "ort", settings).path
    checkpoint = artifacts.for_run("torch", "fp32", (64, 64), 1)
    out = tmp_path / "engines.json"
    result = CliRunner().invoke(mirnet_bench, [
        "--engine", str(manifest_path(engine)), "--model", str(checkpoint), "--backend", "torch",
        "--res", "64", "--warmup", "0", "--min-iters", "2", "--min-seconds", "0", "--threads", "1",
        "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["backend"], r["precision"], r["model"], r["artifact"]) for r in rows] == [
        ("torch", "fp32", checkpoint.name, str(checkpoint)), ("ort", "fp32", engine.name, str(engine))]
    expected_gmacs = gmacs(resolve_model("small"), (64, 64), 1)
    for row in rows:
        assert row["status"] == "ok"
        assert row["iterations"] >= 2
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 60_000
        assert row["gmacs"] == pytest.approx(expected_gmacs)
        assert 0 < row["cpu_peak_fraction"] < 1.2


def test_engine_arguments_are_checked_before_anything_runs(tmp_path):
    """A missing engine, or --precision with nothing that takes it: one paragraph each. A TensorRT engine
    is offered only the shapes of its profiles (a row saying why, not a crash on a GPU)."""
    from engines.manifest import EngineManifest, write_manifest

    missing = CliRunner().invoke(mirnet_bench, ["--engine", str(tmp_path / "gone.ovblob.json")])
    assert isinstance(missing.exception, UserError)
    assert "gone.ovblob.json describes" in str(missing.exception)
    engine = tmp_path / "plan.engine"
    engine.write_bytes(b"a serialized plan")
    profile = {"min": [1, 3, 64, 64], "opt": [1, 3, 128, 128], "max": [1, 3, 256, 256]}
    write_manifest(EngineManifest(engine.name, "tensorrt", "10.3.0", "int8-tensorrt",
                                  str(tmp_path / "gone.onnx"), "0" * 64, [profile], {}, 1.0,
                                  "2026-01-01T00:00:00+00:00", "k"), engine)
    precision = CliRunner().invoke(mirnet_bench, ["--engine", str(engine), "--precision", "fp16"])
    assert "--precision sets --model's precisions" in str(precision.exception)
    built = resolve_engine(engine)
    assert (built.backend, built.precision, built.model.kind) == ("tensorrt", "int8-tensorrt", "engine")
    assert built.for_run((128, 96), batch=1) == engine
    with pytest.raises(Unsupported, match=r"built for input shapes \(1, 3, 64, 64\) to \(1, 3, 256, 256\)"):
        built.for_run((512, 512), batch=1)
    assert built.for_run((512, 512), batch=1, tile=256) == engine  # tiles of 256 fit


def test_engine_list_takes_each_line_whole(tmp_path):
    """`--engine-list` (what `make demo` passes): one path a line, a comma inside a path kept, blank lines
    skipped; --engine's comma-separated values come first. An empty list is refused, not read as "no
    engine" (which would time the default model on every backend)."""
    from bench.latency_cli import _engine_paths

    listed = tmp_path / "engines.txt"
    listed.write_text("out/a,b.ovblob\n\nout/c d.ort.onnx\n")
    assert _engine_paths(("x.ovblob,y.ovblob",), listed) == ["x.ovblob", "y.ovblob", "out/a,b.ovblob",
                                                              "out/c d.ort.onnx"]
    gone = tmp_path / "with,comma" / "gone.ovblob.json"
    listed.write_text(f"{gone}\n")
    missing = CliRunner().invoke(mirnet_bench, ["--engine-list", str(listed)])
    assert isinstance(missing.exception, UserError)
    assert f"{gone} describes" in str(missing.exception)
    listed.write_text("\n")
    empty = CliRunner().invoke(mirnet_bench, ["--engine-list", str(listed)])
    assert isinstance(empty.exception, UserError)
    assert "lists no engine" in str(empty.exception)


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the retain policy needs glibc")
def test_host_allocators_are_compared_side_by_side(artifacts, tmp_path):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(mirnet_bench, [
        "--model", "small", "--res", "64", "--backend", "torch", "--host-allocator", "retain,system",
        "--warmup", "0", "--min-iters", "1", "--min-seconds", "0", "--threads", "1",
        "--cache-dir", str(artifacts.cache_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["host_allocator"] for r in data["results"]] == ["retain", "system"]
    assert "retaining freed memory" in data["environment"]["host_allocators"]["retain"]
    assert "default thresholds" in data["environment"]["host_allocators"]["system"]
    assert "torch (system malloc)" in result.output
    bad = CliRunner().invoke(mirnet_bench, ["--host-allocator", "jemalloc", "--backend", "torch"])
    assert bad.exit_code != 0
    assert "Unknown host allocator jemalloc" in str(bad.exception or bad.output)


def test_asking_for_a_missing_backend_is_one_paragraph():
    unavailable = [a for a in probe_backends().values() if not a.available]
    if not unavailable:
        pytest.skip("every backend is available on this machine")
    completed = subprocess.run([sys.executable, "-c", "from bench.latency_cli import main; main()",
                                "--backend", unavailable[0].backend], capture_output=True, text=True,
                               check=False)
    assert completed.returncode == 1
    assert completed.stderr.startswith(f"Error: Backend {unavailable[0].backend} ")
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_fresh_process_peak_memory_grows_with_resolution(artifacts):
    checkpoint = str(artifacts.for_run("torch", "fp32", (256, 256), 1))
    peaks = {}
    for side in (256, 1024):
        measured = run_fresh(Job("torch", checkpoint, (side, side), warmup=0, min_iters=1, min_seconds=0,
                                 threads=1))
        peaks[side] = measured
        added = measured.peak_host_mb - measured.host_baseline_mb
        print(f"{side}x{side}: peak {measured.peak_host_mb:.0f} MiB, "
              f"baseline {measured.host_baseline_mb:.0f} MiB, added {added:.0f} MiB")
    assert abs(peaks[1024].host_baseline_mb - peaks[256].host_baseline_mb) < 30  # same fresh interpreter
    assert peaks[1024].peak_host_mb > peaks[256].peak_host_mb + 200


@pytest.mark.slow
def test_int8_and_fp16_variants_run(artifacts):
    """The cpu-target INT8 model (calibration stage) and the FP16 model, timed in this process."""
    for precision in ("fp16", "int8"):
        path = artifacts.for_run("ort", precision, (64, 64), 1)
        declared = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        assert declared["precision"] == {"fp16": "fp16", "int8": "int8-cpu"}[precision]
        result = measure(Job("ort", str(path), (64, 64), warmup=0, min_iters=2, min_seconds=0, threads=1))
        assert result.runner == "onnxruntime-cpu"
        assert np.isfinite(result.samples_ms).all()


def test_a_failing_worker_reports_why(tmp_path):
    with pytest.raises(WorkerFailed, match="does not exist"):
        run_fresh(Job("ort", str(tmp_path / "missing.onnx"), (64, 64), min_iters=1, min_seconds=0, threads=1))
