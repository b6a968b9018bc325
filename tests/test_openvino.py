"""The OpenVINO backend: engines built, cached and refused like the others; runner parity; bench probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from test_engines import toy_onnx

from bench.backends import resolve_backends
from bench.models import Artifacts, Unsupported, resolve_model
from engines import openvino_build
from engines.manifest import load_manifest, manifest_path
from engines.openvino_build import build_openvino_cached, build_openvino_engine, native_bf16, openvino_version
from engines.openvino_int8_check import FAULTS, PROBES, TENSORRT_TARGET, probe, run_probe
from engines.runners import OpenVinoRunner, OrtRunner, open_runner, select_backend
from mirnet_deploy.errors import UserError


@pytest.fixture
def toy(tmp_path) -> Path:
    return toy_onnx(tmp_path / "toy.onnx")


def test_engine_build_records_device_and_f32_hint_then_reuses(toy, tmp_path):
    first = build_openvino_cached(toy, tmp_path / "engines")
    assert not first.reused
    assert first.path.name.endswith(".ovblob")
    manifest = load_manifest(first.path)
    assert (manifest.backend, manifest.backend_version) == ("openvino", openvino_version())
    assert manifest.device == "CPU"
    assert manifest.device_name  # FULL_DEVICE_NAME, which the compiled model is tied to
    assert manifest.inference_precision == "f32"  # never OpenVINO's silent BF16 default
    assert manifest.build_options["INFERENCE_PRECISION_HINT"] == "f32"
    again = build_openvino_cached(toy, tmp_path / "engines")
    assert again.reused
    assert again.path == first.path


def test_engine_matches_onnx_runtime(toy, tmp_path):
    engine = tmp_path / "toy.ovblob"
    build_openvino_engine(toy, engine)
    batch = np.random.default_rng(0).random((1, 3, 20, 28), dtype=np.float32)
    with open_runner(engine) as ov_runner, OrtRunner(toy, providers="cpu") as ort_runner:
        assert isinstance(ov_runner, OpenVinoRunner)
        assert ov_runner.input_spec.shape == (-1, 3, -1, -1)
        out = ov_runner.run(batch)
        assert out.shape == (1, 3, 20, 28)
        assert np.abs(out - ort_runner.run(batch)).max() < 1e-5
    with OpenVinoRunner(toy) as onnx_runner:  # an ONNX model compiled in memory, same f32 hint
        assert np.abs(onnx_runner.run(batch) - out).max() < 1e-6


@pytest.mark.parametrize(("field", "value", "message"), [
    ("backend_version", "2020.1-1", "built with OpenVINO 2020.1-1"),
    ("device_name", "Another CPU 9000", "'Another CPU 9000'"),
    ("device", "NPU", "sees no NPU device here"),
])
def test_engine_for_another_runtime_or_device_is_refused(toy, tmp_path, field, value, message):
    engine = tmp_path / "toy.ovblob"
    build_openvino_engine(toy, engine)
    data = json.loads(manifest_path(engine).read_text()) | {field: value}
    manifest_path(engine).write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        OpenVinoRunner(engine)


def test_backend_choice_and_bench_probe():
    assert select_backend("openvino")[0] == "openvino"
    assert resolve_backends("openvino,ort")[0] == ["openvino", "ort"]
    with pytest.raises(UserError, match="does not exist"):
        OpenVinoRunner("missing.onnx")


def test_probe_reproduces_openvinos_int8_fault_that_onnx_runtime_does_not_have():
    """The smallest TensorRT-target cases, run on this OpenVINO: wrong (all zeros) where ONNX Runtime
    gives the ONNX result. If this fails, an OpenVINO release computes them: the refusal below lifts by
    itself, and `run.parity.int8_tensorrt` judges the whole model; update the README."""
    results = probe("CPU")
    assert [result.case for result in results] == list(PROBES[TENSORRT_TARGET])
    for result in results:
        assert result.largest_output > 0.05, result  # the probe's true output is far from zero
        assert not result.correct, f"OpenVINO {openvino_version()} now computes {result.case} correctly"


def test_openvino_computes_the_symmetric_cpu_layout_and_not_s8_concatenations():
    """The cpu-symmetric target's cases are right on this OpenVINO; the fault its u8 concatenations avoid
    (Concat -> s8 Q/DQ -> Conv) is still there with the AVX-512 VNNI kernels (a Xeon without AMX,
    2026-11-27), and absent with the AMX kernels (a Xeon with AMX-INT8, 2026-11-28). If the VNNI part
    fails, an OpenVINO release computes s8 concatenations on every CPU:
    `calibration.quantize.unsigned_for_target` may go; update the README."""
    results = probe("CPU", "int8-cpu-symmetric")
    assert [result.case for result in results] == list(PROBES["int8-cpu-symmetric"])
    for result in results:
        assert result.largest_output > 0.05, result
        assert result.correct, result
    for case, pattern in FAULTS.items():
        fault = run_probe(case, pattern, "CPU")
        assert fault.largest_output > 0.05, fault
        if not fault.kernel.startswith(("brgconv_avx512", "jit_avx512")):
            pytest.skip(f"{case}: OpenVINO ran {fault.kernel!r}, a kernel not yet observed ({fault})")
        if "_amx_" in fault.kernel:
            assert fault.correct, f"OpenVINO {openvino_version()} miscomputes {case} with {fault.kernel} too"
        else:
            assert not fault.correct, (f"OpenVINO {openvino_version()} now computes {case} correctly "
                                       f"with {fault.kernel}")


def test_tensorrt_target_int8_is_refused_on_openvino_and_auto_takes_onnx_runtime(tmp_path):
    model = toy_onnx(tmp_path / "toy.int8-tensorrt.onnx", precision="int8-tensorrt")
    cause = "miscomputes the TensorRT-target INT8 layout"
    with pytest.raises(UserError, match=cause):
        build_openvino_engine(model, tmp_path / "toy.ovblob")
    assert not list(tmp_path.glob("toy.ovblob*"))  # nothing written
    with pytest.raises(UserError, match=cause):
        build_openvino_cached(model, tmp_path / "engines")
    with pytest.raises(UserError, match=cause):
        OpenVinoRunner(model)
    backend, reason = select_backend("auto", model)
    assert backend == "ort"
    assert "miscomputes this TensorRT-target INT8 model" in reason
    # an engine built before the check (here: a CPU-target engine relabelled) is refused at load too
    engine = tmp_path / "old.ovblob"
    build_openvino_engine(toy_onnx(tmp_path / "toy.onnx"), engine)
    manifest_path(engine).write_text(json.dumps(json.loads(manifest_path(engine).read_text())
                                                | {"precision": "int8-tensorrt"}))
    with pytest.raises(UserError, match=cause):
        OpenVinoRunner(engine)


# --- precisions: fp32 is f32, bf16 only where the CPU has it ---------------------------------------


def _kernels(engine: Path) -> set[str]:
    """The exec types OpenVINO ran the engine's convolutions with (from its own profiling)."""
    with OpenVinoRunner(engine, profile=True) as runner:
        runner.run(np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32))
        return {t.exec_type for t in runner.layer_times() if t.node_type == "Convolution"}


