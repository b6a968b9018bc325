"""Seeded synthetic degradations: how training pairs and demo inputs are made from clean images.

Every degradation is a frozen dataclass with
  * `apply(clean, rng) -> degraded`: float32 HxWx3 in [0, 1] in and out; all randomness
    comes from `rng`, so the same seed gives the same image;
  * `describe() -> dict`: its kind and parameters, JSON-ready, for manifests.

Noise levels are in [0, 1] units (the pixel range the model sees): the usual
"sigma 25" of the denoising literature is `sigma=25/255`. Outputs are clipped to
[0, 1], as a degraded photograph saved to a file would be, so noise statistics are
biased near black and white. Nothing is quantised to 8 bits.

`make_degradation(task, **options)` gives each task's default: denoise = Gaussian
noise sigma 25/255, enhance = low light, sr = x4 bicubic down and back up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mirnet_deploy.errors import UserError

from .images import check_rgb


class Degradation(Protocol):
    kind: ClassVar[str]

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this for `apply` to keep the size (the SR scale)."""
        ...

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def _describe(degradation: Any) -> dict[str, Any]:
    return {"kind": degradation.kind, **dataclasses.asdict(degradation)}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _finish(degraded: np.ndarray) -> np.ndarray:
    return np.clip(degraded, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise, the synthetic-denoising benchmark. `sigma` is the standard
    deviation in [0, 1] units; with `sigma_max` set, each call draws sigma uniformly from
    [sigma, sigma_max] (blind training over a range of levels)."""

    kind: ClassVar[str] = "gaussian"
    size_multiple: ClassVar[int] = 1
    sigma: float = 25 / 255
    sigma_max: float | None = None

    def __post_init__(self) -> None:
        _require(self.sigma >= 0, f"Gaussian noise sigma must be >= 0, got {self.sigma}.")
        _require(
            self.sigma_max is None or self.sigma_max >= self.sigma,
            f"sigma_max ({self.sigma_max}) must be at least sigma ({self.sigma}).",
        )

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        sigma = self.sigma if self.sigma_max is None else rng.uniform(self.sigma, self.sigma_max)
        return _finish(clean + rng.normal(0.0, sigma, clean.shape))

    def describe(self) -> dict[str, Any]:
        return {**_describe(self), "sigma_255": self.sigma * 255}


@dataclass(frozen=True)
class PoissonGaussianNoise:
    """Camera-like noise: photon shot noise (Poisson, `peak` photons at white, so its variance
    grows with brightness as x / peak) plus Gaussian read noise of std `read_sigma`. Applied
    to the pixel values directly, a simplification of a real camera pipeline."""

    kind: ClassVar[str] = "poisson-gaussian"
    size_multiple: ClassVar[int] = 1
    peak: float = 200.0
    read_sigma: float = 2 / 255

    def __post_init__(self) -> None:
        _require(self.peak > 0, f"Poisson peak must be > 0 photons, got {self.peak}.")
        _require(self.read_sigma >= 0, f"read_sigma must be >= 0, got {self.read_sigma}.")

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        shot = rng.poisson(np.clip(clean, 0.0, 1.0) * self.peak) / self.peak
        return _finish(shot + rng.normal(0.0, self.read_sigma, clean.shape))

    def describe(self) -> dict[str, Any]:
        return _describe(self)


@dataclass(frozen=True)
class LowLight:
    """An under-exposed shot of the clean image: out = exposure * clean**gamma + noise.

    gamma > 1 darkens the mid-tones more than the highlights (as sRGB encoding does to a
    smaller photon count), `exposure` (drawn uniformly from [exposure_min, exposure_max]
    per call) scales the whole image, and Gaussian `read_sigma` noise is what a camera
    adds at low signal. On the built-in photographs the defaults give mean brightness of
    about 0.01-0.15, the range of LOL's low-light inputs."""

    kind: ClassVar[str] = "low-light"
    size_multiple: ClassVar[int] = 1
    exposure_min: float = 0.1
    exposure_max: float = 0.4
    gamma: float = 2.0
    read_sigma: float = 0.01

    def __post_init__(self) -> None:
        _require(
            0 < self.exposure_min <= self.exposure_max <= 1,
            "Low-light exposure needs 0 < exposure_min <= exposure_max <= 1, got "
            f"{self.exposure_min} and {self.exposure_max}.",
        )
        _require(self.gamma > 0, f"Low-light gamma must be > 0, got {self.gamma}.")
        _require(self.read_sigma >= 0, f"read_sigma must be >= 0, got {self.read_sigma}.")

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        exposure = rng.uniform(self.exposure_min, self.exposure_max)
        dark = exposure * np.clip(clean, 0.0, 1.0) ** self.gamma
        return _finish(dark + rng.normal(0.0, self.read_sigma, clean.shape))

    def describe(self) -> dict[str, Any]:
        return _describe(self)


def bicubic_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PyTorch bicubic resampling. Reductions are antialiased (the kernel widens with the
    footprint, Keys a = -0.5 as PIL and close to MATLAB imresize) instead of aliasing;
    enlargements use the plain bicubic (a = -0.75), which is exactly the ONNX Resize
    (cubic, cubic_coeff_a = -0.75) that `mirnet export --scale` puts in the graph, so a
    model trained on these inputs sees the same ones when it upsamples in-graph."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))[None]
    reduce = height < image.shape[0] or width < image.shape[1]
    resized = F.interpolate(
        tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=reduce
    )
    return resized[0].numpy().transpose(1, 2, 0)


@dataclass(frozen=True)
class BicubicSR:
    """Super-resolution input as RealSR v1 gives it to MIRNet: the image reduced by `scale` and
    enlarged back to its size, both with `bicubic_resize`. The image is first cropped at the
    bottom/right to a multiple of `scale` (so the output can be smaller than the input by up
    to scale-1 pixels; `degrade_pair` crops the target to match)."""

    kind: ClassVar[str] = "bicubic-sr"
    scale: int = 4

    @property
    def size_multiple(self) -> int:
        return self.scale

    def __post_init__(self) -> None:
        _require(self.scale in (2, 3, 4), f"SR scale must be 2, 3 or 4, got {self.scale}.")

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        height = clean.shape[0] // self.scale * self.scale
        width = clean.shape[1] // self.scale * self.scale
        _require(
            height > 0 and width > 0,
            f"An image of {clean.shape[0]}x{clean.shape[1]} pixels is too small for x{self.scale} "
            "super-resolution.",
        )
        small = bicubic_resize(clean[:height, :width], height // self.scale, width // self.scale)
        return _finish(bicubic_resize(small, height, width))

    def describe(self) -> dict[str, Any]:
        return {**_describe(self), "resize": "torch bicubic, align_corners=False; antialiased down, "
                "plain (a=-0.75) up"}


def degrade_pair(
    degradation: Degradation, clean: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, target): the target is the clean image cropped to the degraded one's size."""
    degraded = degradation.apply(clean, rng)
    return degraded, np.ascontiguousarray(clean[: degraded.shape[0], : degraded.shape[1]])


# Degradations by kind, and which kinds suit which task (the first is the task's default).
DEGRADATIONS: dict[str, type] = {
    cls.kind: cls for cls in (GaussianNoise, PoissonGaussianNoise, LowLight, BicubicSR)
}
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "denoise": ("gaussian", "poisson-gaussian"),
    "enhance": ("low-light",),
    "sr": ("bicubic-sr",),
}


def make_degradation(task: str, kind: str | None = None, **options: Any) -> Degradation:
    """The degradation for `task` (denoise | enhance | sr): its default kind unless `kind` is
    given, with `options` overriding the dataclass defaults, e.g. ('sr', scale=3)."""
    if task not in TASK_KINDS:
        raise UserError(f"Unknown task {task!r}: choose one of {', '.join(TASK_KINDS)}.")
    kind = kind or TASK_KINDS[task][0]
    if kind not in TASK_KINDS[task]:
        raise UserError(
            f"Degradation {kind!r} does not fit task {task!r}: choose one of "
            f"{', '.join(TASK_KINDS[task])}."
        )
    cls = DEGRADATIONS[kind]
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"Unknown option(s) {', '.join(unknown)} for the {kind} degradation; it takes "
            f"{', '.join(sorted(known))}."
        )
    return cls(**options)
