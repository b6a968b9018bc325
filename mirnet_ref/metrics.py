"""PSNR and SSIM as image-restoration papers report them.

Both take float images in [0, 1] (data range 1), HxWx3 RGB or HxW single-channel, and
score them as they are: clamp model outputs first, as the authors' test scripts do.

* PSNR = 10 log10(1 / MSE) over all pixels and channels; identical images give +inf.
* SSIM follows Wang et al. (2004) as BasicSR and scikit-image implement it: an 11x11
  Gaussian window with sigma 1.5 (scikit-image's truncate=3.5 radius, normalised to
  sum 1), K1 = 0.01, K2 = 0.03, population (not sample) covariances, the SSIM map
  computed only where the window fits inside the image ('valid' filtering, which is
  what scikit-image's reflect-padded map cropped by 5 pixels amounts to), averaged; for
  RGB, per channel and then averaged over the channels. It therefore equals
  `skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`.
* `y_channel=True` scores the luma of MATLAB's `rgb2ycbcr` (BasicSR's `test_y_channel`),
  the super-resolution convention: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255
  for R, G, B in [0, 1]. Y is not rounded to 8-bit codes, as in BasicSR (MATLAB rounds
  it when given uint8 input, so its numbers can differ in the last digits).
* `crop_border=n` removes n pixels from every side before scoring (BasicSR's
  convention; SR papers use n = scale).

Everything is computed in float64; the Gaussian filtering uses OpenCV (as BasicSR does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import cv2
import numpy as np

from mirnet_deploy.errors import ImageError

_SSIM_SIGMA = 1.5
_SSIM_RADIUS = int(3.5 * _SSIM_SIGMA + 0.5)  # 5: an 11x11 window, as scikit-image and BasicSR
_SSIM_C1 = 0.01**2  # (K1 * data_range)^2 with data_range 1
_SSIM_C2 = 0.03**2
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1)
    weights = np.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    return weights / weights.sum()


_WINDOW_1D = _gaussian_window()


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma of MATLAB's rgb2ycbcr for RGB in [0, 1], returned in [16/255, 235/255] as float64."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(
            f"The Y channel needs an HxWx3 RGB image, got shape {rgb.shape}. Pass RGB images, or "
            "y_channel=False for single-channel ones."
        )
    return (16.0 + rgb.astype(np.float64) @ _Y_WEIGHTS) / 255.0


def _prepare(
    restored: np.ndarray, reference: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Check the pair, crop the border, convert to Y if asked: the part PSNR and SSIM share."""
    if restored.shape != reference.shape:
        raise ImageError(
            f"Cannot compare images of shapes {restored.shape} and {reference.shape}: the "
            "restored image and its reference must have the same size and channels. Crop the "
            "reference to the output (e.g. a multiple of the scale for SR)."
        )
    if restored.ndim not in (2, 3):
        raise ImageError(f"Expected HxW or HxWx3 images, got shape {restored.shape}.")
    if crop_border < 0 or 2 * crop_border >= min(restored.shape[:2]):
        raise ImageError(
            f"crop_border={crop_border} leaves nothing of a {restored.shape[0]}x"
            f"{restored.shape[1]} image; use a border smaller than half the shorter side."
        )
    if crop_border:
        inner = slice(crop_border, -crop_border)
        restored, reference = restored[inner, inner], reference[inner, inner]
    if y_channel:
        return rgb_to_y(restored), rgb_to_y(reference)
    return restored.astype(np.float64), reference.astype(np.float64)


def psnr(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """Peak signal-to-noise ratio in dB for data range 1; +inf when the images are identical."""
    restored, reference = _prepare(restored, reference, crop_border, y_channel)
    mse = np.mean((restored - reference) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def _filter_valid(image: np.ndarray) -> np.ndarray:
    """Weighted local means over every full 11x11 window (separable Gaussian, 'valid' mode):
    OpenCV filters the whole image fast, then the band that saw the border padding is cut."""
    r = _SSIM_RADIUS
    filtered = cv2.sepFilter2D(image, cv2.CV_64F, _WINDOW_1D, _WINDOW_1D)
    return filtered[r:-r, r:-r]


def ssim(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """Mean structural similarity (Wang et al. 2004; see the module docstring for the details)."""
    x, y = _prepare(restored, reference, crop_border, y_channel)
    if min(x.shape[:2]) < _WINDOW_1D.size:
        raise ImageError(
            f"SSIM needs images of at least {_WINDOW_1D.size}x{_WINDOW_1D.size} pixels after the "
            f"border crop, got {x.shape[0]}x{x.shape[1]}. Use a larger image or a smaller "
            "crop_border."
        )
    mu_x, mu_y = _filter_valid(x), _filter_valid(y)
    var_x = _filter_valid(x * x) - mu_x**2
    var_y = _filter_valid(y * y) - mu_y**2
    cov_xy = _filter_valid(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov_xy + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    # Equal-sized channel maps: the mean over everything is the mean of the per-channel means.
    return float(ssim_map.mean())


@contextlib.contextmanager
def naming_image(name: str) -> Iterator[None]:
    """Prefix the image's name to a metric's refusal (an image too small for SSIM): the metrics see arrays."""
    try:
        yield
    except ImageError as error:
        raise ImageError(f"Image {name}: {error}") from None