def test_fp32_engine_runs_f32_kernels_never_bf16(toy, tmp_path):
    engine = build_openvino_cached(toy, tmp_path / "engines").path
    kernels = _kernels(engine)
    assert kernels
    assert all(k.endswith("f32") for k in kernels), kernels
    assert load_manifest(engine).compute_precision == "fp32"


def test_native_bf16_probe_agrees_with_the_cpu_flags():
    from engines.environment import cpu_features

    native = native_bf16(ov.Core(), "CPU")
    assert native == bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))


def test_bf16_is_refused_on_a_cpu_without_bf16(toy, tmp_path, monkeypatch):
    """The refusal, with the capability probe faked to 'no BF16' (the real answer on CPUs without it)."""
    monkeypatch.setattr(openvino_build, "native_bf16", lambda core, device: False)
    with pytest.raises(UserError, match="has no BF16 arithmetic"):
        build_openvino_cached(toy, tmp_path / "engines", inference_precision="bf16")
    with pytest.raises(UserError, match="Unknown OpenVINO inference precision"):
        build_openvino_cached(toy, tmp_path / "engines", inference_precision="f16")
    assert not list((tmp_path / "engines").glob("*.ovblob"))
    with pytest.raises(Unsupported, match="has no BF16 arithmetic"):
        Artifacts(resolve_model(str(toy)), tmp_path / "bench").for_run("openvino", "bf16", (16, 16), 1)
    with pytest.raises(Unsupported, match="BF16 runs on OpenVINO only"):
        Artifacts(resolve_model(str(toy)), tmp_path / "bench").for_run("ort", "bf16", (16, 16), 1)


