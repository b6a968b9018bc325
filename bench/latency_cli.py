"""`mirnet-bench`: latency, throughput and memory of a model per backend, precision and resolution.

The run, top-down: probe the backends, turn `--model` into the file each backend runs
(bench/models.py, cached), measure the CPU's matmul peak, then measure every configuration in
a fresh process (bench/worker.py) and report (bench/report.py, bench/plot.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from engines.cache import precision_family
from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_deploy.host_allocator import HOST_ALLOCATOR_POLICIES
from mirnet_deploy.resolutions import format_resolution, parse_resolutions
from mirnet_ref.tasks import FAMILY_NAMES, TASKS

from .backends import ALL_AVAILABLE, BENCH_BACKENDS
from .models import (
    DEFAULT_CACHE_DIR,
    PRECISIONS,
    Artifacts,
    BenchModel,
    BuiltEngine,
    Unsupported,
    gmacs,
    resolve_engine,
    resolve_model,
)
from .report import BenchResult, format_table, load_json, write_csv, write_json, write_markdown
from .worker import Job, Measurement, WorkerFailed, run_fresh

_OUTPUT = click.Path(dir_okay=False, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_text", default="small", show_default=True,
              help="A preset of the --arch family (MIRNet: small, full; MPRNet: deblur, ...; seeded random "
                   "weights), a .pth checkpoint of any family, an .onnx model or a TensorRT .engine.")
@click.option("--arch", type=click.Choice(FAMILY_NAMES),
              help="The family of a preset name [mirnet]; for a checkpoint, the family it must hold.")
@click.option("--res", default="256", show_default=True,
              help="Resolutions: 256, 512, 480p, 720p, 1080p, 1440p, 4k or WxH, comma-separated.")
@click.option("--backend", "backend_text",
              help=f"{', '.join(BENCH_BACKENDS)} or {ALL_AVAILABLE}, comma-separated: what runs --model. "
                   f"[default: {ALL_AVAILABLE}; with --engine, none]")
@click.option("--precision", "precision_text",
              help="fp32, fp16, bf16 (OpenVINO, CPUs with BF16), int8, comma-separated: --model's "
                   "precisions. [default: fp32; for an ONNX model or engine, its own]")
@click.option("--engine", "engine_texts", multiple=True, metavar="ENGINE",
              help="Time an engine that already exists, as it was built: `mirnet build`'s .ovblob, ONNX "
                   "Runtime .ort.onnx or TensorRT .engine, or its manifest <engine>.json (which names the "
                   "runtime and precision), at each --res. Repeat, or separate with commas. With --engine, "
                   "--model runs only on the backends --backend names (e.g. --model weights.pth --backend "
                   "torch adds PyTorch FP32 as the reference).")
@click.option("--engine-list", "engine_list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A text file of engines, one path a line, each taken whole (commas and spaces included), "
                   "timed as --engine times them: what `python -m pipeline.demo engines` writes.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per run.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed runs after the first run (which is timed alone and reported as first_ms).")
@click.option("--min-iters", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed runs at least.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Timed seconds at least, per configuration.")
@click.option("--threads", type=click.IntRange(min=1),
              help="PyTorch threads and ONNX Runtime intra-op threads, for every backend and the CPU peak. "
                   "[default: PyTorch's default here, torch.get_num_threads()]")
@click.option("--tile", type=click.IntRange(min=1),
              help="Run in tiles of this edge (a multiple of the model's size multiple: 4 for MIRNet and "
                   "MIRNet-v2, 8 for MPRNet).")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True,
              help="Tile overlap in pixels (with --tile).")
@click.option("--host-allocator", "allocator_text", default="retain", show_default=True,
              help="retain: glibc keeps freed memory (mirnet's default; PyTorch eager otherwise page-faults "
                   "its activations in on every run); system: the C library's defaults. Comma-separated "
                   "to compare them side by side.")
@click.option("--task", type=click.Choice(TASKS), default="denoise", show_default=True,
              help="Task of a preset or checkpoint: the INT8 calibration set is degraded for it.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE_DIR,
              show_default=True, help="Where exported, converted and quantized models and engines are kept.")
@click.option("--json", "json_path", type=_OUTPUT, help="Write the report as JSON (environment + results).")
@click.option("--csv", "csv_path", type=_OUTPUT, help="Write the results as CSV.")
@click.option("--md", "md_path", type=_OUTPUT, help="Write the report as Markdown.")
@click.option("--plot", "plot_path", type=_OUTPUT, help="Write latency vs megapixels as a PNG.")
@click.option("--server", "servers", multiple=True, metavar="HOST:PORT",
              help="Load-test a served model (`mirnet serve`, Triton gRPC) instead: --concurrency clients "
                   "for --duration seconds per level, at each --res; repeat to test servers one by one.")
@click.option("--server-model", help="With --server: the served model's name [default: --task].")
@click.option("--concurrency", "concurrency_text", default="1,8", show_default=True,
              help="With --server: client counts, comma-separated.")
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="With --server: seconds per concurrency level.")
@click.option("--metrics-url", "metrics_urls", multiple=True, metavar="URL",
              help="With --server: each server's Prometheus endpoint, in --server order [default: "
                   "http://HOST:<gRPC port + 1>/metrics, as `mirnet serve` listens by default].")
@click.option("--from-json", "from_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Render the table and reports of an earlier --json run instead of measuring.")
def mirnet_bench(model_text: str, arch: str | None, res: str, backend_text: str | None,
                 precision_text: str | None, engine_texts: tuple[str, ...], engine_list: Path | None,
                 batch: int,
                 warmup: int, min_iters: int, min_seconds: float, threads: int | None, tile: int | None,
                 overlap: int, allocator_text: str, task: str, cache_dir: Path, json_path: Path | None,
                 csv_path: Path | None, md_path: Path | None, plot_path: Path | None,
                 servers: tuple[str, ...], server_model: str | None, concurrency_text: str, duration: float,
                 metrics_urls: tuple[str, ...], from_json: Path | None) -> None:
    """Benchmark a model's latency, throughput and memory per backend, precision and resolution.

    Each configuration runs in a fresh process, so its peak host memory is its own. The first
    run is reported apart (first_ms); after warm-up, runs are timed until both --min-iters and
    --min-seconds are met: p50/p90/p99, mean, std, images/s, output MP/s, GMAC/s and, on the
    CPU, the fraction of a matmul peak measured in the same run. Progress goes to stderr.
    Exits 1 when a configuration failed (the others are still reported).

    \b
    Examples:
      mirnet-bench --res 256,512 --backend torch,ort --json out.json --plot out.png
      mirnet-bench --model full --res 512 --precision fp32,fp16,int8 --backend ort --md bench.md
      mirnet-bench --arch mprnet --model deblur --res 512 --precision fp32,int8 --backend ort
      mirnet-bench --model small --res 4k --backend torch --tile 512 --overlap 32
      mirnet-bench --model denoise.fp16.onnx --res 720p,1080p --backend all-available --csv out.csv
      mirnet-bench --engine artifacts/engines/<engine>.ovblob --res 256,512   # an engine `mirnet build` made
      mirnet-bench --engine a.ovblob,b.ort.onnx --model weights.pth --backend torch --res 512
      mirnet-bench --engine-list demo-output/engines.txt --res 256,512   # one engine path a line
      mirnet-bench --from-json out.json --plot out.png --md out.md   # re-render, no measuring
      mirnet-bench --server localhost:8001 --res 256 --concurrency 1,8 --duration 60 --json load.json
    """
    reports = {"--json": json_path, "--csv": csv_path, "--md": md_path, "--plot": plot_path}
    for option, path in reports.items():  # one that cannot be written costs no run
        if path is not None:
            check_writable(path, option)
    if servers:
        _load_test(servers, metrics_urls, server_model, res, batch, task, concurrency_text, duration,
                   json_path)
        return
    if from_json:
        results, environment, skipped = load_json(from_json)
    else:
        import torch

        from .backends import resolve_backends
        from .environment import capture_environment

        threads = threads or torch.get_num_threads()  # the same count for PyTorch, ONNX Runtime and the peak
        allocators = _allocators(allocator_text)
        engines = [resolve_engine(path, task) for path in _engine_paths(engine_texts, engine_list)]
        backends, unavailable = ([], []) if engines and not backend_text else resolve_backends(
            backend_text or ALL_AVAILABLE)
        skipped = [{"backend": a.backend, "reason": a.reason} for a in unavailable]
        if precision_text and not backends:
            raise UserError("--precision sets --model's precisions, and no --backend runs --model: each "
                            "--engine runs at the precision it was built for. Drop --precision, or add "
                            "--backend.")
        resolutions = parse_resolutions(res)
        if not resolutions:
            raise UserError(f"--res {res!r} names no resolution: pass e.g. 256,720p,1920x1080.")
        settings = {"batch": batch, "warmup": warmup, "min_iters": min_iters, "min_seconds": min_seconds,
                    "threads": threads, "tile": tile, "overlap": overlap}
        configurations = _engine_configurations(engines, allocators, resolutions, settings)
        if backends:
            check_writable(cache_dir, "--cache-dir", folder=True)
            model = resolve_model(model_text, task, arch)
            artifacts = Artifacts(model, cache_dir, log=lambda message: click.echo(message, err=True))
            configurations = _model_configurations(model, artifacts, backends, allocators,
                                                   _precisions(precision_text, model), resolutions,
                                                   settings) + configurations
        environment = capture_environment(threads, None)
        results = _run_all(configurations, settings, environment)
    click.echo(format_table(results, environment, skipped))
    _write_reports(results, environment, skipped, json_path, csv_path, md_path, plot_path)
    if any(r.status == "error" for r in results):
        raise SystemExit(1)


def _load_test(servers: tuple[str, ...], metrics_urls: tuple[str, ...], model_name: str | None, res: str,
               batch: int, task: str, concurrency_text: str, duration: float, json_path: Path | None) -> None:
    """`--server`: the load test (bench/server_load.py) on held-out photographs degraded for the task."""
    from mirnet_deploy.atomic import atomic_write_text

    from .cli import parity_cases
    from .server_load import format_load_table, load_test

    try:
        levels = [int(part) for part in concurrency_text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise UserError(f"--concurrency {concurrency_text!r}: give client counts, e.g. 1,8.")
    if metrics_urls and len(metrics_urls) != len(servers):
        raise UserError(f"--metrics-url: give one per --server ({len(servers)}), or none for the defaults.")
    results = []
    for resolution in parse_resolutions(res):
        image = parity_cases(task, [resolution], 1, 1)[0].input
        images = np.ascontiguousarray(np.repeat(image, batch, axis=0))
        for index, server in enumerate(servers):
            click.echo(f"Load test: {server}, {format_resolution(resolution)}, clients {levels}, "
                       f"{duration:g} s each ...", err=True)
            results += load_test(server, model_name or task, images, format_resolution(resolution), levels,
                                 duration, metrics_urls[index] if metrics_urls else None)
    click.echo(format_load_table(results))
    if json_path:
        atomic_write_text(json_path, json.dumps([r.as_dict() for r in results], indent=2) + "\n")
        click.echo(f"Wrote {json_path}", err=True)
    if any(r.errors for r in results):
        raise SystemExit(1)


def _precisions(text: str | None, model: BenchModel) -> list[str]:
    if text is None:
        return [precision_family(model.precision)]
    names = list(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in PRECISIONS]
    if unknown or not names:
        raise UserError(f"Unknown precision {', '.join(unknown) or repr(text)}: choose from "
                        f"{', '.join(PRECISIONS)}, comma-separated.")
    return names


def _allocators(text: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in HOST_ALLOCATOR_POLICIES]
    if unknown or not names:
        raise UserError(f"Unknown host allocator {', '.join(unknown) or repr(text)}: choose from "
                        f"{', '.join(HOST_ALLOCATOR_POLICIES)}, comma-separated.")
    return names


@dataclass(frozen=True)
class Configuration:
    """One row to measure: what runs, where, at which size, and how to get its file."""

    model: BenchModel
    backend: str
    precision: str
    resolution: tuple[int, int]
    allocator: str
    artifact: Callable[[], Path]  # made or found on demand; raises Unsupported (a row says why) or UserError


def _model_configurations(model: BenchModel, artifacts: Artifacts, backends: list[str], allocators: list[str],
                          precisions: list[str], resolutions: list[tuple[int, int]],
                          settings: dict[str, Any]) -> list[Configuration]:
    """--model on each backend x host allocator x precision x resolution (files exported, converted and
    built by `artifacts`)."""
    batch, tile = settings["batch"], settings["tile"]
    return [Configuration(model, backend, precision, resolution, allocator,
                          partial(artifacts.for_run, backend, precision, resolution, batch, tile))
            for backend, allocator, precision, resolution in product(backends, allocators, precisions,
                                                                     resolutions)]


def _engine_configurations(engines: list[BuiltEngine], allocators: list[str],
                           resolutions: list[tuple[int, int]],
                           settings: dict[str, Any]) -> list[Configuration]:
    """Each existing engine x host allocator x resolution, on its own runtime and precision."""
    batch, tile = settings["batch"], settings["tile"]
    return [Configuration(engine.model, engine.backend, engine.precision, resolution, allocator,
                          partial(engine.for_run, resolution, batch, tile))
            for engine, allocator, resolution in product(engines, allocators, resolutions)]


def _engine_paths(texts: tuple[str, ...], listed: Path | None = None) -> list[str]:
    """--engine values (repeated, or comma-separated), then the lines of --engine-list, each line one
    path as it is (a path may hold a comma); blank lines are skipped."""
    paths = [part.strip() for text in texts for part in text.split(",") if part.strip()]
    if listed is not None:
        try:
            lines = listed.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--engine-list {listed} cannot be read ({error}): give a text file of engine "
                            f"paths, one a line.") from None
        if not any(line.strip() for line in lines):
            raise UserError(f"--engine-list {listed} lists no engine: run `python -m pipeline.demo engines` "
                            f"(or write one engine path a line).")
        paths += [line for line in lines if line.strip()]
    return list(dict.fromkeys(paths))


def _run_all(configurations: list[Configuration], settings: dict[str, Any],
             environment: dict[str, Any]) -> list[BenchResult]:
    """Every configuration's file first (exports, conversions, engines), then its timing in a fresh process,
    between two measurements of the CPU's matmul peak (the better one counts). Records the peak and what
    each worker's allocator was in `environment`."""
    from .environment import cpu_peak_around

    batch, tile = settings["batch"], settings["tile"]
    rows: list[BenchResult] = []
    jobs: dict[int, tuple[Configuration, Job]] = {}
    for config in configurations:
        row = BenchResult(model=config.model.label, backend=config.backend, precision=config.precision,
                          resolution=format_resolution(config.resolution), batch=batch, status="ok",
                          threads=settings["threads"], tile=tile, host_allocator=config.allocator,
                          overlap=settings["overlap"] if tile else None)
        try:
            artifact = config.artifact()
        except Unsupported as why:
            row = replace(row, status="unsupported", reason=str(why))
        except UserError as error:
            row = replace(row, status="error", reason=str(error))
        else:
            jobs[len(rows)] = config, Job(config.backend, str(artifact), config.resolution, **settings,
                                          host_allocator=config.allocator,
                                          size_multiple=config.model.size_multiple, scale=config.model.scale,
                                          channels=config.model.channels)
        rows.append(row)
    click.echo("Measuring the CPU's float32 matmul peak before and after the configurations ...", err=True)
    measurements, peak = cpu_peak_around(settings["threads"], lambda: _time_jobs(jobs, rows))
    environment["cpu_peak"] = peak
    environment["host_allocators"] = {}
    for index, measurement in measurements.items():
        config, job = jobs[index]
        macs = gmacs(config.model, job.resolution, batch)
        rows[index] = _measured(rows[index], measurement, config.model, job, macs, peak["gmacs_per_s"])
        environment["host_allocators"][measurement.host_allocator] = measurement.host_allocator_description
    return rows


