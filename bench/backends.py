"""Which of the benchmark's backends can run on this machine, and why the others cannot.

Backends are probed, never assumed (DESIGN.md): asking for one that cannot run is an error
naming what to install; `all-available` runs what can run and lists the rest as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnxruntime as ort

from engines.openvino_build import openvino_version
from engines.probe import TENSORRT_INSTALL_HINT, probe_cuda, probe_tensorrt
from mirnet_deploy.errors import UserError

#: Benchmark backends -> what runs the model.
BENCH_BACKENDS: dict[str, str] = {
    "torch": "PyTorch eager (FP32), on the GPU when PyTorch has CUDA, else the CPU",
    "ort": "ONNX Runtime, CPU execution provider",
    "openvino": "OpenVINO, CPU device, f32 inference precision (bf16 for BF16)",
    "ort-cuda": "ONNX Runtime, CUDA execution provider",
    "ort-trt": "ONNX Runtime, TensorRT execution provider",
    "tensorrt": "native TensorRT engine",
}
ALL_AVAILABLE = "all-available"

#: Backends that run on a GPU, and the ONNX Runtime `providers=` choice of the ONNX Runtime ones.
GPU_BACKENDS = ("ort-cuda", "ort-trt", "tensorrt")
ORT_PROVIDERS = {"ort": "cpu", "ort-cuda": "cuda", "ort-trt": "tensorrt"}

_ORT_GPU_HINT = ("install onnxruntime-gpu instead of onnxruntime (`pip uninstall onnxruntime && pip install "
                 "onnxruntime-gpu`) on a machine with an NVIDIA GPU and cuda-python")


@dataclass(frozen=True)
class Availability:
    backend: str
    available: bool
    reason: str  # what was found, or what is missing and how to get it


def _ort_gpu(backend: str, provider: str) -> Availability:
    cuda = probe_cuda()
    missing = []
    if provider not in ort.get_available_providers():
        offered = ", ".join(ort.get_available_providers())
        missing.append(f"ONNX Runtime {ort.__version__} here offers {offered}, not {provider}")
    if not cuda.available:
        missing.append(cuda.reason)
    if missing:
        return Availability(backend, False, f"{'; '.join(missing)}: {_ORT_GPU_HINT}")
    return Availability(backend, True, f"ONNX Runtime {ort.__version__} {provider} ({cuda.reason})")


def probe_backends() -> dict[str, Availability]:
    """Every benchmark backend with whether it can run here and why."""
    import torch

    device = "CUDA" if torch.cuda.is_available() else "CPU"
    tensorrt = probe_tensorrt()
    return {
        "torch": Availability("torch", True, f"PyTorch {torch.__version__} on the {device}"),
        "ort": Availability("ort", True, f"ONNX Runtime {ort.__version__} CPUExecutionProvider"),
        "openvino": Availability("openvino", True, f"OpenVINO {openvino_version()} CPU"),
        "ort-cuda": _ort_gpu("ort-cuda", "CUDAExecutionProvider"),
        "ort-trt": _ort_gpu("ort-trt", "TensorrtExecutionProvider"),
        "tensorrt": Availability("tensorrt", tensorrt.available,
                                 tensorrt.reason if tensorrt.available
                                 else f"{tensorrt.reason}. {TENSORRT_INSTALL_HINT}"),
    }


def resolve_backends(text: str) -> tuple[list[str], list[Availability]]:
    """(backends to run, backends skipped with their reason) for a comma-separated `--backend` value.

    A backend named explicitly that cannot run is a UserError; `all-available` skips it instead.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*BENCH_BACKENDS, ALL_AVAILABLE)]
    if unknown or not names:
        raise UserError(f"Unknown backend {', '.join(unknown) or repr(text)}: choose from "
                        f"{', '.join(BENCH_BACKENDS)} or {ALL_AVAILABLE}, comma-separated.")
    availability = probe_backends()
    if ALL_AVAILABLE in names:
        names = list(BENCH_BACKENDS)
        return ([n for n in names if availability[n].available],
                [availability[n] for n in names if not availability[n].available])
    for name in names:
        if not availability[name].available:
            raise UserError(f"Backend {name} ({BENCH_BACKENDS[name]}) cannot run on this machine: "
                            f"{availability[name].reason}. Use --backend {ALL_AVAILABLE} to benchmark "
                            f"whatever runs here.")
    return list(dict.fromkeys(names)), []
