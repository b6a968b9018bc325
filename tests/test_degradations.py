"""Degradations are seeded, have the documented statistics, and the classical baselines undo
part of them (the README comparison rests on both)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mirnet_deploy.errors import ImageError, UserError
from mirnet_ref.baselines import BASELINES, bicubic, clahe, gamma_correct, nl_means
from mirnet_ref.datasets import builtin_images
from mirnet_ref.degradations import (
    BicubicSR,
    GaussianNoise,
    LowLight,
    PoissonGaussianNoise,
    bicubic_resize,
    degrade_pair,
    make_degradation,
    oracle_facts,
    picture_of,
)
from mirnet_ref.metrics import psnr


def flat(value: float, size: int = 512) -> np.ndarray:
    return np.full((size, size, 3), value, np.float32)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 128x128 crop of a built-in photograph: real texture, fast to process."""
    return dict(builtin_images("heldout"))["chelsea"][100:228, 150:278]


def test_task_defaults() -> None:
    assert make_degradation("denoise") == GaussianNoise(sigma=25 / 255)
    assert make_degradation("enhance") == LowLight()
    assert make_degradation("sr") == BicubicSR(scale=4)
    assert make_degradation("sr", scale=3).scale == 3
    assert make_degradation("denoise", "poisson-gaussian", peak=50) == PoissonGaussianNoise(peak=50)


@pytest.mark.parametrize(
    ("task", "kind", "options", "match"),
    [
        ("dehaze", None, {}, "Unknown task"),
        ("sr", "gaussian", {}, "does not fit"),
        ("denoise", None, {"sigma_typo": 1}, "sigma_typo"),
        ("denoise", None, {"sigma": -1}, ">= 0"),
        ("denoise", None, {"sigma": 0.2, "sigma_max": 0.1}, "sigma_max"),
        ("enhance", None, {"exposure_min": 0}, "exposure"),
        ("sr", None, {"scale": 8}, "2, 3 or 4"),
    ],
)
def test_bad_options_are_user_errors(
    task: str, kind: str | None, options: dict, match: str
) -> None:
    with pytest.raises(UserError, match=match):
        make_degradation(task, kind, **options)


