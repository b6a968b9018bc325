"""What every exported graph computes around the network, as a PyTorch module.

    input (N, C, H, W), any H, W >= 1
      -> [bicubic upsampling by `sr_scale`, for super-resolution from a low-resolution image]
      -> reflect-pad bottom/right to the spec's size multiple
      -> network
      -> crop back to (H * scale, W * scale)

There is no clamp: the output is the network's own output, like PyTorch's `model(x)`, so
callers clamp to [0, 1] (as `mirnet_ref.inference.restore` does) and parity checks compare
unclamped values. Export traces this module and verification runs it eagerly, so the ONNX
graph and its PyTorch reference are the same function by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mirnet_ref.inference import reflect_indices

from .spec import ModelSpec


class DeploymentGraph(nn.Module):
    """`network` behind the ONNX I/O contract: any H, W, optional in-graph bicubic upsampling."""

    def __init__(self, network: nn.Module, spec: ModelSpec, sr_scale: int | None = None) -> None:
        super().__init__()
        self.network = network
        self.spec = spec
        self.sr_scale = sr_scale or 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sr_scale > 1:
            # Constant scale factor -> ONNX Resize(cubic, cubic_coeff_a=-0.75, half_pixel) with
            # constant scales: PyTorch's bicubic kernel, and what TensorRT's parser accepts.
            x = F.interpolate(x, scale_factor=float(self.sr_scale), mode="bicubic", align_corners=False)
        height, width = x.shape[-2], x.shape[-1]
        multiple = self.spec.size_multiple
        if multiple > 1:
            x = x.index_select(2, reflect_indices(height, height + (-height) % multiple, x.device))
            x = x.index_select(3, reflect_indices(width, width + (-width) % multiple, x.device))
        scale = self.spec.scale
        return self.network(x)[..., : height * scale, : width * scale]
