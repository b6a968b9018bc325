"""What a model configuration costs: parameters, state-dict keys, multiply-accumulates per input size.

`mirnet info` prints it, `mirnet-bench` turns latency into GMAC/s with it. The counts depend only on
the configuration and the padded input shape, and each is made once per process (`input_macs`):
`mirnet-bench` asks for every configuration it times, and the demo's eight rows have two input sizes.

How they are counted: every layer of these networks works at the input's size divided by a power of
two up to the size multiple (or on a pooled 1x1), so each category's count is a bilinear function of
the padded height and width. It is read off four small forwards on the CPU (sides 2 and 3 size
multiples, zero weights) and checked at a fifth size (4 x 5 multiples) before it is trusted; an input
smaller than the samples, or a model that fails the check, is counted by a forward on the `meta`
device at its own size (complexity.py: shapes only). Why not always `meta`: PyTorch runs elementwise
operations on `meta` tensors through its Python reference kernels, each wrapped in
`torch._disable_dynamo`, whose first call imports `torch._dynamo` (about 2 CPU-s), and each `meta`
forward cost about three small CPU forwards; `mirnet info full --res 256,1080p` took 7.3 user-s
before and 5.1 after (README, "How long `make demo` takes").
"""

from __future__ import annotations

import functools
from collections import Counter

import torch

from mirnet_deploy.resolutions import format_resolution

from .complexity import count_macs, forward_macs, learned_macs
from .model import count_parameters
from .registry import ModelConfig, family_of_config

#: Sides of the small forwards, in size multiples: the four corners of the bilinear fit, the check.
SAMPLE_SIDES = (2, 3)
CHECK_SIDES = (4, 5)


@functools.cache
def _counted(config: ModelConfig, input_shape: tuple[int, int, int, int]) -> tuple[tuple[str, int], ...]:
    totals = _interpolated(config, input_shape)
    if totals is None:
        family = family_of_config(config)
        totals = count_macs(functools.partial(family.build, config), input_shape, family.mac_counters)
    return tuple(sorted(totals.items()))


@functools.cache
def _small_counts(config: ModelConfig, batch: int, channels: int) -> dict[tuple[int, int], Counter]:
    """The counts of the small forwards (corners and check) by padded (height, width), made on the
    CPU with zero weights (built on `meta`, then given CPU memory: no initialisation to pay for), on
    one thread: on inputs this small, a second thread cost about 3x the CPU time in synchronisation."""
    family = family_of_config(config)
    with torch.device("meta"):
        model = family.build(config)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
    multiple = config.size_multiple
    sides = [(h, w) for h in SAMPLE_SIDES for w in SAMPLE_SIDES] + [CHECK_SIDES]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shapes = [(batch, channels, h * multiple, w * multiple) for h, w in sides]
        return {shape[2:]: forward_macs(model, shape, family.mac_counters) for shape in shapes}
    finally:
        torch.set_num_threads(previous)


def _interpolated(config: ModelConfig, input_shape: tuple[int, int, int, int]) -> Counter | None:
    """The counts at `input_shape` from the bilinear fit of the small forwards; None where the fit does
    not apply (an input below the samples) or is not exact (it misses the check size)."""
    batch, channels, height, width = input_shape
    low, high = (side * config.size_multiple for side in SAMPLE_SIDES)
    if min(height, width) < low:
        return None
    counts = _small_counts(config, batch, channels)

    def fitted(h: int, w: int) -> Counter | None:
        weights = {(low, low): (high - h) * (high - w), (high, low): (h - low) * (high - w),
                   (low, high): (high - h) * (w - low), (high, high): (h - low) * (w - low)}
        totals = Counter()
        for kind in set().union(*(counts[corner] for corner in weights)):
            value, remainder = divmod(sum(counts[c][kind] * weight for c, weight in weights.items()),
                                      (high - low) ** 2)
            if remainder:
                return None
            totals[kind] = value
        return totals

    check = tuple(side * config.size_multiple for side in CHECK_SIDES)
    if fitted(*check) != counts[check]:
        return None
    return fitted(height, width)


def input_macs(config: ModelConfig, input_shape: tuple[int, int, int, int]) -> Counter:
    """MACs per category (complexity.count_macs) of one forward on an (N, C, H, W) input already padded
    to the size multiple; made once per process for each configuration and shape."""
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
