"""From command-line data options to training batches and evaluation pairs.

With no folder, the built-in scikit-image photographs are used (train split for
training, validation split for choosing the best checkpoint, held-out split for
evaluation; three disjoint sets, see `datasets.BUILTIN_SPLITS`), degraded for the task.
A folder is read in one of the authors' layouts, or as clean images to degrade.
"""

from __future__ import annotations

from pathlib import Path

from mirnet_deploy.errors import UserError

from .datasets import (
    ImagePair,
    PatchSampler,
    builtin_images,
    load_pairs,
    paired_folders,
    read_folder,
    realsr_pairs,
    sidd_medium_pairs,
    synthesize_pairs,
)
from .degradations import Degradation, channels_of

LAYOUTS = ("clean", "paired", "sidd", "realsr")
#: Validation/evaluation degradations draw from this seed, different from training's.
EVAL_SEED = 2020


def _check_layout(degradation: Degradation, layout: str) -> None:
    """Paired layouts hold RGB image files: a task whose inputs have other channels needs clean images."""
    if layout != "clean" and channels_of(degradation) != 3:
        raise UserError(f"The {degradation.kind} inputs have {channels_of(degradation)} channels, which "
                        f"the {layout!r} layout's image files cannot hold: use clean photographs "
                        "(--layout clean, or no --data for the built-in ones).")


def read_pairs(folder: str | Path, layout: str, scale: int = 4) -> list[ImagePair]:
    """Decoded (degraded, clean) pairs from a folder in one of the paired layouts."""
    if layout == "paired":
        return load_pairs(paired_folders(folder))
    if layout == "sidd":
        return load_pairs(sidd_medium_pairs(folder))
    if layout == "realsr":
        return load_pairs(realsr_pairs(folder, scale))
    raise UserError(f"Layout {layout!r} is not a paired layout: choose one of {', '.join(LAYOUTS[1:])}.")


def evaluation_pairs(degradation: Degradation, folder: str | Path | None = None, layout: str = "clean",
                     scale: int = 4) -> list[ImagePair]:
    """Pairs to score: built-in held-out images (or a clean folder) degraded with a fixed seed,
    or the pairs of a paired folder as they are."""
    if folder is None:
        return synthesize_pairs(builtin_images("heldout"), degradation, EVAL_SEED)
    _check_layout(degradation, layout)
    if layout == "clean":
        return synthesize_pairs(read_folder(folder), degradation, EVAL_SEED)
    return read_pairs(folder, layout, scale)


def validation_pairs(degradation: Degradation, folder: str | Path | None = None, layout: str = "clean",
                     scale: int = 4) -> list[ImagePair]:
    """Pairs that choose the best checkpoint during training: the built-in validation photographs
    (disjoint from training and held-out ones, so `mirnet eval` scores images no choice has seen)
    degraded with a fixed seed, or a folder as `evaluation_pairs` reads one."""
    if folder is None:
        return synthesize_pairs(builtin_images("validation"), degradation, EVAL_SEED)
    return evaluation_pairs(degradation, folder, layout, scale)


def training_sampler(degradation: Degradation, *, folder: str | Path | None, layout: str, scale: int,
                     patch_size: int, batch_size: int, seed: int) -> PatchSampler:
    """Random-crop batches: clean images degraded per patch (fresh noise), or fixed pairs."""
    options = {"patch_size": patch_size, "batch_size": batch_size, "seed": seed, "as_torch": True}
    if folder is not None:
        _check_layout(degradation, layout)
    if folder is None or layout == "clean":
        images = builtin_images("train") if folder is None else read_folder(folder)
        return PatchSampler.from_clean([pixels for _, pixels in images], degradation, **options)
    return PatchSampler.from_pairs(read_pairs(folder, layout, scale), **options)
