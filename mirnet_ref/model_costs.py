"""What a model configuration costs: parameters, state-dict keys, multiply-accumulates per input size.

`mirnet info` prints it, `mirnet-bench` turns latency into GMAC/s with it. The counts come from a
forward pass on the `meta` device (complexity.py: shapes only), and depend only on the configuration
and the padded input shape, so each is made once per process (`input_macs`): `mirnet-bench` asks for
every configuration it times, and the demo's eight rows have two input sizes.

Counting once matters beyond the forward itself: PyTorch runs MIRNet's elementwise operations on
`meta` tensors through its Python reference kernels (PReLU, the blur kernel's product, concatenation,
bilinear upsampling), each wrapped in `torch._disable_dynamo`, whose first call imports
`torch._dynamo` (about 4 CPU-s on this 2-core machine). A process that counts pays that once.
"""

from __future__ import annotations

import functools
from collections import Counter

import torch

from mirnet_deploy.resolutions import format_resolution

from .complexity import count_macs, learned_macs
from .model import count_parameters
from .registry import ModelConfig, family_of_config


@functools.cache
def _counted(config: ModelConfig, input_shape: tuple[int, int, int, int]) -> tuple[tuple[str, int], ...]:
    family = family_of_config(config)
    totals = count_macs(functools.partial(family.build, config), input_shape, family.mac_counters)
    return tuple(sorted(totals.items()))


def input_macs(config: ModelConfig, input_shape: tuple[int, int, int, int]) -> Counter:
    """MACs per category (complexity.count_macs) of one forward on an (N, C, H, W) input already padded
    to the size multiple; counted once per process for each configuration and shape."""
    return Counter(dict(_counted(config, tuple(input_shape))))


def resolution_cost(config: ModelConfig, resolution: tuple[int, int], batch: int = 1) -> dict:
    """The MACs of `batch` images of `resolution` (W, H), padded as inference pads them."""
    width, height = resolution
    multiple = config.size_multiple
    padded_w, padded_h = -(-width // multiple) * multiple, -(-height // multiple) * multiple
    totals = input_macs(config, (batch, config.in_channels, padded_h, padded_w))
    learned = learned_macs(totals)
    return {
        "resolution": format_resolution((width, height)),
        "padded": format_resolution((padded_w, padded_h)),
        "batch": batch,
        "gmacs": learned / 1e9,
        "gmacs_with_fixed_ops": sum(totals.values()) / 1e9,
        "macs_per_pixel": learned / (batch * width * height),
        "breakdown_gmacs": {k: v / 1e9 for k, v in sorted(totals.items())},
    }


def describe(config: ModelConfig, resolutions: list[tuple[int, int]], batch: int = 1) -> dict:
    """Family, configuration, matching presets, parameter count and MACs per resolution, as plain data."""
    family = family_of_config(config)
    with torch.device("meta"):
        model = family.build(config)
        parameters = count_parameters(model)
        keys = len(model.state_dict())
    return {
        "family": family.name,
        "config": config.as_dict(),
        "presets": family.matching_presets(config),
        "parameters": parameters,
        "state_dict_keys": keys,
        "size_multiple": config.size_multiple,
        "macs": [resolution_cost(config, resolution, batch) for resolution in resolutions],
    }
