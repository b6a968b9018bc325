"""One benchmark configuration, measured in a fresh process: `python -m bench.worker '<job as JSON>'`.

Peak memory belongs to a process, so every configuration gets its own: the libraries are
imported, the resident memory is read (the baseline), then the runner is created and timed,
and the process's peak resident memory (VmHWM) is what the configuration needed on top of
an interpreter with ONNX Runtime and OpenVINO loaded, and PyTorch only for the `torch` backend
(an engine's deployment does not load PyTorch, and importing it cost each worker about 3
CPU-seconds). Measured in one long-lived process, the largest earlier configuration would set
every later peak.

The worker prints one JSON line on stdout: the `Measurement`, or `{"error": ...}` for a
UserError (exit status 1). `run_fresh` is the parent's side of this protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mirnet_deploy.errors import UserError
from mirnet_deploy.host_allocator import configure_host_allocator

from .backends import GPU_BACKENDS, ORT_PROVIDERS
from .latency import time_runs

if TYPE_CHECKING:  # the runners are imported once a job runs (PyTorch only by the torch backend)
    from engines.manifest import Profile
    from engines.runners import Runner


@dataclass(frozen=True)
class Job:
    """One configuration: which file runs on which backend, at which size, and how long to time it."""

    backend: str
    artifact: str  # checkpoint (torch), ONNX model (ONNX Runtime) or engine (tensorrt)
    resolution: tuple[int, int]  # input width, height
    batch: int = 1
    warmup: int = 2
    min_iters: int = 10
    min_seconds: float = 2.0
    threads: int | None = None  # PyTorch, ONNX Runtime and OpenVINO threads; None: their defaults
    tile: int | None = None
    overlap: int = 32
    size_multiple: int = 1  # tiles are multiples of it
    channels: int = 3  # input channels (the model family's: 6 for MIRNet-v2's dual-pixel defocus)
    scale: int = 1  # output / input size
    seed: int = 0  # of the random input
    host_allocator: str = "retain"  # mirnet_deploy.host_allocator policy, applied before anything is loaded

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        return cls(**{**data, "resolution": tuple(data["resolution"])})


@dataclass(frozen=True)
class Measurement:
    """What a worker reports. Memory in MiB; `peak_host_mb` is the process's absolute peak resident
    memory, `host_baseline_mb` its resident memory after imports and before the model was loaded."""

    first_ms: float
    samples_ms: list[float]
    runner: str
    device: str  # "cpu" or the GPU's name
    host_baseline_mb: float
    peak_host_mb: float
    peak_gpu_mb: float | None = None  # above the CUDA context, sampled (bench/gpu.py); None on the CPU
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None
    split_note: str | None = None
    host_allocator: str = "system"  # the policy in effect (mirnet_deploy.host_allocator)
    host_allocator_description: str = ""


class WorkerFailed(Exception):
    """The worker process failed: the message says how (its error, a signal, the end of its stderr)."""


def host_memory_mb() -> tuple[float, float]:
    """(resident now, peak resident) of this process in MiB: VmRSS and VmHWM on Linux (Jetson too);
    elsewhere getrusage's peak stands for both."""
    with contextlib.suppress(OSError, KeyError, ValueError):
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                      if ":" in line)
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return peak_mb, peak_mb


def on_gpu(backend: str) -> bool:
    if backend in GPU_BACKENDS:
        return True
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _device_name(backend: str) -> str:
    if not on_gpu(backend):
        return "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    from engines.probe import probe_cuda

    return probe_cuda().devices[0].name


def open_bench_runner(job: Job) -> Runner:
    """The runner for the job's backend and file, wrapped in a TiledRunner when the job tiles."""
    from engines.runners import OpenVinoRunner, OrtRunner, TensorRTRunner
    from engines.tiling import TiledRunner

    if job.backend == "torch":
        from engines.runners import TorchRunner
        from mirnet_ref.checkpoint import load_model
        from mirnet_ref.registry import inference_module

        model = inference_module(load_model(job.artifact))  # the output inference uses (MPRNet: the last)
        runner = TorchRunner(model.to("cuda" if on_gpu("torch") else "cpu"))
    elif job.backend == "tensorrt":
        runner = TensorRTRunner(job.artifact)
    elif job.backend == "openvino":
        runner = OpenVinoRunner(job.artifact, threads=job.threads)
    elif job.backend in ORT_PROVIDERS:
        runner = OrtRunner(job.artifact, providers=ORT_PROVIDERS[job.backend], threads=job.threads,
                           tensorrt_profile=_run_profile(job))
    else:
        raise UserError(f"Unknown benchmark backend {job.backend!r}.")
    if job.tile is None:
        return runner
    return TiledRunner(runner, tile=job.tile, overlap=job.overlap, scale=job.scale,
                       multiple=job.size_multiple)