def _time_jobs(jobs: dict[int, tuple[Configuration, Job]], rows: list[BenchResult]) -> dict[int, Measurement]:
    """Each job in a fresh process: its measurement by row index; a failed worker marks its row."""
    measurements = {}
    progress = tqdm(jobs.items(), desc="configurations", unit="config", file=sys.stderr)
    for index, (_, job) in progress:
        progress.set_postfix_str(f"{rows[index].backend} {rows[index].precision} {rows[index].resolution}")
        try:
            measurements[index] = run_fresh(job)
        except WorkerFailed as failure:
            rows[index] = replace(rows[index], status="error", reason=str(failure))
    return measurements


def _measured(row: BenchResult, m: Measurement, model: BenchModel, job: Job, gmacs_per_run: float | None,
              peak_gmacs_per_s: float) -> BenchResult:
    """The row filled from a worker's Measurement: statistics, rates and memory."""
    from .latency import summarize, throughput

    stats = summarize(m.samples_ms)
    width, height = job.resolution
    output_pixels = width * height * model.scale**2
    rates = throughput(stats, batch=job.batch, output_pixels=output_pixels, gmacs=gmacs_per_run,
                       peak_gmacs_per_s=peak_gmacs_per_s if m.device == "cpu" else None)

    def rounded(value: float | None) -> float | None:
        """Six significant digits: beyond what timing resolves, short to read."""
        return None if value is None else float(f"{value:.6g}")

    return replace(
        row, device=m.device, runner=m.runner, host_allocator=m.host_allocator,
        output_mp=job.batch * output_pixels / 1e6,
        first_ms=rounded(m.first_ms), p50_ms=rounded(stats.p50_ms), p90_ms=rounded(stats.p90_ms),
        p99_ms=rounded(stats.p99_ms), mean_ms=rounded(stats.mean_ms), std_ms=rounded(stats.std_ms),
        min_ms=rounded(stats.min_ms), iterations=stats.iterations,
        measured_s=rounded(sum(m.samples_ms) / 1e3),
        images_per_s=rounded(rates.images_per_s), mp_per_s=rounded(rates.mp_per_s),
        gmacs=rounded(gmacs_per_run), gmacs_per_s=rounded(rates.gmacs_per_s),
        cpu_peak_fraction=rounded(rates.cpu_peak_fraction), peak_host_mb=m.peak_host_mb,
        host_baseline_mb=m.host_baseline_mb, peak_host_delta_mb=round(m.peak_host_mb - m.host_baseline_mb, 1),
        peak_gpu_mb=m.peak_gpu_mb, h2d_ms=rounded(m.h2d_ms), compute_ms=rounded(m.compute_ms),
        d2h_ms=rounded(m.d2h_ms), split_note=m.split_note, artifact=job.artifact)


def _write_reports(results: list[BenchResult], environment: dict[str, Any], skipped: list[dict[str, str]],
                   json_path: Path | None, csv_path: Path | None, md_path: Path | None,
                   plot_path: Path | None) -> None:
    written = []
    if json_path:
        write_json(json_path, results, environment, skipped)
        written.append(json_path)
    if csv_path:
        write_csv(csv_path, results)
        written.append(csv_path)
    if md_path:
        write_markdown(md_path, results, environment, skipped)
        written.append(md_path)
    if plot_path:
        from .plot import plot_latency

        plot_latency(results, environment, plot_path)
        written.append(plot_path)
    if written:
        click.echo(f"Wrote {', '.join(str(p) for p in written)}", err=True)


def main() -> None:
    """The `mirnet-bench` console script: a UserError, or the file system's refusal (a folder that cannot be
    made, a full disk), becomes one paragraph on stderr and exit status 1."""
    try:
        mirnet_bench(standalone_mode=True)
    except UserError as error:
        raise SystemExit(f"Error: {error}") from None
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        raise SystemExit(f"Error: {error.strerror or error}{where}.") from None