def test_bf16_engine_is_wired_to_bf16_kernels(toy, tmp_path, monkeypatch):
    """Wiring only, with the probe faked to 'BF16' where the CPU may lack it (OpenVINO then emulates BF16):
    the manifest, the cache key and the kernels say bf16. It proves nothing about BF16 speed or accuracy."""
    monkeypatch.setattr(openvino_build, "native_bf16", lambda core, device: True)
    bf16 = build_openvino_cached(toy, tmp_path / "engines", inference_precision="bf16")
    f32 = build_openvino_cached(toy, tmp_path / "engines")
    assert bf16.path != f32.path  # the hint is part of the cache key
    manifest = load_manifest(bf16.path)
    assert (manifest.precision, manifest.inference_precision, manifest.compute_precision) == (
        "fp32", "bf16", "bf16")
    assert manifest.precision_label == "fp32 model in bf16 arithmetic"
    assert load_manifest(f32.path).precision_label == "fp32"
    kernels = _kernels(bf16.path)
    assert kernels
    assert all("bf16" in k for k in kernels), kernels
    batch = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    with OpenVinoRunner(bf16.path) as low, OpenVinoRunner(f32.path) as high:
        error = np.abs(low.run(batch) - high.run(batch)).max()
    assert 1e-5 < error < 5e-2  # BF16 rounding (8-bit mantissa): visible, small


def test_layer_profiles_split_the_time_by_kernel_arithmetic(toy):
    from bench.layer_profile import profile_onnxruntime, profile_openvino, summarize

    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    for rows in (profile_openvino(toy, batch), profile_onnxruntime(toy, batch, threads=1)):
        summary = summarize(rows)
        assert summary["total_ms"] == pytest.approx(sum(summary["by_arithmetic"].values()))
        assert summary["conv_kernels"]  # the toy's two convolutions, in float32 kernels
        assert all("f32" in kernel or kernel == "Conv" for kernel in summary["conv_kernels"])
        assert "int8" not in summary["by_arithmetic"]


def test_a_corrupt_engine_is_one_line_in_the_bench_tables_and_whole_in_the_json(toy, tmp_path):
    """OpenVINO's reason for refusing a damaged compiled model runs over several lines (a source line
    per layer it passed through): one line in the terminal and Markdown tables, all of it in the JSON."""
    from bench.report import BenchResult, format_table, report_dict, to_markdown
    from bench.worker import Job, WorkerFailed, run_fresh

    engine = tmp_path / "toy.ovblob"
    build_openvino_engine(toy, engine)
    engine.write_bytes(engine.read_bytes()[: engine.stat().st_size // 2])
    with pytest.raises(WorkerFailed) as failed:  # the worker `mirnet-bench --engine` runs it in
        run_fresh(Job("openvino", str(engine), (16, 16), min_iters=1, min_seconds=0, threads=1))
    reason = str(failed.value)
    assert len(reason.strip().splitlines()) >= 3, reason
    row = BenchResult(model="toy", backend="openvino", precision="fp32", resolution="16x16", batch=1,
                      status="error", reason=reason)
    environment = {"threads": 1, "cpu_model": "CPU", "cuda": "none", "gpus": [], "versions": {},
                   "timestamp": "-", "command": "mirnet-bench"}
    table_rows = format_table([row], environment).splitlines()[4:]
    markdown_rows = [line for line in to_markdown([row], environment).splitlines() if "| openvino" in line]
    last = reason.strip().splitlines()[-1].strip()
    for shown in (table_rows, markdown_rows):
        assert len(shown) == 1
        assert shown[0].count("error: OpenVINO") == 1
        assert f"{last} (the full reason: --json)" in shown[0]
    assert report_dict([row], environment)["results"][0]["reason"] == reason
