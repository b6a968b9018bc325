"""Multiply-accumulate counts from forward hooks on the `meta` device (shapes only, no compute).

Convention (MIRNET_SPEC.md §11, fvcore's): a convolution costs
out_elements x (C_in / groups) x kH x kW; a transposed convolution is charged
per *input* element (C_out / groups x kH x kW each), which is the work really
done. thop charges it per output pixel (4x), which is where the 785 G figure
quoted for MIRNet comes from. Fixed operations are counted as fvcore does:
4 per bilinear output element, 1 per adaptive-pool input element; the sum of
everything is the "fvcore-like total" of the MPRNet / MIRNet-v2 key files.
Works for any nn.Module built from standard layers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn


def _conv_category(module: nn.Conv2d, output: torch.Tensor) -> str:
    """The kind names of the reference key files: conv3x3, conv3x3_groups4, conv1x1_on_pooled_1x1."""
    kh, kw = module.kernel_size
    groups = f"_groups{module.groups}" if module.groups > 1 else ""
    pooled = "_on_pooled_1x1" if output.shape[-2:] == (1, 1) else ""
    return f"conv{kh}x{kw}{groups}{pooled}"


def count_macs(
    build: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    extra_counters: dict[type, Callable[[nn.Module, torch.Tensor, torch.Tensor], int]] | None = None,
) -> Counter:
    """MACs per category for one forward pass of `build()` on an input of `input_shape`.

    `build` is called under `torch.device('meta')` so even 4K inputs of the full
    model cost no memory. `extra_counters` maps module types to MAC functions for
    layers implemented functionally (e.g. a fixed blur), counted under the type name.
    """
    with torch.device("meta"):
        return forward_macs(build().eval(), input_shape, extra_counters)


def forward_macs(
    model: nn.Module,
    input_shape: tuple[int, ...],
    extra_counters: dict[type, Callable[[nn.Module, torch.Tensor, torch.Tensor], int]] | None = None,
) -> Counter:
    """MACs per category (as `count_macs`) of one forward of `model` on a zero input of `input_shape`,
    made on the default device: `meta` for shapes only, the CPU for a small input computed for real."""
    totals: Counter = Counter()
    extra_counters = extra_counters or {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            totals["conv_transpose"] += x.numel() * module.out_channels // module.groups * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            totals[_conv_category(module, output)] += (
                output.numel() * module.in_channels // module.groups * kh * kw
            )
        elif isinstance(module, nn.Upsample):
            totals["bilinear"] += 4 * output.numel()
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            totals["adaptive_avg_pool"] += x.numel()
        else:
            for kind, counter in extra_counters.items():
                if isinstance(module, kind):
                    totals[kind.__name__] += counter(module, x, output)

    watched = (nn.Conv2d, nn.ConvTranspose2d, nn.Upsample, nn.AdaptiveAvgPool2d, *extra_counters)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, watched)]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return totals


def learned_macs(totals: Counter) -> int:
    """MACs of the learned convolutions (the 479.4 G of MIRNet at 256x256; `conv_macs` of the key files)."""
    return sum(v for k, v in totals.items() if k.startswith("conv"))
