"""Training and evaluation data: paired folders, synthetic pairs, built-in images, patch batches.

Folder layouts, each listed as (input_path, target_path) pairs in sorted order:
  (a) `paired_folders`: `input/` + `groundtruth/`, matched by file stem (the authors'
      SIDD-patch, LOL and FiveK test folders);
  (b) `sidd_medium_pairs`: SIDD-Medium scene folders, `<scene>/*_NOISY_SRGB_*` with the
      `*_GT_SRGB_*` of the same scene and number;
  (c) `realsr_pairs`: RealSR `x{scale}/LR` + `x{scale}/HR`, matched by stem once a trailing
      `_LR<scale>` / `_HR` is removed (RealSR v1 names them `Canon_001_LR4.png` /
      `Canon_001_HR.png`; identical names match too);
  (d) clean images (`read_folder` or `builtin_images`) + a degradation:
      `synthesize_pairs` makes the inputs, seeded.
A listed pair is only a promise: `read_pair` / `load_pairs` decode the files and reject
different sizes. Every mismatch or unreadable file is an ImageError naming the file.

For training, `PatchSampler` turns pairs or clean images into endless, reproducible
batches of random crops with the 8 dihedral augmentations (the authors' recipe).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import skimage.data

from mirnet_deploy.errors import ImageError, UserError

from .degradations import Degradation, bicubic_resize, degrade_pair, oracle_facts
from .images import IMAGE_SUFFIXES, read_image

if TYPE_CHECKING:  # tensors only for training (as_torch): calibration and the demo need no PyTorch
    import torch

PathPair = tuple[Path, Path]


@dataclass(frozen=True)
class ImagePair:
    """A decoded pair: `input` (degraded) and `target` (clean), float32 HxWx3 in [0, 1]; for a
    synthetic pair, `known` holds what an oracle baseline may know (`oracle_facts`)."""

    name: str
    input: np.ndarray
    target: np.ndarray
    known: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Listing folders


def list_images(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files (or files of other `suffixes`) directly inside `folder`, sorted by name; hidden files
    are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"Image folder {folder} does not exist or is not a folder. Check the dataset path "
            "and its layout (see `mirnet_ref.datasets`)."
        )
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and path.suffix.lower() in suffixes
        and not path.name.startswith(".")
    )


def _match(
    inputs: list[Path], targets: list[Path], key: Callable[[Path], str], layout: str
) -> list[PathPair]:
    """Pair files whose keys are equal; any file without exactly one partner is an ImageError."""
    by_key: list[dict[str, Path]] = [{}, {}]
    for side, files in zip(by_key, (inputs, targets), strict=True):
        for path in files:
            if key(path) in side:
                raise ImageError(
                    f"Image files {side[key(path)]} and {path} both match the name "
                    f"{key(path)!r} ({layout}), so their partner is ambiguous. Remove or rename "
                    "one of them."
                )
            side[key(path)] = path
    for side, other, role in ((0, 1, "target"), (1, 0, "input")):
        orphans = [path for name, path in by_key[side].items() if name not in by_key[other]]
        if orphans:
            shown = ", ".join(str(path) for path in orphans[:5])
            more = f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
            raise ImageError(
                f"No {role} image for {shown}{more} ({layout}). Every image needs a partner "
                "with the same name; add the missing files or remove the unpaired ones."
            )
    return [(path, by_key[1][name]) for name, path in sorted(by_key[0].items())]


def _nonempty(pairs: list[PathPair], where: Path, layout: str) -> list[PathPair]:
    if not pairs:
        raise UserError(f"No image pairs found under {where}; expected {layout}.")
    return pairs


def paired_folders(
    root: str | Path, input_dir: str = "input", target_dir: str = "groundtruth"
) -> list[PathPair]:
    """Layout (a): `root/input/x.png` pairs with `root/groundtruth/x.<any suffix>`."""
    root = Path(root)
    layout = f"{input_dir}/ and {target_dir}/ matched by file name"
    pairs = _match(
        list_images(root / input_dir), list_images(root / target_dir), lambda p: p.stem, layout
    )
    return _nonempty(pairs, root, layout)


def sidd_medium_pairs(root: str | Path) -> list[PathPair]:
    """Layout (b): scene folders under `root` (SIDD_Medium_Srgb/Data), each holding
    `NNNN_NOISY_SRGB_KKK.PNG` and `NNNN_GT_SRGB_KKK.PNG`."""
    root = Path(root)
    layout = "SIDD-Medium scene folders with *_NOISY_SRGB_* and *_GT_SRGB_* images"
    if not root.is_dir():
        raise UserError(f"SIDD-Medium folder {root} does not exist or is not a folder.")
    pairs: list[PathPair] = []
    for scene in sorted(path for path in root.iterdir() if path.is_dir()):
        files = list_images(scene)
        noisy = [path for path in files if "_NOISY_SRGB_" in path.name.upper()]
        clean = [path for path in files if "_GT_SRGB_" in path.name.upper()]
        pairs += _match(noisy, clean, _sidd_key, layout)
    return _nonempty(pairs, root, layout)


def _sidd_key(path: Path) -> str:
    name = path.stem.upper()
    return name.replace("_NOISY_SRGB_", "_SRGB_").replace("_GT_SRGB_", "_SRGB_")


def realsr_pairs(root: str | Path, scale: int) -> list[PathPair]:
    """Layout (c): `root/x{scale}/LR` and `root/x{scale}/HR`. RealSR v1 LR images already have
    the HR size (MIRNet refines, it does not upscale), which `read_pair` checks."""
    root = Path(root)
    if scale not in (2, 3, 4):
        raise UserError(f"RealSR scale must be 2, 3 or 4, got {scale}.")
    folder = root / f"x{scale}"
    layout = f"x{scale}/LR and x{scale}/HR images matched by name (_LR{scale}/_HR suffixes ignored)"
    pairs = _match(list_images(folder / "LR"), list_images(folder / "HR"), _realsr_key, layout)
    return _nonempty(pairs, folder, layout)


def _realsr_key(path: Path) -> str:
    return re.sub(r"_(LR\d|HR)$", "", path.stem, flags=re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Decoding pairs and making synthetic ones


def read_pair(input_path: str | Path, target_path: str | Path) -> ImagePair:
    """Decode a listed pair; different sizes are an ImageError naming both files."""
    degraded, clean = read_image(input_path).pixels, read_image(target_path).pixels
    if degraded.shape != clean.shape:
        raise ImageError(
            f"Input {input_path} is {degraded.shape[1]}x{degraded.shape[0]} but its target "
            f"{target_path} is {clean.shape[1]}x{clean.shape[0]} (width x height). A pair must "
            "have one size: the models restore at the input's size (for SR, upsample the LR "
            "image to the HR size first, as RealSR v1 does)."
        )
    return ImagePair(Path(input_path).stem, degraded, clean)


def load_pairs(pairs: Sequence[PathPair]) -> list[ImagePair]:
    return [read_pair(input_path, target_path) for input_path, target_path in pairs]


def read_folder(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """Layout (d): every image in `folder` as (file stem, float32 RGB)."""
    files = list_images(folder)
    if not files:
        raise UserError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    return [(path.stem, read_image(path).pixels) for path in files]


def synthesize_pairs(
    images: Sequence[tuple[str, np.ndarray]], degradation: Degradation, seed: int
) -> list[ImagePair]:
    """Degrade clean images into pairs. Image i draws from the random stream (seed, i), so its
    input does not change when other images are added or removed after it."""
    pairs = []
    for index, (name, clean) in enumerate(images):
        degraded, target = degrade_pair(degradation, clean, np.random.default_rng((seed, index)))
        known = oracle_facts(degradation, np.random.default_rng((seed, index)))
        pairs.append(ImagePair(name, degraded, target, known))
    return pairs


# ---------------------------------------------------------------------------------------------
# Built-in images: colour photographs shipped inside scikit-image (no download needed)

_BUILTIN_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage.data.astronaut,  # 512x512 portrait
    "coffee": skimage.data.coffee,  # 600x400 still life
    "rocket": skimage.data.rocket,  # 640x427 outdoor scene
    "immunohistochemistry": skimage.data.immunohistochemistry,  # 512x512 microscopy
    "hubble_deep_field": skimage.data.hubble_deep_field,  # 1000x872 astronomy
    "retina": skimage.data.retina,  # 1411x1411 fundus photograph
    "chelsea": skimage.data.chelsea,  # 451x300 cat, fine fur texture
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],  # 741x500 left stereo view
    "camera": skimage.data.camera,  # 512x512 grey: cameraman, coat, grass, sky, buildings
    "coins": skimage.data.coins,  # 384x303 grey: metal relief on a textured ground
}
# A fixed split into three disjoint sets of photographs: models are trained on "train", their
# best checkpoint is chosen on "validation" (`mirnet train`'s default), and they are scored on
# "heldout" (`mirnet eval`), which no step of training sees.
#
# Why grey photographs validate: scikit-image ships no further colour photograph (the one left,
# the right view of the stereo pair, is the held-out motorcycle scene and would leak it), and
# validation crops cut out of the training photographs would change every recipe's training
# stream. Grey photographs replicated to RGB (as every reader here treats grey) are natural
# images of their own scenes, disjoint from both other splits; choosing an iteration needs a
# faithful ranking on unseen scenes, not colour statistics.
BUILTIN_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
    ),
    "validation": ("camera", "coins"),
    "heldout": ("chelsea", "motorcycle"),
}


def builtin_images(split: str) -> list[tuple[str, np.ndarray]]:
    """The built-in photographs of `split` ('train', 'validation' or 'heldout') as (name, float32
    RGB); grey photographs are replicated to three channels."""
    if split not in BUILTIN_SPLITS:
        raise UserError(f"Unknown built-in split {split!r}: choose {', '.join(map(repr, BUILTIN_SPLITS))}.")
    images = []
    for name in BUILTIN_SPLITS[split]:
        pixels = _BUILTIN_LOADERS[name]()
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        images.append((name, pixels.astype(np.float32) / np.float32(255)))
    return images


def image_at_resolution(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A real photograph at exactly width x height: centre-cropped when it is larger, enlarged
    (bicubic, keeping the aspect ratio, then cropped) when it is smaller. For parity checks and
    numerics audits at deployment sizes, where content statistics matter more than pixels."""
    src_h, src_w = image.shape[:2]
    factor = max(width / src_w, height / src_h)
    if factor > 1:
        image = bicubic_resize(image, max(height, round(src_h * factor)), max(width, round(src_w * factor)))
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(np.clip(image[top : top + height, left : left + width], 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Crops, augmentation and patch batches


def random_crop(
    images: Sequence[np.ndarray], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """The same random size x size window of each image (all must share height and width)."""
    height, width = images[0].shape[:2]
    if any(image.shape[:2] != (height, width) for image in images):
        raise ImageError(
            "Cannot crop images of different sizes together: "
            f"{[image.shape[:2] for image in images]}."
        )
    if height < size or width < size:
        raise ImageError(
            f"An image of {width}x{height} is smaller than the {size}x{size} patch. Use a smaller "
            "patch size or larger images."
        )
    top = int(rng.integers(height - size + 1))
    left = int(rng.integers(width - size + 1))
    return tuple(image[top : top + size, left : left + size] for image in images)


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7): k % 4 quarter turns
    counter-clockwise, applied after a vertical flip when k >= 4. Returns a view."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    return np.rot90(image[::-1] if k >= 4 else image, k % 4, axes=(0, 1))


class PatchSampler:
    """Endless batches of (input, target) patches, float32 NCHW, reproducible from `seed`.

    Each sample picks an image uniformly, takes a random patch_size crop, and (with
    `augment`) one of the 8 dihedral transforms uniformly, like the authors' loader. Built
    with `from_pairs` (decoded pairs) or `from_clean` (clean images degraded per patch, so
    every batch sees fresh noise; a blur is applied to the crop plus its `reach` of real
    scene each side, then cut to the patch, so patch borders are blurred as the inside of
    a photograph is, not from reflected pixels). The dihedral transform acts on the degraded
    pair, so it turns a blur kernel too: harmless for motion and defocus blur (their kernel
    distributions are rotation- and mirror-invariant); a quarter turn makes dual-pixel views'
    disparity vertical (the authors' DPDD loader does the same); costly for a blur of fixed
    orientation (`bench.deblur_gap --augment` measures it). Iterating again restarts the same
    sequence.
    """

    def __init__(
        self,
        sources: Sequence[tuple[np.ndarray, ...]],
        degradation: Degradation | None,
        patch_size: int,
        batch_size: int,
        seed: int,
        augment: bool,
        as_torch: bool,
    ) -> None:
        if not sources:
            raise UserError("PatchSampler needs at least one image.")
        if patch_size < 1 or batch_size < 1:
            raise UserError(
                f"Patch size ({patch_size}) and batch size ({batch_size}) must be >= 1."
            )
        # Pixels of scene cropped around each patch for the degradation to read (see `reach`).
        self._margin = degradation.reach if degradation is not None else 0
        crop = patch_size + 2 * self._margin
        for index, images in enumerate(sources):
            same_size = all(image.shape == images[0].shape for image in images)
            if not same_size or min(images[0].shape[:2]) < crop:
                raise ImageError(
                    f"Training image {index} ({[image.shape for image in images]}) cannot give "
                    f"{patch_size}x{patch_size} patches: input and target must have the same "
                    f"size, at least the patch size (plus {self._margin} pixels each side that "
                    "the degradation reads)."
                )
        self._sources = [
            tuple(np.ascontiguousarray(image, np.float32) for image in images) for images in sources
        ]
        self._degradation = degradation
        self.patch_size, self.batch_size, self.seed = patch_size, batch_size, seed
        self._augment, self._as_torch = augment, as_torch

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[ImagePair | tuple[np.ndarray, np.ndarray]],
        *,
        patch_size: int = 128,
        batch_size: int = 16,
        seed: int = 0,
        augment: bool = True,
        as_torch: bool = False,
    ) -> PatchSampler:
        sources = [(p.input, p.target) if isinstance(p, ImagePair) else tuple(p) for p in pairs]
        return cls(sources, None, patch_size, batch_size, seed, augment, as_torch)

    @classmethod
    def from_clean(
        cls,
        images: Sequence[np.ndarray],
        degradation: Degradation,
        *,
        patch_size: int = 128,
        batch_size: int = 16,
        seed: int = 0,
        augment: bool = True,
        as_torch: bool = False,
    ) -> PatchSampler:
        if patch_size % degradation.size_multiple:
            raise UserError(
                f"Patch size {patch_size} is not a multiple of {degradation.size_multiple}, which "
                f"the {degradation.kind} degradation needs to keep the patch size. Use "
                f"{patch_size // degradation.size_multiple * degradation.size_multiple}."
            )
        sources = [(image,) for image in images]
        return cls(sources, degradation, patch_size, batch_size, seed, augment, as_torch)

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        margin = self._margin
        source = self._sources[rng.integers(len(self._sources))]
        images = random_crop(source, self.patch_size + 2 * margin, rng)
        if self._degradation is not None:
            images = degrade_pair(self._degradation, images[0], rng)
        if margin:  # degraded with the real scene around it; the patch is the centre
            images = tuple(image[margin:-margin, margin:-margin] for image in images)
        if self._augment:
            k = int(rng.integers(8))
            images = tuple(dihedral(image, k) for image in images)
        return images[0], images[1]

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
        """Batch number `index`, a pure function of (seed, index): a resumed run sees the same data."""
        rng = np.random.default_rng((self.seed, index))
        samples = [self._sample(rng) for _ in range(self.batch_size)]
        batch = tuple(
            np.ascontiguousarray(np.stack(side).transpose(0, 3, 1, 2), np.float32)
            for side in zip(*samples, strict=True)
        )
        if not self._as_torch:
            return batch
        import torch

        return tuple(torch.from_numpy(b) for b in batch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]]:
        index = 0
        while True:
            yield self.batch(index)
            index += 1
