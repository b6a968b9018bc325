"""Restore images of any size with a model of any family: reflect-pad, run, crop, clamp.

MIRNet only accepts H and W that are multiples of 2^(height-1) (4 by default):
the blur downsampler rounds up while the upsamplers exactly double; MPRNet
needs multiples of 8, MIRNet-v2 of 4 (`config.size_multiple`). The authors'
test scripts pad bottom/right by reflection, run, keep the output inference
uses (MPRNet's final stage) and crop back; we do the same. Reflection of a
1-3 pixel image cannot be done in one `F.pad` call (reflect needs pad < size),
so padding uses the periodic mirror extension, which equals repeated
reflection and works from 1 pixel up.
"""

from __future__ import annotations

import torch
from torch import nn

from mirnet_deploy.errors import ImageError

from .registry import inference_module


def reflect_indices(size: int | torch.Tensor, padded: int | torch.Tensor,
                    device: torch.device | None = None) -> torch.Tensor:
    """Indices 0..padded-1 mirrored into 0..size-1 (whole-sample symmetric, period 2(size-1)).

    Branch-free so that it also traces into ONNX (Range/Mod/Where) with dynamic sizes:
    the period is 1 when size == 1, where every index maps to 0.
    """
    period = 2 * size - 2 + 1 // size
    index = torch.arange(padded, device=device) % period
    return torch.where(index >= size, period - index, index)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad the last two dims of NCHW `x` at the bottom/right up to a multiple."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h:
        x = x.index_select(-2, reflect_indices(height, height + pad_h, x.device))
    if pad_w:
        x = x.index_select(-1, reflect_indices(width, width + pad_w, x.device))
    return x


def check_image_tensor(x: torch.Tensor, channels: int) -> None:
    """Reject what the network cannot restore, with a message that says why."""
    if x.dim() not in (3, 4):
        raise ImageError(f"Expected an image tensor CxHxW or NxCxHxW, got shape {tuple(x.shape)}.")
    if x.shape[-3] != channels:
        raise ImageError(
            f"The model takes {channels}-channel images, got {x.shape[-3]} channels "
            f"(shape {tuple(x.shape)}); convert grayscale/RGBA to RGB first."
        )
    if min(x.shape[-2:]) < 1:
        raise ImageError(f"Image has an empty dimension: shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise ImageError(
            f"Expected a float tensor in [0, 1], got {x.dtype}; divide integers by 255 or 65535."
        )
    if not torch.isfinite(x).all():
        raise ImageError("Image contains NaN or Inf values.")


@torch.no_grad()
def restore(model: nn.Module, image: torch.Tensor, size_multiple: int | None = None) -> torch.Tensor:
    """Restore one image (CxHxW) or a batch (NxCxHxW) of any H, W >= 1; output clamped to [0, 1].

    Runs in the model's dtype (float32 or bfloat16 on CPU) and returns the input's dtype.
    """
    multiple = size_multiple or getattr(model, "size_multiple", 4)
    config = getattr(model, "config", None)
    check_image_tensor(image, config.in_channels if config else 3)
    single = image.dim() == 3
    batch = image[None] if single else image
    height, width = batch.shape[-2:]
    param = next(model.parameters())
    padded = pad_to_multiple(batch.to(device=param.device, dtype=param.dtype), multiple)
    out = inference_module(model)(padded)[..., :height, :width].clamp_(0.0, 1.0).to(image.dtype)
    return out[0] if single else out
