"""PSNR/SSIM agree with scikit-image and with the MATLAB Y-channel convention computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mirnet_deploy.errors import ImageError
from mirnet_ref.datasets import builtin_images
from mirnet_ref.metrics import psnr, rgb_to_y, ssim


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1 if a.ndim == 3 else None,
    )


def noisy_pair(shape: tuple[int, ...], seed: int, sigma: float = 0.1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    clean = rng.random(shape)
    return np.clip(clean + rng.normal(0, sigma, shape), 0, 1), clean


@pytest.mark.parametrize("shape", [(11, 11, 3), (37, 52, 3), (64, 64, 3), (48, 33)])
def test_random_images_match_skimage(shape: tuple[int, ...]) -> None:
    restored, reference = noisy_pair(shape, seed=sum(shape))
    assert psnr(restored, reference) == pytest.approx(
        peak_signal_noise_ratio(reference, restored, data_range=1.0), abs=1e-4
    )
    assert ssim(restored, reference) == pytest.approx(skimage_ssim(restored, reference), abs=1e-4)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return dict(builtin_images("heldout"))["chelsea"]


@pytest.mark.parametrize("sigma", [5 / 255, 25 / 255, 50 / 255])
def test_real_image_matches_skimage(chelsea: np.ndarray, sigma: float) -> None:
    rng = np.random.default_rng(7)
    noisy = np.clip(chelsea + rng.normal(0, sigma, chelsea.shape), 0, 1).astype(np.float32)
    assert psnr(noisy, chelsea) == pytest.approx(
        peak_signal_noise_ratio(chelsea, noisy, data_range=1.0), abs=1e-4
    )
    assert ssim(noisy, chelsea) == pytest.approx(skimage_ssim(noisy, chelsea), abs=1e-4)


def test_real_image_structure_change_matches_skimage(chelsea: np.ndarray) -> None:
    shifted = np.roll(chelsea, 1, axis=1) * 0.9 + 0.05  # misaligned and contrast-changed
    assert ssim(shifted, chelsea) == pytest.approx(skimage_ssim(shifted, chelsea), abs=1e-4)
    assert 0.3 < ssim(shifted, chelsea) < 0.95


def test_y_channel_psnr_matches_hand_computed_matlab_value() -> None:
    restored = np.array(
        [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]]
    )
    reference = np.zeros((2, 2, 3))
    # MATLAB rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B (0..255 scale); the black
    # reference has Y = 16 everywhere, so the differences are the weighted sums alone.
    differences = [65.481, 128.553, 24.966, 0.5 * (65.481 + 128.553 + 24.966)]
    mse = sum((d / 255) ** 2 for d in differences) / 4
    assert psnr(restored, reference, y_channel=True) == pytest.approx(
        10 * math.log10(1 / mse), abs=1e-9
    )
    assert rgb_to_y(reference)[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255)


def test_y_channel_ssim_matches_skimage_on_independently_computed_luma() -> None:
    restored, reference = noisy_pair((40, 45, 3), seed=3)

    def luma(rgb: np.ndarray) -> np.ndarray:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        return (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255

    expected = skimage_ssim(luma(restored)[4:-4, 4:-4], luma(reference)[4:-4, 4:-4])
    assert ssim(restored, reference, y_channel=True, crop_border=4) == pytest.approx(
        expected, abs=1e-4
    )


def test_crop_border_removes_that_many_pixels_from_each_side() -> None:
    reference = np.full((20, 24, 3), 0.5)
    restored = reference.copy()
    restored[:2] = restored[-2:] = restored[:, :2] = restored[:, -2:] = 0.0
    assert psnr(restored, reference, crop_border=2) == math.inf
    assert psnr(restored, reference, crop_border=1) < 20
    inner = psnr(restored[3:-3, 3:-3] + 0.01, reference[3:-3, 3:-3])
    assert psnr(restored + 0.01, reference + 0.0, crop_border=3) == pytest.approx(inner)


def test_identical_images_score_perfectly() -> None:
    image = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)


def test_known_psnr_value() -> None:
    reference = np.zeros((8, 8, 3))
    assert psnr(reference + 0.1, reference) == pytest.approx(20.0)  # MSE 0.01


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        (np.zeros((16, 16, 3)), np.zeros((16, 17, 3)), {}, "same size"),
        (np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), {"crop_border": 8}, "crop_border"),
        (np.zeros((10, 16, 3)), np.zeros((10, 16, 3)), {}, "at least 11x11"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {"y_channel": True}, "RGB"),
    ],
)
def test_bad_inputs_raise_image_error(
    a: np.ndarray, b: np.ndarray, kwargs: dict, match: str
) -> None:
    with pytest.raises(ImageError, match=match):
        ssim(a, b, **kwargs)