def _run_profile(job: Job) -> Profile:
    """The shapes the job runs (whole images, or tiles): what ONNX Runtime's TensorRT provider builds for."""
    from engines.tensorrt_build import profiles_from_resolutions

    width, height = job.resolution
    size = (min(job.tile, width), min(job.tile, height)) if job.tile else (width, height)
    (profile,) = profiles_from_resolutions([size], batch=job.batch, channels=job.channels,
                                           size_multiple=job.size_multiple)
    return profile


def random_batch(job: Job, channels: int) -> np.ndarray:
    """A seeded float32 NCHW batch in [0, 1): the content does not change the work done."""
    width, height = job.resolution
    return np.random.default_rng(job.seed).random((job.batch, channels, height, width), dtype=np.float32)


def measure(job: Job) -> Measurement:
    """Run the job in this process (the worker's body; tests call it directly to skip the spawn)."""
    allocator = configure_host_allocator(job.host_allocator)
    if job.backend == "torch" and job.threads:
        import torch

        torch.set_num_threads(job.threads)
    baseline_mb, _ = host_memory_mb()
    gpu = on_gpu(job.backend)
    extra: dict[str, Any] = {}
    sampler = contextlib.nullcontext()
    if gpu:
        from .gpu import DeviceMemorySampler

        sampler = DeviceMemorySampler()
    with sampler, open_bench_runner(job) as runner:
        channels = runner.input_spec.shape[1] if runner.input_spec.shape[1] > 0 else job.channels
        batch = random_batch(job, channels)
        timing = time_runs(lambda: runner.run(batch), warmup=job.warmup, min_iters=job.min_iters,
                           min_seconds=job.min_seconds)
        if gpu and job.tile is None:  # the GPU backends, and PyTorch on a CUDA device
            from .gpu import event_split

            extra = event_split(runner, batch, len(timing.samples_ms))
        name = runner.name
    _, peak_mb = host_memory_mb()
    return Measurement(first_ms=timing.first_ms, samples_ms=timing.samples_ms, runner=name,
                       device=_device_name(job.backend), host_baseline_mb=round(baseline_mb, 1),
                       peak_host_mb=round(peak_mb, 1),
                       peak_gpu_mb=round(sampler.peak_mb, 1) if gpu else None,
                       host_allocator=allocator.policy, host_allocator_description=allocator.description,
                       **extra)


def _failure(completed: subprocess.CompletedProcess, payload: dict | None) -> str:
    if payload and "error" in payload:
        return payload["error"]
    if completed.returncode < 0:
        signal = -completed.returncode
        hint = " (SIGKILL: usually the out-of-memory killer; try a smaller size or --tile)"
        return f"the worker process was killed by signal {signal}{hint if signal == 9 else ''}"
    tail = [line for line in completed.stderr.strip().splitlines() if line.strip()][-3:]
    return f"the worker process exited with status {completed.returncode}: {' | '.join(tail) or 'no message'}"


def run_fresh(job: Job) -> Measurement:
    """Measure `job` in a new Python process; raises WorkerFailed with what went wrong."""
    env = dict(os.environ)
    if job.threads:
        env["OMP_NUM_THREADS"] = str(job.threads)  # before the worker's first import, so BLAS obeys too
    completed = subprocess.run([sys.executable, "-m", "bench.worker", job.to_json()], capture_output=True,
                               text=True, env=env, check=False)
    lines = completed.stdout.strip().splitlines()
    try:
        payload = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        payload = None
    if completed.returncode != 0 or not isinstance(payload, dict) or "error" in payload:
        raise WorkerFailed(_failure(completed, payload if isinstance(payload, dict) else None))
    return Measurement(**payload)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.worker '<job as JSON>' (see bench.worker.Job)", file=sys.stderr)
        return 2
    try:
        result = measure(Job.from_json(args[0]))
    except UserError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return 1
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