@pytest.mark.parametrize("task", ["denoise", "enhance", "sr"])
def test_seeded_reproducible_and_in_range(task: str, photo: np.ndarray) -> None:
    degradation = make_degradation(task)
    first = degradation.apply(photo, np.random.default_rng(3))
    again = degradation.apply(photo, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32
    assert first.shape == photo.shape  # 128 is a multiple of every SR scale
    assert first.min() >= 0.0
    assert first.max() <= 1.0
    assert psnr(first, photo) < 35  # actually degraded
    json.dumps(degradation.describe())  # manifests need plain JSON values
    assert degradation.describe()["kind"] == degradation.kind


@pytest.mark.parametrize("task", ["denoise", "enhance"])
def test_different_seeds_give_different_noise(task: str, photo: np.ndarray) -> None:
    degradation = make_degradation(task)
    a = degradation.apply(photo, np.random.default_rng(1))
    b = degradation.apply(photo, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_gaussian_noise_has_the_stated_sigma() -> None:
    sigma = 25 / 255
    noise = GaussianNoise(sigma).apply(flat(0.5), np.random.default_rng(0)) - 0.5
    assert abs(noise.std() / sigma - 1) < 0.02
    assert abs(noise.mean()) < 1e-3
    assert GaussianNoise(sigma).describe()["sigma_255"] == pytest.approx(25.0)


def test_gaussian_sigma_range_draws_a_level_per_call() -> None:
    noise = GaussianNoise(sigma=5 / 255, sigma_max=50 / 255)
    rng = np.random.default_rng(0)
    stds = [float((noise.apply(flat(0.5, 128), rng) - 0.5).std()) for _ in range(12)]
    assert all(4.5 / 255 < s < 50.5 / 255 for s in stds)
    assert max(stds) - min(stds) > 15 / 255


def test_poisson_gaussian_variance_grows_with_brightness() -> None:
    noise = PoissonGaussianNoise(peak=100.0, read_sigma=2 / 255)
    rng = np.random.default_rng(0)
    for level in (0.2, 0.7):
        variance = (noise.apply(flat(level), rng) - level).var()
        expected = level / 100.0 + (2 / 255) ** 2
        assert variance == pytest.approx(expected, rel=0.03)


def test_low_light_is_darker_by_the_documented_model() -> None:
    low = LowLight(exposure_min=0.2, exposure_max=0.2, gamma=2.0, read_sigma=0.01)
    dark = low.apply(flat(0.6), np.random.default_rng(0))
    assert dark.mean() == pytest.approx(0.2 * 0.6**2, rel=0.01)  # exposure * clean**gamma
    assert dark.std() == pytest.approx(0.01, rel=0.05)


def test_default_low_light_resembles_lol_inputs(photo: np.ndarray) -> None:
    dark = make_degradation("enhance").apply(photo, np.random.default_rng(0))
    assert dark.mean() < 0.25 * photo.mean()
    assert 0.005 < dark.mean() < 0.15


def test_sr_keeps_the_size_and_removes_detail(photo: np.ndarray) -> None:
    degraded = BicubicSR(scale=4).apply(photo, np.random.default_rng(0))
    assert degraded.shape == photo.shape
    assert not np.allclose(degraded, photo)
    # Low frequencies survive, fine detail does not: the x4 input is closer to a blurred photo.
    assert psnr(degraded, photo) > 20
    assert np.abs(np.diff(degraded, axis=1)).mean() < 0.7 * np.abs(np.diff(photo, axis=1)).mean()


def test_sr_crops_to_a_multiple_of_the_scale_and_pair_matches(photo: np.ndarray) -> None:
    clean = photo[:50, :47]
    degraded, target = degrade_pair(BicubicSR(scale=4), clean, np.random.default_rng(0))
    assert degraded.shape == target.shape == (48, 44, 3)
    np.testing.assert_array_equal(target, clean[:48, :44])
    # Bicubic resampling draws nothing from the generator: any seed gives the same input.
    x3 = BicubicSR(scale=3)
    np.testing.assert_array_equal(
        x3.apply(clean, np.random.default_rng(0)), x3.apply(clean, np.random.default_rng(9))
    )


def test_bicubic_downscale_is_antialiased() -> None:
    # A one-pixel checkerboard has no content below Nyquist: an antialiased x2 reduction gives
    # flat grey, while plain (non-antialiased) bicubic sampling would keep a full-contrast pattern.
    board = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)
    small = bicubic_resize(np.dstack([board] * 3), 16, 16)
    assert np.abs(small[2:-2, 2:-2] - 0.5).max() < 0.05


def test_degradations_reject_non_rgb_input() -> None:
    with pytest.raises(ImageError, match="HxWx3"):
        GaussianNoise().apply(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def test_baselines_improve_on_their_degraded_input(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noisy = GaussianNoise(25 / 255).apply(photo, rng)
    assert psnr(nl_means(noisy, sigma=25 / 255), photo) > psnr(noisy, photo) + 3

    dark = LowLight().apply(photo, rng)
    assert psnr(gamma_correct(dark), photo) > psnr(dark, photo) + 3
    assert psnr(clahe(dark), photo) > psnr(dark, photo)
    oracle = gamma_correct(dark, target_mean=float(photo.mean()))
    assert oracle.mean() == pytest.approx(photo.mean(), rel=0.02)

    upsampled = BicubicSR(4).apply(photo, rng)
    np.testing.assert_array_equal(bicubic(upsampled), upsampled)


def test_gamma_handles_unreachable_targets() -> None:
    mostly_black = np.zeros((16, 16, 3), np.float32)
    mostly_black[:4] = 0.01
    brightened = gamma_correct(mostly_black)  # 75% black pixels cannot reach mid-grey
    assert brightened.max() > 0.9
    assert brightened.min() == 0.0
    np.testing.assert_array_equal(gamma_correct(np.zeros((4, 4, 3), np.float32)), 0.0)
    with pytest.raises(UserError, match="target_mean"):
        gamma_correct(mostly_black, target_mean=1.5)


def test_every_baseline_is_callable_alike(photo: np.ndarray) -> None:
    for task, baselines in BASELINES.items():
        degradation = make_degradation(task)
        # The photograph the input shows (dual-pixel views: their mean), as `mirnet eval` feeds it.
        degraded = picture_of(degradation, degradation.apply(photo[:32, :32], np.random.default_rng(0)))
        known = oracle_facts(degradation, np.random.default_rng(0))  # the blur kernel for deblur
        for fn in baselines.values():
            restored = fn(degraded, sigma=25 / 255, unused_key="ignored", **known)
            assert restored.shape == degraded.shape == (32, 32, 3)
            assert restored.dtype == np.float32


def test_oracle_nl_means_is_the_same_on_one_core_and_on_several(photo: np.ndarray, monkeypatch) -> None:
    """`mirnet eval`'s NL-means oracle runs its h factors side by side: the same pixels as one by one."""
    noisy = GaussianNoise(25 / 255).apply(photo, np.random.default_rng(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    one_core = nl_means(noisy, sigma=25 / 255, clean=photo)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    four_cores = nl_means(noisy, sigma=25 / 255, clean=photo)
    assert one_core.dtype == np.float32
    assert np.array_equal(one_core, four_cores)
    assert psnr(one_core, photo) >= psnr(nl_means(noisy, sigma=25 / 255), photo)  # the oracle beats h = 0.8
