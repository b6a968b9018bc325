"""ONNX Runtime runner: CPU by default; CUDA or TensorRT providers where onnxruntime-gpu offers them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from calibration.ort_cpu import session_config
from export.onnx_file import read_metadata
from export.onnx_read import load_onnx
from mirnet_deploy.errors import UserError

from ..cache import describe_onnx, precision_family
from ..manifest import Profile, check_manifest, load_manifest, manifest_path
from ..ort_build import session_options
from ..probe import cpu_model, probe_cuda
from .base import Runner, TensorSpec, to_numpy

#: `providers=` choices -> the execution providers asked of ONNX Runtime, in priority order.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

#: ONNX Runtime's tensor type strings -> NumPy dtype names.
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def resolve_providers(choice: str) -> list[str]:
    """'auto' is CUDA when onnxruntime-gpu offers it and a GPU answers the probe, else CPU.

    onnxruntime-gpu lists CUDAExecutionProvider even without a GPU (and then falls back
    silently), so the list alone proves nothing.
    """
    available = ort.get_available_providers()
    if choice == "auto":
        choice = "cuda" if "CUDAExecutionProvider" in available and probe_cuda().available else "cpu"
    if choice not in PROVIDERS:
        raise UserError(f"Unknown ONNX Runtime provider choice {choice!r}: use auto, {', '.join(PROVIDERS)}.")
    wanted = PROVIDERS[choice][0]
    if wanted not in available:
        raise UserError(
            f"ONNX Runtime {ort.__version__} here offers {', '.join(available)}, not {wanted}. Install "
            f"onnxruntime-gpu instead of onnxruntime (`pip uninstall onnxruntime && pip install "
            f"onnxruntime-gpu`; the two must not be installed together), or use providers='cpu'.")
    return PROVIDERS[choice]


def tensorrt_provider_options(path: Path, cache_dir: Path, profile: Profile | None = None) -> dict[str, Any]:
    """Options of ONNX Runtime's TensorRT execution provider for the ONNX model at `path`.

    Engine and timing caches on disk, so that a fresh (benchmark) process loads the engine instead
    of timing its build; with `profile`, one optimization profile holding the shapes to run, so that
    a new shape does not trigger a rebuild; FP16 / INT8 kernels allowed only for a graph that declares
    that precision (TensorRT 10 still reads these weak-typing flags).
    """
    onnx_info = describe_onnx(path)
    family = precision_family(onnx_info.metadata.get("precision", "fp32"))
    options: dict[str, Any] = {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir),
        "trt_fp16_enable": family == "fp16", "trt_int8_enable": family == "int8",
    }
    if profile is not None:
        for key, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
            options[f"trt_profile_{key}_shapes"] = f"{onnx_info.input_name}:{'x'.join(map(str, shape))}"
    return options


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, ORT_TYPES.get(node.type, node.type), shape)


class OrtRunner(Runner):
    """Run an ONNX model (or an optimized model built by `build_ort_engine`) with ONNX Runtime.

    A model with a manifest next to it is checked first (ONNX Runtime version, CPU).
    With the CUDA provider, inputs and outputs go through I/O binding, and a PyTorch
    CUDA tensor is read in place. With the TensorRT provider, `tensorrt_profile` is the
    shape range to build for and `tensorrt_cache_dir` (default: `ort-trt-cache/` next to
    the model) keeps its engines and timing cache (`tensorrt_provider_options`). A TensorRT-target
    INT8 model is computed with its Q/DQ pairs unfused (`calibration.ort_cpu`); `qdq_fusion`
    overrides that choice, to measure it.
    """

    def __init__(self, path: str | os.PathLike, *, providers: str = "auto", threads: int | None = None,
                 name: str | None = None, tensorrt_profile: Profile | None = None,
                 tensorrt_cache_dir: str | os.PathLike | None = None, qdq_fusion: bool | None = None):
        path = Path(path)
        if manifest_path(path).is_file():
            check_manifest(load_manifest(path), backend="onnxruntime", backend_version=ort.__version__,
                           cpu_model=cpu_model())
        if not path.is_file():
            raise UserError(f"ONNX model {path} does not exist.")
        wanted = resolve_providers(providers)
        configured: list[Any] = list(wanted)
        if wanted[0] == "TensorrtExecutionProvider":
            cache_dir = Path(tensorrt_cache_dir) if tensorrt_cache_dir else path.parent / "ort-trt-cache"
            configured[0] = (wanted[0], tensorrt_provider_options(path, cache_dir, tensorrt_profile))
        metadata = read_metadata(load_onnx(path, load_external_data=False))
        config = session_config(metadata.get("precision"), qdq_fusion=qdq_fusion)
        try:
            self._session = ort.InferenceSession(str(path), session_options(threads, config=config),
                                                 providers=configured)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise UserError(f"ONNX Runtime {ort.__version__} could not load {path}: {exc}") from None
        active = self._session.get_providers()
        if active[0] != wanted[0]:
            raise UserError(f"ONNX Runtime fell back from {wanted[0]} to {active[0]} for {path} (see its log "
                            f"above: usually a missing CUDA/cuDNN library); use providers='cpu' or fix the "
                            f"GPU install.")
        self.providers = active
        self.name = name or f"onnxruntime-{active[0].removesuffix('ExecutionProvider').lower()}"
        self.input_spec = _spec(self._session.get_inputs()[0])
        self.output_spec = _spec(self._session.get_outputs()[0])
        self._on_gpu = active[0] != "CPUExecutionProvider"

    def run(self, x: Any) -> np.ndarray:
        if self._on_gpu:
            return self._run_bound(x)
        batch = self.check_batch(to_numpy(x))
        return self._session.run([self.output_spec.name], {self.input_spec.name: batch})[0]

    def _run_bound(self, x: Any) -> np.ndarray:
        """I/O binding: the output stays on the GPU until one copy back; a CUDA tensor is bound in place."""
        self.check_open()
        binding = self._session.io_binding()
        if getattr(x, "is_cuda", False):
            import torch  # x is a torch tensor, so torch is there

            x = x.detach().contiguous().float()
            torch.cuda.current_stream(x.device).synchronize()  # x is complete before ONNX Runtime reads it
            binding.bind_input(self.input_spec.name, "cuda", x.device.index or 0, np.float32, tuple(x.shape),
                               x.data_ptr())
        else:
            binding.bind_cpu_input(self.input_spec.name, self.check_batch(to_numpy(x)))
        binding.bind_output(self.output_spec.name, "cuda")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        super().close()
        self._session = None
