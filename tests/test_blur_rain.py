"""Deblurring and deraining degradations (seeded kernels, rain streaks), the deconvolution
baselines given the true kernel, and the multi-output training loss the registry selects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mirnet_deploy.errors import UserError
from mirnet_ref.baselines import (
    BASELINES,
    blind_wiener_deconvolution,
    richardson_lucy_deconvolution,
    wiener_deconvolution,
)
from mirnet_ref.datasets import builtin_images, synthesize_pairs
from mirnet_ref.degradations import (
    TASK_KINDS,
    DefocusBlur,
    MotionBlur,
    RainStreaks,
    convolve,
    make_degradation,
    mean_kernel,
    oracle_facts,
)
from mirnet_ref.metrics import psnr
from mirnet_ref.registry import FAMILIES, family_named, training_outputs
from mirnet_ref.train import TrainConfig, charbonnier, edge_loss, laplacian, training_loss

BLURS = (MotionBlur(), DefocusBlur(), MotionBlur(size=31, length=(20, 28)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96x112 crop of a built-in photograph (fur and whiskers: real edges)."""
    return dict(builtin_images("heldout"))["chelsea"][100:196, 150:262]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gradient_energy(image: np.ndarray) -> float:
    return float(np.mean(np.diff(image, axis=0) ** 2) + np.mean(np.diff(image, axis=1) ** 2))


def test_task_defaults_and_kinds() -> None:
    assert make_degradation("deblur") == MotionBlur()
    assert make_degradation("deblur", "defocus-blur", radius=(2, 3)) == DefocusBlur(radius=(2, 3))
    assert make_degradation("derain") == RainStreaks()
    assert TASK_KINDS["deblur"] == ("motion-blur", "defocus-blur")


@pytest.mark.parametrize("options", [
    {"kind": "motion-blur", "size": 16}, {"kind": "motion-blur", "length": (5, 15)},
    {"kind": "motion-blur", "noise_sigma": -1}, {"kind": "defocus-blur", "radius": (0.1, 2)},
    {"kind": "defocus-blur", "radius": (4, 3)}, {"kind": "rain-streaks", "angle_max": 90},
    {"kind": "rain-streaks", "density": (0, 0.1)}, {"kind": "rain-streaks", "opacity": 1.5},
])
def test_bad_options_are_user_errors(options: dict) -> None:
    task = "derain" if options["kind"] == "rain-streaks" else "deblur"
    with pytest.raises(UserError):
        make_degradation(task, **options)


@pytest.mark.parametrize("blur", BLURS, ids=["motion", "defocus", "motion-long"])
def test_kernels_are_normalised_nonnegative_and_centred(blur) -> None:
    for seed in range(20):
        kernel = blur.kernel(rng(seed))
        assert kernel.ndim == 2
        assert kernel.shape[0] == kernel.shape[1]
        assert kernel.shape[0] % 2 == 1
        assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
        assert kernel.min() >= 0
        grid = np.arange(kernel.shape[0]) - kernel.shape[0] // 2
        centroid = (float((kernel.sum(axis=0) * grid).sum()), float((kernel.sum(axis=1) * grid).sum()))
        assert np.hypot(*centroid) < 0.75  # centred: the blur does not shift the picture


def test_motion_kernels_follow_their_length_and_differ_per_seed() -> None:
    blur = MotionBlur(length=(6, 6), curvature=0.0)
    kernel = blur.kernel(rng(3))
    ys, xs = np.nonzero(kernel > 1e-6)
    extent = np.hypot(xs.max() - xs.min(), ys.max() - ys.min())
    assert 5 <= extent <= 8  # a straight 6-pixel path, spread bilinearly over at most 2 more pixels
    kernels = [MotionBlur().kernel(rng(seed)) for seed in range(5)]
    assert all(not np.allclose(a, b) for i, a in enumerate(kernels) for b in kernels[i + 1:])


def test_defocus_kernel_is_a_symmetric_disk() -> None:
    blur = DefocusBlur(radius=(3.0, 3.0))
    kernel = blur.kernel(rng(0))
    assert kernel.shape == (7, 7)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)
    assert kernel[0, 0] == 0
    assert kernel[3, 3] == kernel.max()


