"""Find out what this machine can run, without crashing on machines that can't.

TensorRT aborts or segfaults rather than raising when no CUDA device is usable
(DEPLOY_STACK.md §2), so the order is fixed: first ask the CUDA runtime through
cuda-python (which fails with a clean error code), and only when it reports a
device, import TensorRT. Nothing here creates a TensorRT object.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import NamedTuple

from mirnet_deploy.errors import UserError

from .nvidia import cuda_extra, find_driver

#: What to tell a user who asked for TensorRT on a machine that lacks it.
TENSORRT_INSTALL_HINT = (
    "TensorRT needs an NVIDIA GPU with its driver, the `tensorrt-cu12` or `tensorrt-cu13` package of the "
    "driver's CUDA major from NVIDIA's index (`pip install tensorrt-cu12 --extra-index-url "
    "https://pypi.nvidia.com`; on Jetson it comes with JetPack) and cuda-python's cuda-bindings of the same "
    "major (`pip install -e '.[cuda12]'` or `'.[cuda13]'`); `make setup GPU=1` installs all three to match "
    "the driver"
)

#: cudaError_t of a runtime newer than the driver (cuda-bindings 13.x on a CUDA 12 driver).
CUDA_ERROR_INSUFFICIENT_DRIVER = 35

#: The oldest TensorRT whose Python API this package uses (strongly typed networks, named I/O tensors).
MIN_TENSORRT_MAJOR = 10


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.6"
    memory_mib: int


@dataclass(frozen=True)
class CudaProbe:
    available: bool
    device_count: int
    devices: tuple[GpuInfo, ...]
    driver_version: str | None  # "12.4", from cudaDriverGetVersion
    reason: str  # one sentence: what was found, or why nothing was


class TensorRTProbe(NamedTuple):
    available: bool
    version: str | None
    reason: str


def import_cudart() -> ModuleType:
    """CUDA runtime bindings: `cuda.bindings.runtime` (cuda-bindings >= 12.6) or the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # raises ImportError when cuda-python is absent
    return runtime


def cuda_error_text(cudart: ModuleType, error: object) -> str:
    """`cudaErrorInsufficientDriver (35): CUDA driver version is insufficient ...`."""
    _, text = cudart.cudaGetErrorString(error)
    description = text.decode() if isinstance(text, bytes) else str(text)
    return f"{getattr(error, 'name', error)} ({int(error)}): {description}"


def _device_info(cudart: ModuleType, index: int) -> GpuInfo:
    err, props = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        raise RuntimeError(cuda_error_text(cudart, err))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name.strip("\x00 "), f"{props.major}.{props.minor}", int(props.totalGlobalMem) >> 20)


def _driver_version(cudart: ModuleType) -> str | None:
    err, version = cudart.cudaDriverGetVersion()
    if int(err) != 0 or not version:
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


@functools.cache
def probe_cuda() -> CudaProbe:
    """Ask the CUDA runtime for devices; every failure becomes a `reason`, never an exception.

    Cached: the answer does not change within a process (call `probe_cuda.cache_clear()` in tests).
    """
    try:
        cudart = import_cudart()
    except ImportError:
        return CudaProbe(False, 0, (), None, _without_cuda_python())
    try:
        driver = _driver_version(cudart)
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            failure = f"cudaGetDeviceCount failed with {cuda_error_text(cudart, err)}"
            reason = too_new_for_driver(err) or f"no CUDA device found: {failure}"
            return CudaProbe(False, 0, (), driver, reason)
        if not count:
            return CudaProbe(False, 0, (), driver, "no CUDA device found: the CUDA driver reports 0 devices")
        devices = tuple(_device_info(cudart, index) for index in range(count))
    except Exception as exc:  # a missing libcuda surfaces as a loader error from cuda-bindings
        return CudaProbe(False, 0, (), None, f"no CUDA device found: {type(exc).__name__}: {exc}")
    listed = ", ".join(f"{d.name} (compute capability {d.compute_capability}, {d.memory_mib} MiB)"
                       for d in devices)
    return CudaProbe(True, len(devices), devices, driver, f"{len(devices)} CUDA device(s): {listed}")


def _without_cuda_python() -> str:
    """Why no device can be queried without cuda-python: no driver at all, or the bindings to install."""
    driver = find_driver()
    if driver is None:
        return ("no CUDA device found: this machine has no NVIDIA driver (libcuda.so.1 cannot be loaded and "
                "there is no nvidia-smi)")
    return (f"no CUDA device can be queried: cuda-python is not installed (the driver runs CUDA "
            f"{driver.cuda_text}: `pip install -e '.[{cuda_extra(driver)}]'`)")


def cuda_bindings_version() -> str:
    """The installed cuda-bindings (or, before 12.6, cuda-python) version; '' if neither is installed."""
    for distribution in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return ""


def too_new_for_driver(error: object) -> str | None:
    """The reason to give when the CUDA runtime says "insufficient driver" although a driver is there:
    cuda-bindings of a newer CUDA major than the driver's (13.x on a CUDA 12 driver). None otherwise."""
    if int(error) != CUDA_ERROR_INSUFFICIENT_DRIVER:
        return None
    driver = find_driver()
    if driver is None:
        return None
    bindings = cuda_bindings_version()
    return (f"cuda-python too new for this driver: cuda-bindings {bindings or '(unknown version)'} needs a "
            f"newer CUDA than the driver's CUDA {driver.cuda_text} (read from {driver.source}). Install the "
            f"bindings of the driver's major: `pip install -e '.[{cuda_extra(driver)}]'` "
            f"(or `make setup GPU=1`)")


def probe_tensorrt(cuda: CudaProbe | None = None) -> TensorRTProbe:
    """Is TensorRT usable here? Imports `tensorrt` only after the CUDA probe found a device.

    When it is not, the reason names every missing piece (the package, the GPU), not only the first.
    """
    cuda = cuda or probe_cuda()
    if importlib.util.find_spec("tensorrt") is None:  # finds the package without running it
        gpu = "" if cuda.available else f"; {cuda.reason}"
        return TensorRTProbe(False, None, f"the `tensorrt` package is not installed{gpu}")
    if not cuda.available:
        return TensorRTProbe(False, None, f"`tensorrt` is installed but was not imported: {cuda.reason}")
    try:
        import tensorrt
    except Exception as exc:  # e.g. ImportError: libnvonnxparser.so.11 from a bindings-only wheel
        return TensorRTProbe(False, None, f"`import tensorrt` failed: {type(exc).__name__}: {exc}")
    version = str(tensorrt.__version__)
    if version_tuple(version)[0] < MIN_TENSORRT_MAJOR:
        return TensorRTProbe(False, version, f"TensorRT {version} is too old: this toolkit needs "
                                             f"{MIN_TENSORRT_MAJOR}.x or newer")
    return TensorRTProbe(True, version, f"TensorRT {version} on {cuda.devices[0].name}")


def import_tensorrt() -> ModuleType:
    """`tensorrt`, after the probes: raises UserError (what to install) instead of letting TensorRT crash."""
    found = probe_tensorrt()
    if not found.available:
        raise UserError(f"TensorRT is not usable on this machine: {found.reason}. {TENSORRT_INSTALL_HINT}.")
    import tensorrt

    return tensorrt


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); non-numeric parts ('1.32.0+cpu') are cut off."""
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), which ORT-optimized models are tied to."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
