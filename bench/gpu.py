"""What a GPU adds to a report: peak device memory, a CUDA-event timing split, PyTorch CUDA parity.

Only imported by a worker whose backend runs on a GPU (the CLI probes first), so nothing here
runs, or needs CUDA, on a CPU-only machine.

- Peak device memory: a thread samples `cudaMemGetInfo` (device-wide used memory) every few
  milliseconds while the runner is created and run, and the peak above the level at the start
  (the CUDA context already exists then) is reported. Device-wide means other processes'
  allocations during the run would count too: benchmark on an otherwise idle GPU.
- Timing split: host-to-device copy, compute and device-to-host copy of one run, each between
  two CUDA events (`torch.cuda.Event(enable_timing=True)`, `elapsed_time` in ms), from pinned
  host memory. The runner gets the input as a CUDA tensor, which ONNX Runtime (I/O binding) and
  TensorRT runners read in place; TensorRT returns a CUDA tensor, whose copy back is timed alone,
  while ONNX Runtime copies its output to the host inside `run`, so there `d2h_ms` is None and
  compute includes it. The events are recorded on PyTorch's current stream; the runners wait for
  it before they start and synchronize their own stream before returning, so compute spans the
  runner's whole execution. Needs a CUDA build of PyTorch.
- PyTorch CUDA parity (`cuda_parity`, run by `make gpu-check`): the model on the GPU in FP32 (TF32
  off) and under FP16 and BF16 autocast, against the same model in FP32 on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engines.probe import cuda_error_text, import_cudart
from engines.runners import Runner


def _used_bytes_reader() -> Callable[[], int]:
    """Used memory of the current device, device-wide: PyTorch's mem_get_info with CUDA, else cuda-python."""
    import torch

    if torch.cuda.is_available():

        def used_by_torch() -> int:
            free, total = torch.cuda.mem_get_info()
            return total - free

        return used_by_torch
    cudart = import_cudart()

    def used() -> int:
        error, free, total = cudart.cudaMemGetInfo()
        if int(error) != 0:
            raise RuntimeError(cuda_error_text(cudart, error))
        return int(total) - int(free)

    return used


class DeviceMemorySampler:
    """`with DeviceMemorySampler() as sampler: ...`, then `sampler.peak_mb`: the peak above the start, MiB."""

    def __init__(self, interval_s: float = 0.002):
        self._interval = interval_s
        self._used = _used_bytes_reader()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="gpu-memory-sampler", daemon=True)
        self._baseline = self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._used())

    def __enter__(self) -> DeviceMemorySampler:
        self._baseline = self._peak = self._used()  # creates the CUDA context first, so it is not counted
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._used())

    @property
    def peak_mb(self) -> float:
        return (self._peak - self._baseline) / 2**20


def event_split(runner: Runner, batch: np.ndarray, iterations: int) -> dict[str, Any]:
    """Median `h2d_ms`, `compute_ms`, `d2h_ms` of `iterations` runs, from CUDA events (see the module doc)."""
    import torch

    if not torch.cuda.is_available():
        return {"h2d_ms": None, "compute_ms": None, "d2h_ms": None,
                "split_note": "no timing split: it binds CUDA tensors, which needs a CUDA build of PyTorch"}
    host_in = torch.from_numpy(batch).pin_memory()
    device_in = torch.empty(host_in.shape, dtype=host_in.dtype, device="cuda")
    host_out: torch.Tensor | None = None
    times: dict[str, list[float]] = {"h2d_ms": [], "compute_ms": [], "d2h_ms": []}
    for _ in range(iterations):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        events[0].record()
        device_in.copy_(host_in, non_blocking=True)
        events[1].record()
        output = runner.run(device_in)
        events[2].record()
        on_device = isinstance(output, torch.Tensor) and output.is_cuda
        if on_device:
            if host_out is None or host_out.shape != output.shape:
                host_out = torch.empty(output.shape, dtype=output.dtype, pin_memory=True)
            host_out.copy_(output, non_blocking=True)
        events[3].record()
        events[3].synchronize()
        times["h2d_ms"].append(events[0].elapsed_time(events[1]))
        times["compute_ms"].append(events[1].elapsed_time(events[2]))
        if on_device:
            times["d2h_ms"].append(events[2].elapsed_time(events[3]))
    split = {key: statistics.median(values) if values else None for key, values in times.items()}
    split["split_note"] = "CUDA events, medians" + (
        "" if split["d2h_ms"] is not None else "; the runner copies its output to the host inside compute")
    return split


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """FP32 convolutions and matmuls without TF32 (PyTorch allows TF32 convolutions by default)."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cuda_parity(checkpoint: Path, task: str, resolution: tuple[int, int], images: int = 2, *,
                device: str = "cuda") -> list[dict]:
    """PSNR (worst image) of PyTorch on the GPU, FP32 / FP16 autocast / BF16 autocast, vs FP32 on the CPU.

    On the built-in held-out photographs degraded for the task, at `resolution` (width, height).
    `device="cpu"` runs the same comparison on the CPU (the tests' way to check it without a GPU).
    """
    import torch

    from bench.parity import parity_cases
    from engines.runners import TorchRunner
    from mirnet_ref.checkpoint import load_model
    from mirnet_ref.metrics import psnr

    model = load_model(checkpoint).eval()
    cases = parity_cases(task, [resolution], images, sr_scale=1)
    with TorchRunner(copy.deepcopy(model)) as cpu:
        references = [np.clip(cpu.run(case.input)[0].transpose(1, 2, 0), 0, 1) for case in cases]
    rows = []
    with TorchRunner(model.to(device)) as gpu:
        for precision, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            autocast = torch.autocast(device, dtype=dtype or torch.float16, enabled=dtype is not None)
            with _exact_fp32(), autocast:
                outputs = [np.clip(gpu.run(case.input)[0].transpose(1, 2, 0), 0, 1) for case in cases]
            values = [psnr(out, ref) for out, ref in zip(outputs, references, strict=True)]
            rows.append({"precision": precision, "resolution": f"{resolution[0]}x{resolution[1]}",
                         "images": len(cases), "psnr_vs_cpu_fp32_db": min(values)})
    return rows