@pytest.mark.parametrize("degradation", [*BLURS[:2], RainStreaks()], ids=["motion", "defocus", "rain"])
def test_seeded_shapes_and_range(degradation, photo: np.ndarray) -> None:
    odd = photo[:37, :53]
    first = degradation.apply(odd, rng(7))
    assert first.shape == odd.shape
    assert first.dtype == np.float32
    assert first.min() >= 0.0
    assert first.max() <= 1.0
    np.testing.assert_array_equal(first, degradation.apply(odd, rng(7)))
    assert not np.array_equal(first, degradation.apply(odd, rng(8)))


def test_synthetic_pairs_are_a_pure_function_of_seed_and_index(photo: np.ndarray) -> None:
    images = [("a", photo), ("b", photo[::-1].copy()), ("c", photo[:, ::-1].copy())]
    full = synthesize_pairs(images, MotionBlur(), seed=5)
    fewer = synthesize_pairs(images[:2], MotionBlur(), seed=5)
    for a, b in zip(full[:2], fewer, strict=True):
        np.testing.assert_array_equal(a.input, b.input)
        np.testing.assert_array_equal(a.known["kernel"], b.known["kernel"])
    assert not np.array_equal(full[0].known["kernel"], full[1].known["kernel"])


@pytest.mark.parametrize("blur", BLURS[:2], ids=["motion", "defocus"])
def test_blur_is_the_known_kernel_applied_and_the_noise_is_as_stated(blur, photo: np.ndarray) -> None:
    noiseless = dataclasses.replace(blur, noise_sigma=0.0)
    blurred = noiseless.apply(photo, rng(4))
    kernel = oracle_facts(noiseless, rng(4))["kernel"]
    np.testing.assert_allclose(blurred, np.clip(convolve(photo, kernel), 0, 1), atol=1e-6)
    assert gradient_energy(blurred) < 0.6 * gradient_energy(photo)  # detail removed
    assert float(blurred.mean()) == pytest.approx(float(photo.mean()), abs=2e-3)  # light kept
    flat = np.full((40, 40, 3), 0.3, np.float32)
    np.testing.assert_allclose(noiseless.apply(flat, rng(1)), flat, atol=1e-6)
    residual = blur.apply(flat, rng(1)) - flat
    assert float(residual.std()) == pytest.approx(blur.noise_sigma, rel=0.1)


def test_rain_adds_bright_near_vertical_streaks(photo: np.ndarray) -> None:
    rain = RainStreaks(angle_max=10)
    rainy = rain.apply(photo, rng(2))
    assert (rainy >= photo - 1e-6).all()  # screen blending only brightens
    changed = np.mean(np.abs(rainy - photo).max(axis=2) > 0.02)
    assert 0.02 < changed < 0.5
    layer = rain.streaks((200, 200), rng(2))
    assert layer.min() >= 0
    assert layer.max() <= 1
    # Streaks run (nearly) vertically: the layer varies far more across columns than down rows.
    assert np.abs(np.diff(layer, axis=1)).mean() > 2 * np.abs(np.diff(layer, axis=0)).mean()
    def rain_at(density: float) -> float:
        return float(RainStreaks(density=(density, density)).streaks((200, 200), rng(2)).mean())

    assert rain_at(0.02) > 2 * rain_at(0.002)


@pytest.mark.parametrize("baseline", [wiener_deconvolution, richardson_lucy_deconvolution])
def test_deconvolution_with_the_true_kernel_beats_the_blurred_input(baseline, photo: np.ndarray) -> None:
    pair = synthesize_pairs([("photo", photo)], MotionBlur(noise_sigma=0.005), seed=1)[0]
    before = psnr(pair.input, pair.target)
    oracle = baseline(pair.input, clean=pair.target, **pair.known)
    default = baseline(pair.input, **pair.known)
    assert oracle.shape == photo.shape
    assert oracle.dtype == np.float32
    assert psnr(oracle, pair.target) > before + 1.0
    assert psnr(oracle, pair.target) >= psnr(default, pair.target) - 1e-9  # oracle picks the best setting
    wrong = baseline(pair.input, clean=pair.target, kernel=np.rot90(pair.known["kernel"]))
    assert psnr(wrong, pair.target) < psnr(oracle, pair.target) - 0.5  # the true kernel matters


