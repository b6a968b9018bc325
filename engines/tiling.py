"""Restore images larger than memory or an engine profile allows: overlapping tiles, blended.

`TiledRunner` wraps any `Runner`. The whole input and the accumulated output stay in host
NumPy arrays; the wrapped runner only ever sees one tile (all images of the batch, cropped
to it), so a TensorRT engine holds one tile on the device, not the image.

Along an axis of length n, with tile t and overlap o (the arithmetic of the C++ core's
`engines/cpp/include/mirnet/tiling.hpp`, so both split an image the same way):
  * n <= t: one tile covering the axis (any length: the exported graph pads it itself);
  * n > t:  ceil((n - o) / (t - o)) tiles at origins i * (t - o), the last one moved back
            to n - t so that it ends flush with the border; t is a multiple of the model's
            size multiple.
Each tile's output is weighted by a separable window that ramps linearly over o pixels at
every edge it shares with a neighbour, from 0.5 / o up to 1, and stays 1 inside and along
the image border. Weighted sums and weight sums accumulate in float32 and are divided at
the end, so any overlap pattern (the moved-back last tile too) blends to a weighted mean.

Tiling is exact for networks whose receptive field is shorter than the overlap. MIRNet's
channel attention pools the whole image, so tiled output differs from untiled output;
`seam_psnr` measures by how much.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mirnet_deploy.errors import UserError
from mirnet_ref.metrics import psnr

from .manifest import Profile
from .runners.base import Runner, to_numpy

DEFAULT_OVERLAP = 32


def tile_origins(n: int, tile: int, overlap: int) -> list[int]:
    """Origins of the tiles covering [0, n) (see the module docstring); the last ends at n."""
    if n < 1 or tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"tile_origins needs n >= 1, tile >= 1 and 0 <= overlap < tile; "
                         f"got n={n}, tile={tile}, overlap={overlap}")
    if n <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(n - overlap) // stride)
    return [min(i * stride, n - tile) for i in range(count)]


def ramp_weights(origin: int, length: int, n: int, overlap: int) -> np.ndarray:
    """1-D blend window of the tile [origin, origin + length) on an axis of length n.

    Linear ramps (i + 0.5) / overlap over the first/last `overlap` pixels on sides that
    face a neighbouring tile; sides on the image border keep weight 1. Two tiles that
    overlap by exactly `overlap` therefore have weights summing to 1 across the overlap.
    """
    weights = np.ones(length, np.float32)
    if overlap == 0:
        return weights
    ramp = (np.arange(min(overlap, length), dtype=np.float32) + 0.5) / overlap
    if origin > 0:
        weights[: ramp.size] = np.minimum(weights[: ramp.size], ramp)
    if origin + length < n:
        weights[length - ramp.size:] = np.minimum(weights[length - ramp.size:], ramp[::-1])
    return weights


def tile_for_budget(memory_budget_mb: float, bytes_per_pixel: float, *, batch: int = 1,
                    multiple: int = 4) -> int:
    """The largest square tile edge (a multiple of `multiple`) whose run fits the host memory budget.

    `bytes_per_pixel` is the model's peak activation memory per *input* pixel and image (the
    caller's estimate, e.g. `engines.infer.activation_bytes_per_pixel`); the image, the output
    accumulator and the weights (about (3 + 4 * scale^2) * 4 bytes per pixel) come on top.
    """
    if memory_budget_mb <= 0 or bytes_per_pixel <= 0:
        raise UserError(f"A memory budget of {memory_budget_mb} MB for {bytes_per_pixel} bytes per pixel "
                        "gives no tile size: both must be positive.")
    edge = math.isqrt(int(memory_budget_mb * 2**20 / (bytes_per_pixel * batch)))
    return edge // multiple * multiple


def tiling_profile(profiles: Sequence[Profile], batch: int, channels: int) -> Profile:
    """The optimization profile admitting this batch with the largest maximum tile area."""
    fitting = [p for p in profiles if p.min[0] <= batch <= p.max[0] and p.min[1] <= channels <= p.max[1]]
    if not fitting:
        ranges = "; ".join(f"{p.min}..{p.max}" for p in profiles)
        raise UserError(f"No optimization profile of the engine admits a batch of {batch} with {channels} "
                        f"channels ({ranges}): run smaller batches or rebuild the engine (`mirnet build "
                        f"--batch N`).")
    return max(fitting, key=lambda p: p.max[2] * p.max[3])


class TiledRunner(Runner):
    """Run `runner` tile by tile over images streamed from host memory (see the module docstring).

    The tile edge is `tile`, or else the largest one that keeps a run within
    `memory_budget_mb` given `bytes_per_pixel` (`tile_for_budget`); either way it is
    clipped to the wrapped runner's optimization profile when it has `profiles` (TensorRT).
    Images within one tile run untiled. `scale` is the model's output/input size ratio
    (super-resolution graphs that upsample inside); every tile's output is checked against it.
    """

    def __init__(self, runner: Runner, *, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 memory_budget_mb: float | None = None, bytes_per_pixel: float | None = None,
                 scale: int = 1, multiple: int = 4):
        if tile is None and (memory_budget_mb is None or bytes_per_pixel is None):
            raise UserError("Tiling needs a tile size, or a memory budget and the model's bytes per pixel "
                            "to choose one from.")
        if overlap < 0 or scale < 1 or multiple < 1:
            raise UserError(f"Tiling needs overlap >= 0, scale >= 1 and multiple >= 1; got overlap "
                            f"{overlap}, scale {scale}, multiple {multiple}.")
        if tile is not None and (tile < multiple or tile % multiple):
            raise UserError(f"Tile size {tile} is not a positive multiple of {multiple}, the model's size "
                            f"multiple: use e.g. {max(multiple, tile // multiple * multiple)}.")
        self.runner = runner
        self.tile, self.overlap, self.scale, self.multiple = tile, overlap, scale, multiple
        self.memory_budget_mb, self.bytes_per_pixel = memory_budget_mb, bytes_per_pixel
        self.name = f"{runner.name}+tiles"
        self.input_spec, self.output_spec = runner.input_spec, runner.output_spec

    def tile_limits(self, batch: int = 1, channels: int = 3) -> tuple[int, int]:
        """The largest tile (height, width) for this batch: requested or budgeted, within the profile."""
        edge = self.tile or tile_for_budget(self.memory_budget_mb, self.bytes_per_pixel, batch=batch,
                                            multiple=self.multiple)
        limits = [edge, edge]
        profiles = getattr(self.runner, "profiles", None)
        if profiles:
            profile = tiling_profile(profiles, batch, channels)
            limits = [min(edge, profile.max[axis] // self.multiple * self.multiple) for axis in (2, 3)]
            if any(limit < profile.min[axis] for limit, axis in zip(limits, (2, 3), strict=True)):
                raise UserError(f"The largest tile allowed ({limits[0]}x{limits[1]}) is below the engine "
                                f"profile's minimum {profile.min[2]}x{profile.min[3]}: raise the tile size "
                                f"or the memory budget.")
        if min(limits) <= self.overlap:
            raise UserError(f"The tile ({limits[0]}x{limits[1]}) must be larger than the overlap "
                            f"({self.overlap}): raise the tile size or memory budget, or lower the overlap.")
        return limits[0], limits[1]

    def run(self, x: Any) -> np.ndarray:
        batch = self.check_batch(to_numpy(x))
        n, channels, height, width = batch.shape
        tile_h, tile_w = self.tile_limits(n, channels)
        if height <= tile_h and width <= tile_w:
            return self.runner.run(batch)
        ys = tile_origins(height, min(tile_h, height), self.overlap)
        xs = tile_origins(width, min(tile_w, width), self.overlap)
        return self._blend(batch, ys, xs, min(tile_h, height), min(tile_w, width))

    def _blend(self, batch: np.ndarray, ys: list[int], xs: list[int], tile_h: int, tile_w: int) -> np.ndarray:
        """Run every tile (`run_tiles`) and accumulate its weighted output."""
        s = self.scale
        height, width = batch.shape[2] * s, batch.shape[3] * s
        wy = [ramp_weights(y * s, tile_h * s, height, self.overlap * s) for y in ys]
        wx = [ramp_weights(x * s, tile_w * s, width, self.overlap * s) for x in xs]
        weight_sum = np.zeros((height, width), np.float32)
        total: np.ndarray | None = None
        origins = [(row, y, col, x) for row, y in enumerate(ys) for col, x in enumerate(xs)]
        crops = (np.ascontiguousarray(batch[..., y:y + tile_h, x:x + tile_w]) for _, y, _, x in origins)
        for (row, y, col, x), output in zip(origins, self.run_tiles(crops), strict=True):
            out = to_numpy(output)
            expected = (batch.shape[0], tile_h * s, tile_w * s)
            if (out.shape[0], *out.shape[2:]) != expected:
                raise UserError(f"{self.runner.name} turned a {tile_h}x{tile_w} tile into {out.shape}, "
                                f"not {s}x larger as tiling was told (scale {s}): pass the model's "
                                f"scale (the ONNX 'scale' metadata).")
            if total is None:
                total = np.zeros((batch.shape[0], out.shape[1], height, width), np.float32)
            window = wy[row][:, None] * wx[col][None, :]
            region = (slice(y * s, (y + tile_h) * s), slice(x * s, (x + tile_w) * s))
            total[(..., *region)] += out * window
            weight_sum[region] += window
        total /= weight_sum
        return total

    def run_tiles(self, crops: Iterator[np.ndarray]) -> Iterator[Any]:
        """Each crop's output, in order; one at a time here (a remote runner keeps several in flight)."""
        return map(self.runner.run, crops)

    def close(self) -> None:
        super().close()
        self.runner.close()


def seam_psnr(runner: Runner, image: np.ndarray, tile: int, overlaps: Sequence[int] = (DEFAULT_OVERLAP,),
              scale: int = 1) -> dict[int, float]:
    """PSNR (dB) of the tiled against the untiled output of `runner` on one HxWx3 image, per overlap.

    Both outputs are clamped to [0, 1], as delivered images are: this measures what tiling
    costs a user, seams and the loss of global context (attention pooling) together. The
    untiled output is computed once for all overlaps (at 4K it is the expensive part).
    """
    batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32)

    def delivered(output: np.ndarray) -> np.ndarray:
        return np.clip(output[0].transpose(1, 2, 0), 0.0, 1.0)

    untiled = delivered(to_numpy(runner.run(batch)))
    # The wrappers are left open: closing one would close `runner`, which the caller owns.
    return {overlap: psnr(delivered(TiledRunner(runner, tile=tile, overlap=overlap, scale=scale).run(batch)),
                          untiled)
            for overlap in overlaps}
