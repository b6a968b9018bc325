"""The dual-pixel defocus degradation (MIRNet-v2's 6-channel `defocus` task): the two views' PSFs
are mirrored half-disks whose mean is the ordinary defocus disk, the views are seeded and noisy as
stated, and the task's calibration set, evaluation input and baselines follow from the registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calibration.dataset import CalibrationSet, build_calibration_set
from mirnet_deploy.errors import UserError
from mirnet_ref.baselines import BASELINES
from mirnet_ref.data_sources import evaluation_pairs
from mirnet_ref.datasets import builtin_images, image_at_resolution, synthesize_pairs
from mirnet_ref.degradations import (
    TASK_KINDS,
    DefocusBlur,
    DualPixelDefocus,
    channels_of,
    convolve,
    disk_halves,
    make_degradation,
    oracle_facts,
    picture_of,
)
from mirnet_ref.metrics import psnr

#: Seeded generators, as every degradation draws from one.
rng = np.random.default_rng


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The held-out motorcycle scene at 112x96: real edges at every angle."""
    return image_at_resolution(dict(builtin_images("heldout"))["motorcycle"], 112, 96)


def horizontal_centroid(kernel: np.ndarray) -> float:
    return float((kernel.sum(axis=0) * (np.arange(kernel.shape[1]) - kernel.shape[1] // 2)).sum())


def test_the_defocus_task_is_a_registry_entry() -> None:
    assert TASK_KINDS["defocus"] == ("dual-pixel-defocus",)
    degradation = make_degradation("defocus")
    assert degradation == DualPixelDefocus()
    assert channels_of(degradation) == 6
    assert channels_of(DefocusBlur()) == 3
    assert degradation.describe()["channels"] == 6


@pytest.mark.parametrize("radius", [0.5, 1.3, 3.0, 4.7])
def test_view_psfs_are_mirrored_half_disks_whose_mean_is_the_defocus_disk(radius: float) -> None:
    left, right = disk_halves(radius)
    np.testing.assert_array_equal(left, right[:, ::-1])  # mirror images
    assert (left + right).sum() == pytest.approx(1.0, abs=1e-12)
    # A half-disk's centroid lies 4r / (3 pi) from the diameter (anti-aliasing pulls it in a little;
    # a disk within the centre pixel has no measurable disparity).
    expected = 4 * radius / (3 * np.pi) if radius > 1 else 0.0
    assert horizontal_centroid(left * 2) == pytest.approx(-expected, abs=0.05)
    assert horizontal_centroid(right * 2) == pytest.approx(expected, abs=0.05)
    fixed = DualPixelDefocus(radius=(radius, radius))
    view_left, view_right = fixed.view_kernels(rng(3))
    assert view_left.sum() == pytest.approx(1.0, abs=1e-12)
    assert view_right.sum() == pytest.approx(1.0, abs=1e-12)
    ordinary = DefocusBlur(radius=(radius, radius)).kernel(rng(3))
    np.testing.assert_allclose((view_left + view_right) / 2, ordinary, atol=1e-15)
    np.testing.assert_allclose(fixed.kernel(rng(3)), ordinary, atol=1e-15)


def test_which_view_sees_which_half_follows_the_side_of_the_focal_plane() -> None:
    behind = DualPixelDefocus(radius=(3, 3), front_probability=0.0).view_kernels(rng(1))
    in_front = DualPixelDefocus(radius=(3, 3), front_probability=1.0).view_kernels(rng(1))
    assert horizontal_centroid(behind[0]) < 0 < horizontal_centroid(behind[1])
    np.testing.assert_array_equal(in_front[0], behind[1])
    np.testing.assert_array_equal(in_front[1], behind[0])
    sides = {horizontal_centroid(DualPixelDefocus().view_kernels(rng(seed))[0]) < 0 for seed in range(20)}
    assert sides == {True, False}  # the default draws both sides


def test_the_views_mean_is_the_ordinary_defocus_blur(photo: np.ndarray) -> None:
    noiseless = DualPixelDefocus(noise_sigma=0.0)
    views = noiseless.apply(photo, rng(4))
    ordinary = DefocusBlur(noise_sigma=0.0).apply(photo, rng(4))  # the same radius: drawn first by both
    np.testing.assert_allclose(picture_of(noiseless, views), ordinary, atol=1e-6)
    left_psf, right_psf = noiseless.view_kernels(rng(4))
    np.testing.assert_allclose(views[:, :, :3], np.clip(convolve(photo, left_psf), 0, 1), atol=1e-6)
    np.testing.assert_allclose(views[:, :, 3:], np.clip(convolve(photo, right_psf), 0, 1), atol=1e-6)
    # The views differ (the dual-pixel disparity) where the picture has edges.
    assert float(np.abs(views[:, :, :3] - views[:, :, 3:]).mean()) > 0.005


def test_shapes_dtype_range_seeds_and_noise(photo: np.ndarray) -> None:
    degradation = DualPixelDefocus()
    odd = photo[:37, :53]
    first = degradation.apply(odd, rng(7))
    assert first.shape == (37, 53, 6)
    assert first.dtype == np.float32
    assert 0.0 <= first.min() <= first.max() <= 1.0
    np.testing.assert_array_equal(first, degradation.apply(odd, rng(7)))
    assert not np.array_equal(first, degradation.apply(odd, rng(8)))
    flat = np.full((64, 64, 3), 0.4, np.float32)
    residual = DualPixelDefocus(noise_sigma=0.02).apply(flat, rng(1)) - 0.4
    np.testing.assert_allclose(residual.reshape(-1, 6).std(axis=0), 0.02, rtol=0.1)  # each view, each channel
    pair = synthesize_pairs([("photo", odd)], degradation, seed=2)[0]
    assert (pair.input.shape, pair.target.shape) == ((37, 53, 6), (37, 53, 3))
    assert pair.known["kernel"].shape[0] % 2 == 1


@pytest.mark.parametrize("options", [
    {"radius": (0.1, 2)}, {"radius": (4, 3)}, {"front_probability": 1.5}, {"noise_sigma": -0.1},
    {"kind": "defocus-blur"}, {"size": 9},
])
def test_bad_options_are_refused_with_clear_errors(options: dict) -> None:
    with pytest.raises(UserError, match=r"radius|front_probability|noise_sigma|does not fit|Unknown option"):
        make_degradation("defocus", **options)
    with pytest.raises(UserError, match="HxWx3"):
        DualPixelDefocus().apply(np.zeros((8, 8, 6), np.float32), rng(0))


def test_calibration_set_holds_six_channel_inputs_and_rgb_targets(tmp_path) -> None:
    path = tmp_path / "defocus.npz"
    manifest = build_calibration_set("defocus", path, count=2, crop=32, seed=0)
    assert manifest.degradation["kind"] == "dual-pixel-defocus"
    with CalibrationSet(path) as calibration:
        assert calibration.input_channels == 6
        views, clean = calibration.sample(1)
        assert (views.shape, clean.shape) == ((32, 32, 6), (32, 32, 3))
        assert [batch.shape for batch in calibration.inputs()] == [(1, 6, 32, 32)] * 2


def test_wiener_with_the_true_disk_restores_the_views_mean(photo: np.ndarray) -> None:
    degradation = dataclasses.replace(DualPixelDefocus(), radius=(3.0, 4.0), noise_sigma=0.005)
    pair = synthesize_pairs([("photo", photo)], degradation, seed=1)[0]
    picture = picture_of(degradation, pair.input)
    restored = BASELINES["defocus"]["wiener"](picture, clean=pair.target, **pair.known)
    assert psnr(restored, pair.target) > psnr(picture, pair.target) + 1.0
    assert oracle_facts(degradation, np.random.default_rng((1, 0)))["kernel"].shape == (9, 9)


def test_paired_image_folders_cannot_hold_dual_pixel_inputs(tmp_path) -> None:
    with pytest.raises(UserError, match="6 channels"):
        evaluation_pairs(make_degradation("defocus"), tmp_path, "paired")
