"""The PyTorch reference runner: the module in eval mode, padded like the exported graph pads."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mirnet_ref.inference import pad_to_multiple

from .base import Runner, TensorSpec, to_numpy


class TorchRunner(Runner):
    """Run a `torch.nn.Module` on CPU (or the device it lives on) without autograd.

    The exported ONNX graph reflect-pads H and W to the model's size multiple and
    crops back; so does this runner, so both accept the same inputs and agree.
    `size_multiple` defaults to the model's (`model.config.size_multiple`), else 1.
    """

    def __init__(self, module: nn.Module, *, size_multiple: int | None = None, name: str = "torch"):
        config = getattr(module, "config", None)
        self.module = module.eval()
        self.size_multiple = size_multiple or getattr(config, "size_multiple", 1)
        self.name = name
        io = config if config is not None else getattr(module, "spec", None)  # a DeploymentGraph's spec
        self.input_spec = TensorSpec("input", "float32", (-1, getattr(io, "in_channels", -1), -1, -1))
        self.output_spec = TensorSpec("output", "float32", (-1, getattr(io, "out_channels", -1), -1, -1))
        self._device = next(module.parameters(), torch.empty(0)).device

    def run(self, x: Any) -> Any:
        """NumPy in, NumPy out; a CUDA tensor on the module's device is run in place and its output
        stays a CUDA tensor (what the benchmark's CUDA-event split times)."""
        if isinstance(x, torch.Tensor) and x.is_cuda and x.device == self._device:
            self.check_open()
            with torch.inference_mode():
                return self._forward(x.float())
        batch = self.check_batch(to_numpy(x))
        return np.ascontiguousarray(self._forward(torch.from_numpy(batch)).float().cpu().numpy())

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The module on `batch`, reflect-padded to the size multiple and cropped back like the graph."""
        height, width = batch.shape[-2:]
        with torch.inference_mode():
            padded = pad_to_multiple(batch.to(self._device), self.size_multiple)
            out = self.module(padded)
            scale = out.shape[-1] // padded.shape[-1]  # super-resolution graphs enlarge
            return out[..., : height * scale, : width * scale]  # a strided view: callers copy

    def close(self) -> None:
        super().close()
        self.module = None
