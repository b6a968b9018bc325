"""Seeded synthetic degradations: how training pairs and demo inputs are made from clean images.

Every degradation is a frozen dataclass with
  * `apply(clean, rng) -> degraded`: float32 HxWx3 in [0, 1] in, HxWxC out (C = `channels_of`:
    3, or 6 for the dual-pixel views); all randomness comes from `rng`, so the same seed gives
    the same image;
  * `describe() -> dict`: its kind and parameters, JSON-ready, for manifests.

Noise levels are in [0, 1] units (the pixel range the model sees): the usual
"sigma 25" of the denoising literature is `sigma=25/255`. Outputs are clipped to
[0, 1], as a degraded photograph saved to a file would be, so noise statistics are
biased near black and white. Nothing is quantised to 8 bits.

Blur degradations (`MotionBlur`, `DefocusBlur`) draw their kernel FIRST from `rng`
(`kernel(rng)`), then the noise: `oracle_facts` replays that first draw so an
evaluation can hand the true kernel to a non-blind deconvolution baseline, and adds the
distribution's `mean_kernel`, all that a blind baseline may know.

`make_degradation(task, **options)` gives each task's default: denoise = Gaussian
noise sigma 25/255, enhance = low light, sr = x4 bicubic down and back up,
deblur = random motion blur, derain = rain streaks, defocus = dual-pixel defocus (6 channels).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from mirnet_deploy.errors import UserError

from .images import check_rgb


class Degradation(Protocol):
    kind: ClassVar[str]

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this for `apply` to keep the size (the SR scale)."""
        ...

    @property
    def reach(self) -> int:
        """How far (pixels) from an output pixel `apply` reads the clean image: a blur kernel's
        half-width, 0 for per-pixel degradations. A training patch is degraded with this much
        real scene around it and then cropped, so no patch pixel sees a reflected border."""
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
    reach: ClassVar[int] = 0
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
    reach: ClassVar[int] = 0
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
    reach: ClassVar[int] = 0
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
    import torch  # here: the other degradations, and whoever only reads images, need no PyTorch
    import torch.nn.functional as F

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
    reach: ClassVar[int] = 0  # the crop is the whole image the resize sees, as for a photograph
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


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each channel of HxWxC `image` convolved with the odd-sized 2-D `kernel`, borders
    reflected (the scene goes on past the frame), output the input's size."""
    from scipy.signal import fftconvolve  # here: scipy.signal costs every process that degrades ~1 CPU-s

    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(image, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


def splat(points: np.ndarray, size: int) -> np.ndarray:
    """A size x size kernel of unit sum from (x, y) points around the centre, each point spread
    bilinearly over its 4 neighbouring pixels (sub-pixel paths stay smooth)."""
    shifted = points + size // 2
    base = np.floor(shifted).astype(int)
    frac = shifted - base
    kernel = np.zeros((size, size))
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
        x, y = np.clip(base[:, 0] + dx, 0, size - 1), np.clip(base[:, 1] + dy, 0, size - 1)
        np.add.at(kernel, (y, x), weight)
    return kernel / kernel.sum()


def _blur_and_noise(clean: np.ndarray, kernel: np.ndarray, noise_sigma: float,
                    rng: np.random.Generator) -> np.ndarray:
    check_rgb(clean, "The image to degrade")
    return _finish(convolve(clean, kernel) + rng.normal(0.0, noise_sigma, clean.shape))


def _check_range(name: str, bounds: tuple[float, float], lowest: float, highest: float = np.inf) -> None:
    """A (min, max) option: lowest <= min <= max <= highest, or a UserError naming it."""
    low, high = bounds
    _require(lowest <= low <= high <= highest,
             f"The {name} range needs {lowest} <= min <= max <= {highest}, got {tuple(bounds)}.")


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


#: Points sampled along a camera-shake trajectory (enough for sub-pixel smooth kernels).
_TRAJECTORY_POINTS = 96


@dataclass(frozen=True)
class MotionBlur:
    """Camera shake: a random smooth trajectory, `length` pixels long (uniform in the range),
    random start direction, its heading drifting by a Gaussian random walk of `curvature`
    radians per step, splatted into a `size` x `size` kernel of unit sum, convolved with the
    image, plus Gaussian `noise_sigma` (what a sensor adds)."""

    kind: ClassVar[str] = "motion-blur"
    size_multiple: ClassVar[int] = 1
    size: int = 17
    length: tuple[float, float] = (5.0, 13.0)
    curvature: float = 0.08
    noise_sigma: float = 0.01

    def __post_init__(self) -> None:
        _require(self.size % 2 == 1 and self.size >= 3, f"Kernel size must be odd and >= 3, got {self.size}.")
        _check_range("motion length (pixels, at most size - 3)", self.length, 1, self.size - 3)
        _require(self.curvature >= 0 and self.noise_sigma >= 0,
                 f"curvature and noise_sigma must be >= 0, got {self.curvature} and {self.noise_sigma}.")

    @property
    def reach(self) -> int:
        return self.size // 2

    def kernel(self, rng: np.random.Generator) -> np.ndarray:
        """The blur kernel, float64 size x size, unit sum, centred on its centroid."""
        length = _uniform(rng, self.length)
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, self.curvature, _TRAJECTORY_POINTS))
        steps = np.stack([np.cos(heading), np.sin(heading)], axis=1) * (length / _TRAJECTORY_POINTS)
        path = np.cumsum(steps, axis=0)
        return splat(path - path.mean(axis=0), self.size)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _blur_and_noise(clean, self.kernel(rng), self.noise_sigma, rng)

    def describe(self) -> dict[str, Any]:
        return _describe(self)


