"""What a latency number was measured on: machine, libraries, threads, and the CPU's matmul peak.

A latency without its machine is not a result. The peak is measured here, in the same run as
the benchmark and with the same thread count, so "fraction of peak" compares the model with
what this CPU delivered today (clocks, other load), not with a datasheet.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
import torch

from engines.probe import cpu_model, probe_cuda, probe_tensorrt
from mirnet_deploy import __version__
from mirnet_deploy.cpus import usable_cpus

T = TypeVar("T")
#: The peak's matrix product: float32, square, large enough that BLAS runs at full speed.
PEAK_MATMUL_SIZE = 2048


def cpu_peak(threads: int, *, size: int = PEAK_MATMUL_SIZE, seconds: float = 1.0) -> dict[str, Any]:
    """The best float32 matmul rate of this CPU with `threads` PyTorch threads.

    One warm-up product, then products for about `seconds` (at least 3); the fastest counts,
    as the least disturbed by other work. A MAC is 2 FLOPs.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(size, size, generator=generator)
        b = torch.rand(size, size, generator=generator)
        torch.mm(a, b)
        best = float("inf")
        started, count = time.perf_counter(), 0
        while count < 3 or time.perf_counter() - started < seconds:
            tick = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - tick)
            count += 1
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    gflops = 2 * size**3 / best / 1e9
    return {"matmul": f"float32 {size}x{size} matmul, torch.mm", "threads": used,
            "products": count, "gflops": round(gflops, 2), "gmacs_per_s": round(gflops / 2, 2)}


def cpu_peak_around(threads: int, measure: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """`measure()` between two peak measurements, and the peak: the better of the two (the less
    disturbed by other work; one measurement at the start read 88.5 GMAC/s where 116-126 held the
    same day), with both recorded (`before_gmacs_per_s`, `after_gmacs_per_s`)."""
    before = cpu_peak(threads)
    result = measure()
    after = cpu_peak(threads)
    best = max(before, after, key=lambda peak: peak["gmacs_per_s"])
    return result, {**best, "before_gmacs_per_s": before["gmacs_per_s"],
                    "after_gmacs_per_s": after["gmacs_per_s"]}


def _memory_total_mb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1)
    except (ValueError, OSError, AttributeError):  # not every platform names these
        return None


def capture_environment(threads: int, peak: dict[str, Any] | None) -> dict[str, Any]:
    """Machine, versions, GPU and TensorRT probes, thread setting and the measured CPU peak, as plain data."""
    cuda = probe_cuda()
    tensorrt = probe_tensorrt(cuda)
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "toolkit_version": __version__,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_total_mb": _memory_total_mb(),
        "threads": threads,  # every backend's, and the peak's
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                     "numpy": np.__version__, "tensorrt": tensorrt.version},
        "onnxruntime_providers": ort.get_available_providers(),
        "gpus": [{"name": d.name, "compute_capability": d.compute_capability, "memory_mib": d.memory_mib}
                 for d in cuda.devices],
        "cuda_driver": cuda.driver_version,
        "cuda": cuda.reason,
        "tensorrt": tensorrt.reason,
        "cpu_peak": peak,
    }


def machine_label(environment: dict[str, Any]) -> str:
    """One line naming the machine, for titles: CPU, threads, and the GPU when there is one."""
    threads = environment["threads"]
    cpu = f"{environment['cpu_model']}, {threads} thread{'' if threads == 1 else 's'}"
    gpus = environment.get("gpus") or []
    return f"{cpu}, {gpus[0]['name']}" if gpus else cpu
