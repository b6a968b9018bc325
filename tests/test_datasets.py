"""Dataset layouts (a)-(d) on small generated folders, built-in images, crops and patch batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mirnet_deploy.errors import ImageError, UserError
from mirnet_ref.data_sources import validation_pairs
from mirnet_ref.datasets import (
    BUILTIN_SPLITS,
    ImagePair,
    PatchSampler,
    builtin_images,
    dihedral,
    load_pairs,
    paired_folders,
    random_crop,
    read_folder,
    read_pair,
    realsr_pairs,
    sidd_medium_pairs,
    synthesize_pairs,
)
from mirnet_ref.degradations import BicubicSR, DefocusBlur, GaussianNoise, convolve, make_degradation
from mirnet_ref.images import write_image


def save(path: Path, value: float, size: tuple[int, int] = (12, 16)) -> Path:
    write_image(path, np.full((*size, 3), value, np.float32))
    return path


def make_paired(root: Path, names: list[str], inp: str = "input", gt: str = "groundtruth") -> None:
    for index, name in enumerate(names):
        save(root / inp / name, 0.1 * index)
        save(root / gt / name, 0.1 * index + 0.05)


# (a) input/ + groundtruth/ ----------------------------------------------------------------


def test_paired_folders_match_by_name(tmp_path: Path) -> None:
    make_paired(tmp_path, ["b.png", "a.png", "c.png"])
    pairs = paired_folders(tmp_path)
    assert [(i.name, t.parent.name) for i, t in pairs] == [
        ("a.png", "groundtruth"),
        ("b.png", "groundtruth"),
        ("c.png", "groundtruth"),
    ]
    loaded = load_pairs(pairs)
    assert [p.name for p in loaded] == ["a", "b", "c"]
    np.testing.assert_allclose(loaded[1].target - loaded[1].input, 0.05, atol=1 / 255)


def test_paired_folders_custom_names_and_suffixes(tmp_path: Path) -> None:
    save(tmp_path / "low" / "1.png", 0.1)
    save(tmp_path / "high" / "1.tif", 0.5)
    (pair,) = paired_folders(tmp_path, input_dir="low", target_dir="high")
    assert pair == (tmp_path / "low" / "1.png", tmp_path / "high" / "1.tif")


def test_missing_partner_names_the_file(tmp_path: Path) -> None:
    make_paired(tmp_path, ["a.png", "b.png"])
    (tmp_path / "groundtruth" / "b.png").unlink()
    with pytest.raises(ImageError, match=r"No target image for .*input/b\.png"):
        paired_folders(tmp_path)


def test_unpaired_target_names_the_file(tmp_path: Path) -> None:
    make_paired(tmp_path, ["a.png"])
    save(tmp_path / "groundtruth" / "extra.png", 0.3)
    with pytest.raises(ImageError, match=r"No input image for .*groundtruth/extra\.png"):
        paired_folders(tmp_path)


def test_ambiguous_stems_are_rejected(tmp_path: Path) -> None:
    make_paired(tmp_path, ["a.png"])
    save(tmp_path / "input" / "a.jpg", 0.3)
    with pytest.raises(ImageError, match="ambiguous"):
        paired_folders(tmp_path)


def test_different_sizes_name_both_files(tmp_path: Path) -> None:
    save(tmp_path / "input" / "a.png", 0.1, (12, 16))
    save(tmp_path / "groundtruth" / "a.png", 0.1, (12, 18))
    (pair,) = paired_folders(tmp_path)
    with pytest.raises(ImageError, match=r"input/a\.png is 16x12 .*groundtruth/a\.png is 18x12"):
        read_pair(*pair)


def test_corrupt_file_in_a_dataset_names_it(tmp_path: Path) -> None:
    make_paired(tmp_path, ["a.png", "b.png"])
    (tmp_path / "groundtruth" / "b.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageError, match=r"groundtruth/b\.png"):
        load_pairs(paired_folders(tmp_path))


def test_missing_or_empty_folders_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        paired_folders(tmp_path)
    (tmp_path / "input").mkdir()
    (tmp_path / "groundtruth").mkdir()
    (tmp_path / "input" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="No image pairs"):
        paired_folders(tmp_path)


# (b) SIDD-Medium scenes -------------------------------------------------------------------


def test_sidd_medium_pairs_within_scenes(tmp_path: Path) -> None:
    for scene, number in (("0001_001_S6_00100_00060_3200_L", "0001"), ("0002_001_S6_x", "0002")):
        for k in ("010", "011"):
            save(tmp_path / scene / f"{number}_NOISY_SRGB_{k}.PNG", 0.2)
            save(tmp_path / scene / f"{number}_GT_SRGB_{k}.PNG", 0.3)
    pairs = sidd_medium_pairs(tmp_path)
    assert len(pairs) == 4
    for noisy, clean in pairs:
        assert noisy.parent == clean.parent
        assert noisy.name.replace("NOISY", "GT") == clean.name


def test_sidd_missing_gt_names_the_noisy_file(tmp_path: Path) -> None:
    save(tmp_path / "0001_scene" / "0001_NOISY_SRGB_010.PNG", 0.2)
    save(tmp_path / "0001_scene" / "0001_NOISY_SRGB_011.PNG", 0.2)
    save(tmp_path / "0001_scene" / "0001_GT_SRGB_010.PNG", 0.3)
    with pytest.raises(ImageError, match=r"0001_NOISY_SRGB_011\.PNG"):
        sidd_medium_pairs(tmp_path)


def test_sidd_without_scenes_is_a_user_error(tmp_path: Path) -> None:
    save(tmp_path / "loose.png", 0.2)
    with pytest.raises(UserError, match="SIDD-Medium"):
        sidd_medium_pairs(tmp_path)


# (c) RealSR -------------------------------------------------------------------------------


def test_realsr_pairs_by_name_ignoring_lr_hr_suffixes(tmp_path: Path) -> None:
    save(tmp_path / "x4" / "LR" / "Canon_001_LR4.png", 0.2)
    save(tmp_path / "x4" / "HR" / "Canon_001_HR.png", 0.3)
    save(tmp_path / "x4" / "LR" / "Nikon_002.png", 0.2)
    save(tmp_path / "x4" / "HR" / "Nikon_002.png", 0.3)
    pairs = realsr_pairs(tmp_path, scale=4)
    assert [(i.name, t.name) for i, t in pairs] == [
        ("Canon_001_LR4.png", "Canon_001_HR.png"),
        ("Nikon_002.png", "Nikon_002.png"),
    ]
    with pytest.raises(UserError, match="x3"):
        realsr_pairs(tmp_path, scale=3)


def test_realsr_small_lr_is_a_size_mismatch(tmp_path: Path) -> None:
    save(tmp_path / "x2" / "LR" / "a.png", 0.2, (6, 8))
    save(tmp_path / "x2" / "HR" / "a.png", 0.3, (12, 16))
    with pytest.raises(ImageError, match=r"LR/a\.png is 8x6.*upsample"):
        load_pairs(realsr_pairs(tmp_path, scale=2))


# (d) clean folder + degradation -----------------------------------------------------------


def test_synthesized_pairs_are_seeded_and_stable(tmp_path: Path) -> None:
    save(tmp_path / "one.png", 0.5, (20, 20))
    images = read_folder(tmp_path)
    first = synthesize_pairs(images, GaussianNoise(), seed=1)
    again = synthesize_pairs(images, GaussianNoise(), seed=1)
    np.testing.assert_array_equal(first[0].input, again[0].input)
    assert not np.array_equal(first[0].input, synthesize_pairs(images, GaussianNoise(), 2)[0].input)
    np.testing.assert_array_equal(first[0].target, images[0][1])

    save(tmp_path / "two.png", 0.4, (20, 20))  # adding an image leaves earlier inputs alone
    grown = synthesize_pairs(read_folder(tmp_path), GaussianNoise(), seed=1)
    assert [p.name for p in grown] == ["one", "two"]
    np.testing.assert_array_equal(grown[0].input, first[0].input)


def test_synthesized_sr_pairs_crop_the_target(tmp_path: Path) -> None:
    (pair,) = synthesize_pairs([("odd", np.full((19, 22, 3), 0.5, np.float32))], BicubicSR(3), 0)
    assert pair.input.shape == pair.target.shape == (18, 21, 3)


def test_read_folder_reports_corrupt_and_empty(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No images"):
        read_folder(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ImageError, match=r"bad\.jpg"):
        read_folder(tmp_path)


# Built-in images --------------------------------------------------------------------------


def test_builtin_split_is_fixed_disjoint_and_rgb() -> None:
    assert BUILTIN_SPLITS["heldout"] == ("chelsea", "motorcycle")
    assert BUILTIN_SPLITS["validation"] == ("camera", "coins")
    train, validation, heldout = (set(BUILTIN_SPLITS[s]) for s in ("train", "validation", "heldout"))
    assert not train & heldout
    assert not validation & heldout
    assert not validation & train
    heldout = builtin_images("heldout")
    assert [name for name, _ in heldout] == ["chelsea", "motorcycle"]
    for _, image in heldout:
        assert image.dtype == np.float32
        assert image.ndim == 3
        assert image.shape[2] == 3
        assert image.min() >= 0.0
        assert image.max() <= 1.0
        assert image.std() > 0.1
    with pytest.raises(UserError, match="heldout"):
        builtin_images("test")


def test_training_validates_on_the_validation_split_not_the_heldout_one() -> None:
    """`mirnet train`'s default validation pairs: the grey validation photographs as RGB, degraded;
    none of them is an image `mirnet eval` scores or a training photograph."""
    pairs = validation_pairs(make_degradation("denoise"))
    assert [pair.name for pair in pairs] == ["camera", "coins"]
    heldout = [image for _, image in builtin_images("heldout")]
    train = [image for _, image in builtin_images("train")]
    for pair in pairs:
        clean = pair.target
        assert clean.shape[2] == 3
        assert np.array_equal(clean[..., 0], clean[..., 2])  # grey replicated
        assert pair.input.shape == clean.shape
        assert not np.array_equal(pair.input, clean)  # degraded
        assert all(p.shape != clean.shape or not np.array_equal(p, clean) for p in heldout + train)


def test_builtin_train_images_load_offline() -> None:
    train = builtin_images("train")
    assert [name for name, _ in train] == list(BUILTIN_SPLITS["train"])
    assert all(min(image.shape[:2]) >= 256 for _, image in train)  # room for 256 patches


# Crops, dihedral transforms, patch batches -------------------------------------------------


def test_random_crop_takes_the_same_window() -> None:
    image = np.arange(10 * 12 * 3, dtype=np.float32).reshape(10, 12, 3)
    a, b = random_crop((image, image * 2), 4, np.random.default_rng(0))
    assert a.shape == (4, 4, 3)
    np.testing.assert_array_equal(b, a * 2)
    with pytest.raises(ImageError, match="smaller"):
        random_crop((image,), 11, np.random.default_rng(0))
    with pytest.raises(ImageError, match="different sizes"):
        random_crop((image, image[:9]), 4, np.random.default_rng(0))


def test_dihedral_gives_the_eight_distinct_symmetries() -> None:
    image = np.arange(3 * 3 * 2, dtype=np.float32).reshape(3, 3, 2)
    results = [dihedral(image, k) for k in range(8)]
    assert len({r.tobytes() for r in results}) == 8
    np.testing.assert_array_equal(results[0], image)
    np.testing.assert_array_equal(results[4], image[::-1])
    np.testing.assert_array_equal(results[1], np.rot90(image))
    assert dihedral(np.zeros((2, 5, 3)), 1).shape == (5, 2, 3)
    with pytest.raises(ValueError, match=r"0\.\.7"):
        dihedral(image, 8)


def gradient_pairs() -> list[ImagePair]:
    y, x = np.mgrid[0:40, 0:50] / 50.0
    target = np.dstack([x, y, x * y]).astype(np.float32)
    return [ImagePair("g", target * 0.5, target), ImagePair("h", target[::-1] * 0.5, target[::-1])]


def test_patch_sampler_from_pairs_is_aligned_and_reproducible() -> None:
    sampler = PatchSampler.from_pairs(gradient_pairs(), patch_size=16, batch_size=5, seed=3)
    inputs, targets = next(iter(sampler))
    assert inputs.shape == targets.shape == (5, 3, 16, 16)
    assert inputs.dtype == np.float32
    assert inputs.flags.c_contiguous
    np.testing.assert_allclose(inputs, targets * 0.5, atol=1e-7)  # same crop and transform

    again = iter(PatchSampler.from_pairs(gradient_pairs(), patch_size=16, batch_size=5, seed=3))
    np.testing.assert_array_equal(next(again)[0], inputs)
    reseeded = PatchSampler.from_pairs(gradient_pairs(), patch_size=16, batch_size=5, seed=4)
    other = next(iter(reseeded))
    assert not np.array_equal(other[0], inputs)


def test_patch_sampler_from_clean_degrades_each_patch() -> None:
    clean = [np.full((32, 32, 3), 0.5, np.float32)]
    sampler = PatchSampler.from_clean(
        clean, GaussianNoise(20 / 255), patch_size=16, batch_size=8, seed=0, as_torch=True
    )
    batches = iter(sampler)
    inputs, targets = next(batches)
    assert isinstance(inputs, torch.Tensor)
    assert inputs.shape == (8, 3, 16, 16)
    assert torch.all(targets == 0.5)
    assert (inputs - targets).std().item() == pytest.approx(20 / 255, rel=0.1)
    assert not torch.equal(next(batches)[0], inputs)  # fresh noise every batch


def test_patch_sampler_blurs_patches_with_the_real_scene_around_them() -> None:
    """A blurred patch equals the same window of the whole blurred image: its borders are blurred
    from the neighbouring pixels, not from a reflection of the patch (which a deconvolution
    network would otherwise learn to undo)."""
    clean = np.random.default_rng(1).random((48, 48, 3)).astype(np.float32)
    blur = DefocusBlur(radius=(3.0, 3.0), noise_sigma=0.0)  # one fixed disk kernel, no noise
    assert blur.reach == 3
    sampler = PatchSampler.from_clean([clean], blur, patch_size=16, batch_size=6, seed=0, augment=False)
    expected = convolve(clean, blur.kernel(np.random.default_rng()))
    for blurred, target in zip(*sampler.batch(0), strict=True):
        top, left = next((y, x) for y in range(33) for x in range(33)
                         if np.array_equal(clean[y:y + 16, x:x + 16], target.transpose(1, 2, 0)))
        assert 3 <= top <= 29  # the crop plus its reach fits in the image
        assert 3 <= left <= 29
        window = expected[top:top + 16, left:left + 16].transpose(2, 0, 1)
        np.testing.assert_allclose(blurred, np.clip(window, 0, 1), atol=1e-5)


def test_patch_sampler_rejects_unusable_settings() -> None:
    with pytest.raises(UserError, match="multiple of 3"):
        PatchSampler.from_clean([np.zeros((32, 32, 3), np.float32)], BicubicSR(3), patch_size=16)
    with pytest.raises(ImageError, match="patch"):
        PatchSampler.from_pairs(gradient_pairs(), patch_size=48)
    with pytest.raises(UserError, match="at least one"):
        PatchSampler.from_pairs([])
