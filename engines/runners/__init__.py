"""Runners behind one interface: PyTorch (reference), ONNX Runtime, OpenVINO, native TensorRT.

    with OrtRunner("model.onnx") as runner:
        output = runner.run(batch)  # float32 NCHW in, NCHW out

Importing any of them needs no GPU; creating a `TensorRTRunner` checks the engine's
manifest and probes the GPU before TensorRT is touched.
"""

from .backends import BACKENDS, open_runner, select_backend
from .base import Runner, TensorSpec
from .openvino_runner import OpenVinoRunner
from .ort_runner import OrtRunner
from .polygraphy_adapter import PolygraphyRunner, as_polygraphy_runner
from .tensorrt_runner import TensorRTRunner
from .torch_runner import TorchRunner

__all__ = ["BACKENDS", "OpenVinoRunner", "OrtRunner", "PolygraphyRunner", "Runner", "TensorRTRunner",
           "TensorSpec", "TorchRunner", "as_polygraphy_runner", "open_runner", "select_backend"]