@pytest.mark.parametrize("blur", BLURS[:2], ids=["motion", "defocus"])
def test_the_mean_kernel_is_the_distributions_centred_average(blur) -> None:
    mean = mean_kernel(blur)
    assert mean.sum() == pytest.approx(1.0)
    assert mean.shape[0] == mean.shape[1]
    assert mean.shape[0] % 2 == 1
    rows, cols = np.indices(mean.shape) - mean.shape[0] // 2
    assert float((mean * rows).sum()) == pytest.approx(0.0, abs=0.05)  # centred, as every draw is
    assert float((mean * cols).sum()) == pytest.approx(0.0, abs=0.05)
    # Directions (motion) and radii (defocus) are uniform: the mean is close to round.
    np.testing.assert_allclose(mean, mean.T, atol=0.05 * mean.max())
    for seed in range(4):  # it covers every draw's support
        draw = oracle_facts(blur, rng(seed))["kernel"]
        draw = np.pad(draw, (mean.shape[0] - draw.shape[0]) // 2)
        assert (mean[draw > 0] > 0).all()
    np.testing.assert_array_equal(oracle_facts(blur, rng(9))["mean_kernel"], mean)  # one per distribution
    assert not mean.flags.writeable  # shared: nobody may change it in place


def test_the_blind_baseline_deconvolves_with_the_mean_kernel_not_the_true_one(photo: np.ndarray) -> None:
    pair = synthesize_pairs([("photo", photo)], MotionBlur(noise_sigma=0.005), seed=1)[0]
    blind = blind_wiener_deconvolution(pair.input, clean=pair.target, **pair.known)
    np.testing.assert_array_equal(
        blind, wiener_deconvolution(pair.input, clean=pair.target, kernel=pair.known["mean_kernel"]))
    oracle = wiener_deconvolution(pair.input, clean=pair.target, **pair.known)
    assert psnr(oracle, pair.target) > psnr(blind, pair.target) + 0.5  # knowing the draw is worth it


def test_deconvolution_needs_the_kernel(photo: np.ndarray) -> None:
    for baseline in BASELINES["deblur"].values():
        with pytest.raises(UserError, match="need the blur kernel"):
            baseline(photo, clean=photo)


def test_families_know_their_tasks_from_one_table() -> None:
    assert family_named("mprnet").tasks == ("deblur", "denoise", "derain")
    assert family_named("mirnetv2").tasks == ("denoise", "enhance", "sr", "defocus")
    for family in FAMILIES.values():
        # Every task has a synthetic degradation (MIRNet-v2's defocus: dual-pixel views).
        assert set(family.tasks) <= set(TASK_KINDS)
    with pytest.raises(UserError, match="does not do"):
        family_named("mprnet").check_task("enhance")


def test_laplacian_and_edge_loss() -> None:
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert laplacian(flat)[..., 4:-4, 4:-4].abs().max().item() < 1e-6  # no edges inside a flat image
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert edge_loss(x, x).item() == pytest.approx(1e-3)  # sqrt(eps^2) only
    assert edge_loss(x, flat.expand_as(x)).item() > 0.05


def test_training_loss_sums_every_output_the_family_returns() -> None:
    torch.manual_seed(0)
    family = family_named("mprnet")
    model = family.build(family.preset("small")).train()
    x, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    config = TrainConfig(task="deblur", family="mprnet", edge_loss_weight=0.05)
    torch.manual_seed(1)
    outputs = training_outputs(model, x)
    assert len(outputs) == 3
    expected = sum(charbonnier(o, target) + 0.05 * edge_loss(o, target) for o in outputs)
    assert training_loss(model, x, target, config).item() == pytest.approx(expected.item(), rel=1e-6)
    single = family_named("mirnetv2")
    v2 = single.build(single.preset("small"))
    assert len(training_outputs(v2, x)) == 1
    assert training_loss(v2, x, target, TrainConfig(task="enhance", family="mirnetv2")).item() == \
        pytest.approx(charbonnier(v2(x), target).item(), rel=1e-6)
