"""`mirnet doctor`: what this machine can run, and for each missing piece the one command that installs it.

Read-only probes (engines/probe.py, engines/nvidia.py): the CPU and its vector features, the NVIDIA
driver and its CUDA version, the GPUs, cuda-python against the driver's CUDA major, PyTorch's build,
TensorRT and where it came from, ONNX Runtime's execution providers. Nothing here creates a
TensorRT object, so it is safe on any machine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .nvidia import NVIDIA_INDEX, TORCH_CUDA_INDEX, Driver, cuda_extra, find_driver, jetson_release
from .probe import cpu_model, cuda_bindings_version, import_cudart, probe_cuda, probe_tensorrt

#: CPU flags (as /proc/cpuinfo names them) that change what ONNX Runtime / OpenVINO / PyTorch run fast.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
DRIVER_FIRST = ("install the NVIDIA driver for the GPU (https://www.nvidia.com/drivers; on Jetson it comes "
                "with JetPack), then `rm -rf .venv && make setup GPU=1`")
BINDINGS_AFTER_DRIVER = ("after the driver: `make setup GPU=1` (or `pip install -e '.[cuda12]'` / "
                         "`'.[cuda13]'` for a CUDA 12 / 13 driver)")


@dataclass(frozen=True)
class Finding:
    component: str
    ok: bool
    detail: str
    fix: str = ""  # the one command (or step) that installs what is missing


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return [feature for feature in CPU_FEATURES if feature in flags]


def _distribution_of(module_file: str) -> str:
    """The pip distribution that installed `module_file`, or where it lives (JetPack's system packages)."""
    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-bindings",
                 "tensorrt-cu13-bindings"):
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError:
            continue
        if any(str(file.locate()) == module_file for file in files):
            return f"pip package {name}"
    if module_file.startswith("/usr/lib/python3"):
        return "a system package (JetPack's python3-libnvinfer)"
    return f"{os.path.dirname(module_file)}"


def tensorrt_install(driver: Driver | None, jetson: str | None) -> str:
    if jetson:
        return ("`sudo apt install nvidia-jetpack` (TensorRT's Python bindings are JetPack's "
                "python3-libnvinfer), then `rm -rf .venv && make setup GPU=1` (a venv that sees them)")
    if driver is None:
        return (f"after the driver: `make setup GPU=1` (or `pip install --extra-index-url {NVIDIA_INDEX} "
                f"tensorrt-cu12` / `tensorrt-cu13` for a CUDA 12 / 13 driver)")
    return f"`pip install --extra-index-url {NVIDIA_INDEX} tensorrt-cu{driver.cuda[0]}`"


def findings() -> list[Finding]:
    """Every component, in the order a GPU setup needs them."""
    driver, jetson = find_driver(), jetson_release()
    features = cpu_features()
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    rows = [Finding("machine", True, machine + (f", Jetson {jetson}" if jetson else "")),
            Finding("CPU", True, f"{cpu_model()}, {os.cpu_count()} logical cores; "
                    f"{', '.join(features) if features else 'none of ' + ', '.join(CPU_FEATURES)}")]
    rows.append(Finding("NVIDIA driver", driver is not None,
                        f"CUDA {driver.cuda_text} (from {driver.source})" if driver else
                        "none (libcuda.so.1 cannot be loaded, no nvidia-smi): the CPU backends only",
                        "" if driver else DRIVER_FIRST))
    cuda = probe_cuda()
    bindings = cuda_bindings_version()
    bindings_fix = f"`pip install -e '.[{cuda_extra(driver)}]'`" if driver else BINDINGS_AFTER_DRIVER
    rows.append(Finding("cuda-python", bool(bindings) and cuda.available,
                        f"cuda-bindings {bindings}{_runtime_version()}" if bindings else "not installed",
                        "" if cuda.available else bindings_fix))
    rows.append(Finding("GPU", cuda.available, cuda.reason, "" if cuda.available else
                        (bindings_fix if driver else "a GPU with the NVIDIA driver (above)")))
    rows.append(_torch_finding(driver, jetson))
    tensorrt = probe_tensorrt(cuda)
    spec = importlib.util.find_spec("tensorrt")
    origin = f"; from {_distribution_of(spec.origin)}" if spec and spec.origin else ""
    rows.append(Finding("TensorRT", tensorrt.available, tensorrt.reason + origin,
                        "" if tensorrt.available else tensorrt_install(driver, jetson)))
    rows.append(_onnxruntime_finding(cuda.available))
    return rows


def _runtime_version() -> str:
    """' (CUDA runtime 12.9)': the CUDA runtime cuda-bindings was built for; '' where it cannot say."""
    try:
        error, version = import_cudart().cudaRuntimeGetVersion()
    except Exception:  # bindings without a loadable runtime: the version is then unknown, not an error
        return ""
    return f" (CUDA runtime {version // 1000}.{version % 1000 // 10})" if int(error) == 0 and version else ""


def _torch_finding(driver: Driver | None, jetson: str | None) -> Finding:
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    usable = torch.cuda.is_available()
    detail = f"PyTorch {torch.__version__}, {build}" + ("; sees the GPU" if usable else "")
    if usable or driver is None:  # on a CPU-only machine the CPU build is the right one
        return Finding("PyTorch", True, detail)
    fix = ("NVIDIA's PyTorch wheel for this JetPack (README.md, 'Jetson'), in a venv made by "
           "`make setup GPU=1`" if jetson else
           f"`pip install --index-url {TORCH_CUDA_INDEX[driver.cuda[0]]} torch==2.13.0`"
           if driver.cuda[0] in TORCH_CUDA_INDEX else DRIVER_FIRST)
    return Finding("PyTorch", False, detail + "; cannot use the GPU", fix)


def _onnxruntime_finding(gpu: bool) -> Finding:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    detail = f"ONNX Runtime {ort.__version__}: {', '.join(providers)}"
    if not gpu or "CUDAExecutionProvider" in providers:
        return Finding("ONNX Runtime", True, detail)
    return Finding("ONNX Runtime", False, detail + "; no GPU provider",
                   "`pip uninstall -y onnxruntime && pip install onnxruntime-gpu` (never both)")


def format_findings(rows: list[Finding]) -> str:
    width = max(len(row.component) for row in rows)
    lines = []
    for row in rows:
        lines.append(f"{'ok ' if row.ok else '-- '} {row.component:<{width}}  {row.detail}")
        if row.fix:
            lines.append(f"    {'':<{width}}  to install: {row.fix}")
    return "\n".join(lines)


def findings_as_dicts(rows: list[Finding]) -> list[dict[str, object]]:
    return [asdict(row) for row in rows]
