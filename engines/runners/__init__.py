"""Runners behind one interface: PyTorch (reference), ONNX Runtime, OpenVINO, native TensorRT.

    with OrtRunner("model.onnx") as runner:
        output = runner.run(batch)  # float32 NCHW in, NCHW out

Importing any of them needs no GPU; creating a `TensorRTRunner` checks the engine's
manifest and probes the GPU before TensorRT is touched. `TorchRunner` is imported on first
use: a process that runs an engine (a `mirnet-bench` worker, the demo's photo) does not load
PyTorch for it (about 3 CPU-seconds per process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import BACKENDS, open_runner, select_backend
from .base import Runner, TensorSpec
from .openvino_runner import OpenVinoRunner
from .ort_runner import OrtRunner
from .polygraphy_adapter import PolygraphyRunner, as_polygraphy_runner
from .tensorrt_runner import TensorRTRunner

if TYPE_CHECKING:
    from .torch_runner import TorchRunner

__all__ = ["BACKENDS", "OpenVinoRunner", "OrtRunner", "PolygraphyRunner", "Runner", "TensorRTRunner",
           "TensorSpec", "TorchRunner", "as_polygraphy_runner", "open_runner", "select_backend"]


def __getattr__(name: str) -> Any:
    if name == "TorchRunner":
        from .torch_runner import TorchRunner

        return TorchRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