#: Sub-pixel samples per kernel pixel side when rasterising a defocus disk (an even count, so no
#: sample lies on the vertical diameter and the two halves of `disk_halves` partition the disk).
_DISK_SUPERSAMPLING = 8


def disk_halves(radius: float) -> np.ndarray:
    """The anti-aliased uniform disk of `radius` pixels split along its vertical diameter:
    float64 2 x (2 ceil(r) + 1)^2, [left half, right half], both centred on the disk's centre,
    mirror images of each other, together of unit sum (the whole disk)."""
    half = int(np.ceil(radius))
    step = 1 / _DISK_SUPERSAMPLING
    offsets = np.arange(-half - 0.5 + step / 2, half + 0.5, step)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    size = 2 * half + 1
    halves = np.stack([inside & (offsets[None, :] < 0), inside & (offsets[None, :] > 0)]).astype(np.float64)
    kernels = halves.reshape(2, size, _DISK_SUPERSAMPLING, size, _DISK_SUPERSAMPLING).sum(axis=(2, 4))
    return kernels / kernels.sum()


@dataclass(frozen=True)
class DefocusBlur:
    """Out-of-focus blur: a uniform disk (the lens aperture) of `radius` pixels (uniform in
    the range), anti-aliased, unit sum, plus Gaussian `noise_sigma`."""

    kind: ClassVar[str] = "defocus-blur"
    size_multiple: ClassVar[int] = 1
    radius: tuple[float, float] = (1.5, 5.0)
    noise_sigma: float = 0.01

    def __post_init__(self) -> None:
        _check_range("defocus radius (pixels)", self.radius, 0.5)
        _require(self.noise_sigma >= 0, f"noise_sigma must be >= 0, got {self.noise_sigma}.")

    @property
    def reach(self) -> int:
        return int(np.ceil(self.radius[1]))

    def kernel(self, rng: np.random.Generator) -> np.ndarray:
        """The disk kernel, float64 (2 ceil(r) + 1)^2, unit sum."""
        return disk_halves(_uniform(rng, self.radius)).sum(axis=0)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _blur_and_noise(clean, self.kernel(rng), self.noise_sigma, rng)

    def describe(self) -> dict[str, Any]:
        return _describe(self)


