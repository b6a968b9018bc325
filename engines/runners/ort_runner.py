"""ONNX Runtime runner: CPU by default; CUDA or TensorRT providers where onnxruntime-gpu offers them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mirnet_deploy.errors import UserError

from ..manifest import check_manifest, load_manifest, manifest_path
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


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, ORT_TYPES.get(node.type, node.type), shape)


class OrtRunner(Runner):
    """Run an ONNX model (or an optimized model built by `build_ort_engine`) with ONNX Runtime.

    A model with a manifest next to it is checked first (ONNX Runtime version, CPU).
    With the CUDA provider, inputs and outputs go through I/O binding, and a PyTorch
    CUDA tensor is read in place.
    """

    def __init__(self, path: str | os.PathLike, *, providers: str = "auto", threads: int | None = None,
                 name: str | None = None):
        path = Path(path)
        if manifest_path(path).is_file():
            check_manifest(load_manifest(path), backend="onnxruntime", backend_version=ort.__version__,
                           cpu_model=cpu_model())
        if not path.is_file():
            raise UserError(f"ONNX model {path} does not exist.")
        wanted = resolve_providers(providers)
        try:
            self._session = ort.InferenceSession(str(path), session_options(threads), providers=wanted)
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
