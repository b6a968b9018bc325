"""Which backend runs here, and opening a runner for an engine or ONNX file."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from mirnet_deploy.errors import UserError

from ..probe import TENSORRT_INSTALL_HINT, probe_cuda, probe_tensorrt
from .base import Runner
from .openvino_runner import OpenVinoRunner
from .ort_runner import OrtRunner
from .tensorrt_runner import TensorRTRunner

BACKENDS = ("auto", "tensorrt", "ort", "openvino", "torch")


def select_backend(requested: str = "auto", onnx_path: str | os.PathLike | None = None) -> tuple[str, str]:
    """(backend, reason): 'auto' is TensorRT when importable and a CUDA device answers, else 'cpu'.

    'cpu' means "ONNX Runtime or OpenVINO, whichever measures faster here": the caller measures
    (`engines.cpu_choice`), since which one wins depends on the CPU, the runtimes and the precision.
    A TensorRT-target INT8 `onnx_path` that this OpenVINO miscomputes (see `openvino_int8_check`)
    is not measured: ONNX Runtime runs that one.

    Asking for 'tensorrt' where it cannot run is a UserError naming what to install; when
    `onnx_path` is given, the message says the ONNX model is ready to build elsewhere.
    """
    if requested not in BACKENDS:
        raise UserError(f"Unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}.")
    if requested == "torch":
        return "torch", "PyTorch reference requested"
    if requested == "ort":
        return "ort", f"ONNX Runtime {ort.__version__} requested ({', '.join(ort.get_available_providers())})"
    if requested == "openvino":
        import openvino as ov

        from ..openvino_build import openvino_version

        devices = ", ".join(ov.Core().available_devices)
        return "openvino", f"OpenVINO {openvino_version()} requested ({devices})"
    cuda = probe_cuda()
    tensorrt = probe_tensorrt(cuda)
    if tensorrt.available:
        return "tensorrt", f"{tensorrt.reason} ({cuda.reason})"
    if requested == "tensorrt":
        ready = (f" The ONNX model {onnx_path} is ready: build it into an engine on a GPU machine "
                 f"(`mirnet build {onnx_path} --backend tensorrt`), or run it here with --backend ort."
                 if onnx_path else "")
        raise UserError(f"TensorRT was requested but cannot run here: {tensorrt.reason}. "
                        f"{TENSORRT_INSTALL_HINT}.{ready}")
    from ..cache import describe_onnx
    from ..openvino_build import DEFAULT_DEVICE, openvino_version
    from ..openvino_int8_check import miscomputed_probes

    if onnx_path is not None and miscomputed_probes(describe_onnx(onnx_path).metadata.get("precision"),
                                                    DEFAULT_DEVICE):
        return "ort", (f"ONNX Runtime {ort.__version__}, because TensorRT is not usable here "
                       f"({tensorrt.reason}) and OpenVINO {openvino_version()} miscomputes this "
                       f"TensorRT-target INT8 model (`--backend openvino` says why)")
    return "cpu", (f"ONNX Runtime or OpenVINO, whichever is faster on this CPU, because TensorRT is not "
                   f"usable here: {tensorrt.reason}")


def open_runner(path: str | os.PathLike, *, providers: str = "auto", threads: int | None = None) -> Runner:
    """A runner for a file: TensorRT for `.engine`/`.plan`, OpenVINO for `.ovblob`, ONNX Runtime for
    `.onnx` (optimized or not)."""
    path = Path(path)
    if path.suffix in (".engine", ".plan"):
        return TensorRTRunner(path)
    if path.suffix == ".ovblob":
        return OpenVinoRunner(path, threads=threads)
    if path.suffix == ".onnx":
        return OrtRunner(path, providers=providers, threads=threads)
    raise UserError(f"Cannot tell how to run {path}: expected a TensorRT .engine/.plan, an OpenVINO .ovblob "
                    f"or an .onnx model.")