@dataclass(frozen=True)
class DualPixelDefocus(DefocusBlur):
    """Defocus seen by a dual-pixel sensor: the model input is the left and the right view stacked,
    HxWx6 (MIRNet-v2's defocus model, trained on Abuolaim & Brown's DPDD, ECCV 2020, takes them so).

    Each pixel's two photodiodes see the two halves of the lens aperture, so an out-of-focus point
    images as two half-disks, mirror images of each other, whose sum is the ordinary defocus disk
    (Punnappurath, Abuolaim, Afifi & Brown, "Modeling defocus-disparity in dual-pixel sensors",
    ICCP 2020; Abuolaim et al., "Learning to reduce defocus blur by realistically modeling
    dual-pixel data", ICCV 2021). Which view gets which half depends on the side of the focal
    plane the scene lies on: drawn per image (`front_probability`). The radius is drawn uniformly
    from `radius` (one depth per image: a planar scene, a simplification of DPDD's spatially
    varying blur); the halves are `disk_halves`, anti-aliased. Each view is rendered at the
    photograph's exposure (its half-disk scaled to unit sum, as DPDD's views are processed
    images of the full brightness), so the mean of the two views is exactly `DefocusBlur` of
    the same radius; each view gets its own Gaussian `noise_sigma`.

    `kernel(rng)` (`DefocusBlur`'s) is the whole disk (the blur of the views' mean, what an oracle
    deconvolution is given); `view_kernels(rng)` the two halves, each of unit sum. Both draw the
    radius first.
    """

    kind: ClassVar[str] = "dual-pixel-defocus"
    channels: ClassVar[int] = 6
    front_probability: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.front_probability <= 1,
                 f"front_probability must be in [0, 1], got {self.front_probability}.")

    def view_kernels(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(left view's PSF, right view's PSF), each a half-disk of unit sum, mirror images."""
        left, right = disk_halves(_uniform(rng, self.radius)) * 2
        in_front = rng.random() < self.front_probability  # nearer than the focal plane: the halves swap
        return (right, left) if in_front else (left, right)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        views = [convolve(clean, kernel) for kernel in self.view_kernels(rng)]
        stacked = np.concatenate(views, axis=2)
        return _finish(stacked + rng.normal(0.0, self.noise_sigma, stacked.shape))

    def picture(self, degraded: np.ndarray) -> np.ndarray:
        """The ordinary photograph the two views make together (their mean): what a camera without
        dual pixels records, and what an RGB baseline restores."""
        return (degraded[:, :, :3] + degraded[:, :, 3:]) / np.float32(2)

    def describe(self) -> dict[str, Any]:
        return {**_describe(self), "channels": self.channels, "layout": "left RGB, right RGB"}


@dataclass(frozen=True)
class RainStreaks:
    """Synthetic rain in the manner of Rain100L/H: sparse random drops (a `density` fraction of
    pixels, each of random brightness) smeared into straight streaks of one `length` (pixels)
    and one angle (within `angle_max` degrees of vertical) per image, softened by a Gaussian
    of `width` pixels and screen-blended over the image with peak opacity `opacity`. Ranges
    are drawn uniformly per image."""

    kind: ClassVar[str] = "rain-streaks"
    size_multiple: ClassVar[int] = 1
    density: tuple[float, float] = (0.002, 0.008)
    length: tuple[float, float] = (8.0, 24.0)
    angle_max: float = 25.0
    width: float = 0.6
    opacity: float = 0.8

    def __post_init__(self) -> None:
        _check_range("rain density", self.density, 1e-6, 1)
        _check_range("streak length (pixels)", self.length, 1)
        _require(0 <= self.angle_max < 90, f"angle_max must be in [0, 90) degrees, got {self.angle_max}.")
        _require(self.width >= 0, f"Streak width must be >= 0, got {self.width}.")
        _require(0 < self.opacity <= 1, f"Rain opacity must be in (0, 1], got {self.opacity}.")

    @property
    def reach(self) -> int:
        """Half the longest streak kernel plus the softening Gaussian's 4-sigma truncation."""
        return int(np.ceil(self.length[1] / 2)) + 1 + int(np.ceil(4 * self.width))

    def streaks(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """The rain layer, HxW in [0, 1]."""
        density = _uniform(rng, self.density)
        drops = (rng.random(shape) < density) * rng.uniform(0.5, 1.0, shape)
        length = _uniform(rng, self.length)
        angle = np.deg2rad(90 + rng.uniform(-self.angle_max, self.angle_max))
        along = np.linspace(-length / 2, length / 2, max(int(4 * length), 2))
        line = splat(np.stack([along * np.cos(angle), along * np.sin(angle)], axis=1),
                     2 * int(np.ceil(length / 2)) + 3)
        # A line kernel of unit sum spreads each drop thinly: scale so a streak keeps its drop's value.
        layer = convolve(drops[:, :, None], line * length)[:, :, 0]
        from scipy.ndimage import gaussian_filter

        return np.clip(gaussian_filter(layer, self.width) if self.width else layer, 0.0, 1.0)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_rgb(clean, "The image to degrade")
        rain = self.opacity * self.streaks(clean.shape[:2], rng)[:, :, None]
        return _finish(1 - (1 - np.clip(clean, 0.0, 1.0)) * (1 - rain))

    def describe(self) -> dict[str, Any]:
        return _describe(self)


def degrade_pair(
    degradation: Degradation, clean: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, target): the target is the clean image cropped to the degraded one's size."""
    degraded = degradation.apply(clean, rng)
    return degraded, np.ascontiguousarray(clean[: degraded.shape[0], : degraded.shape[1]])


# Degradations by kind, and which kinds suit which task (the first is the task's default).
DEGRADATIONS: dict[str, type] = {
    cls.kind: cls
    for cls in (GaussianNoise, PoissonGaussianNoise, LowLight, BicubicSR, MotionBlur, DefocusBlur,
                RainStreaks, DualPixelDefocus)
}
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "denoise": ("gaussian", "poisson-gaussian"),
    "enhance": ("low-light",),
    "sr": ("bicubic-sr",),
    "deblur": ("motion-blur", "defocus-blur"),
    "derain": ("rain-streaks",),
    "defocus": ("dual-pixel-defocus",),
}


def channels_of(degradation: Degradation) -> int:
    """Channels of the degraded image, the model's input: 3 (RGB) unless the degradation says more."""
    return getattr(degradation, "channels", 3)


def picture_of(degradation: Degradation, degraded: np.ndarray) -> np.ndarray:
    """The RGB photograph a degraded input shows (the input itself, or the mean of dual-pixel views):
    what an evaluation scores as "input" and what RGB baselines restore."""
    picture = getattr(degradation, "picture", None)
    return degraded if picture is None else picture(degraded)


#: Draws averaged into a blur distribution's mean kernel, from a fixed seed. Against 16,384 draws
#: the default motion and defocus means differ by 1-3 % of their peak, and the blind Wiener
#: baseline on the held-out photographs by at most 0.004 dB.
_MEAN_KERNEL_DRAWS, _MEAN_KERNEL_SEED = 1024, 0


@functools.lru_cache(maxsize=16)
def mean_kernel(degradation: Degradation) -> np.ndarray:
    """The expected blur kernel of a blur degradation (the mean of a fixed seeded sample of
    `kernel(rng)` draws, centred, unit sum): what a blind method may know, the kind of blur every
    image gets but not this image's draw (a trained network knows as much)."""
    rng = np.random.default_rng(_MEAN_KERNEL_SEED)
    kernels = [degradation.kernel(rng) for _ in range(_MEAN_KERNEL_DRAWS)]
    size = max(kernel.shape[0] for kernel in kernels)  # odd squares; defocus disks vary in size
    total = sum(np.pad(kernel, (size - kernel.shape[0]) // 2) for kernel in kernels)
    mean = total / total.sum()
    mean.setflags(write=False)  # one array per distribution, shared by every caller
    return mean


def oracle_facts(degradation: Degradation, rng: np.random.Generator) -> dict[str, Any]:
    """What a baseline may know about the degradation `rng` will draw: for blur degradations (they
    draw their kernel first) the true kernel, for non-blind (oracle) baselines, and the
    distribution's `mean_kernel`, for blind ones; nothing otherwise. Pass a generator in the same
    state as the one given to `apply`."""
    kernel = getattr(degradation, "kernel", None)
    return {"kernel": kernel(rng), "mean_kernel": mean_kernel(degradation)} if kernel is not None else {}


def make_degradation(task: str, kind: str | None = None, **options: Any) -> Degradation:
    """The degradation for `task` (a key of TASK_KINDS): its default kind unless `kind` is
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
