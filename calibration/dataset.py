"""Calibration sets: degraded crops at deployment-like sizes, streamed from an `.npz` with a JSON manifest.

INT8 ranges are only as good as the activations they were measured on. A denoiser
must be calibrated on *noisy* inputs (clean ones under-estimate the first layers'
ranges and the quantized model darkens or clips real photographs), so every sample
is the task's degradation applied to a seeded crop, and the manifest records which
degradation it was.

Layout: `set.npz` holds `input_00000, target_00000, input_00001, ...` (float32 HxWxC
in [0, 1], C = 3 or the degradation's `channels`, 6 for dual-pixel views; targets are the clean
HxWx3 crops, for PSNR budgets), written one entry at a
time and read back one entry at a time, so a large set never lives in memory.
`set.json` records the source files and their hashes, every crop, the degradation,
the seed and the sha256 of the `.npz`.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from mirnet_deploy import __version__
from mirnet_deploy.atomic import atomic_open, atomic_write_text
from mirnet_deploy.caches import use_cache
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256
from mirnet_deploy.locks import artifact_lock
from mirnet_ref.datasets import builtin_images, list_images
from mirnet_ref.degradations import make_degradation
from mirnet_ref.images import read_image

DEFAULT_COUNT = 32
MAX_COUNT = 1024  # about 800 MB at 256x256: past that, calibration time grows and ranges do not improve
#: Ranges measured on small crops miss the activations of large images (global attention): the
#: demo denoiser calibrated on 256 px crops lost twice as much PSNR at 512 px as at 256 px. 384 is
#: the largest square every built-in training photograph holds.
DEFAULT_CROP = 384
MANIFEST_FORMAT = 1
DEFAULT_SET_DIR = Path("artifacts") / "calibration"


@dataclass(frozen=True)
class Crop:
    source: str  # file name, or "builtin:<name>"
    top: int
    left: int
    size: int


@dataclass
class CalibrationManifest:
    task: str
    degradation: dict
    count: int
    crop: int
    seed: int
    sources: dict[str, str]  # source -> sha256 of the file ("builtin:<name>" -> of its pixels)
    crops: list[Crop]
    npz_sha256: str
    toolkit_version: str = __version__
    format: int = MANIFEST_FORMAT
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationManifest:
        data = dict(data)
        data["crops"] = [Crop(**crop) for crop in data["crops"]]
        return cls(**data)


def manifest_path(npz_path: str | os.PathLike) -> Path:
    """`set.npz` -> `set.json`."""
    return Path(npz_path).with_suffix(".json")


def _sources(images_dir: str | os.PathLike | None) -> list[tuple[str, str, np.ndarray]]:
    """(source name, sha256, clean float32 RGB) of every calibration source image."""
    if images_dir is None:
        import hashlib

        return [(f"builtin:{name}", hashlib.sha256(pixels.tobytes()).hexdigest(), pixels)
                for name, pixels in builtin_images("train")]
    files = list_images(images_dir)
    if not files:
        raise UserError(f"No images in {images_dir}: calibration needs a folder of clean photographs "
                        "like the ones the model will see (PNG, JPEG, TIFF, WebP).")
    return [(path.name, file_sha256(path), read_image(path).pixels) for path in files]


def build_calibration_set(task: str, output: str | os.PathLike, *,
                          images_dir: str | os.PathLike | None = None, count: int = DEFAULT_COUNT,
                          crop: int = DEFAULT_CROP, seed: int = 0,
                          progress: bool = False) -> CalibrationManifest:
    """Write `count` degraded `crop`x`crop` samples of `task` to `output` (.npz) and its manifest.

    Sample i crops source i mod n at a position drawn from the stream (seed, i) and degrades
    the crop with the same stream, so a set is reproducible and a sample does not change when
    `count` grows. Both files are written atomically.
    """
    if not 1 <= count <= MAX_COUNT:
        raise UserError(f"A calibration set takes 1 to {MAX_COUNT} samples, not {count}.")
    degradation = make_degradation(task)
    if crop % degradation.size_multiple:
        raise UserError(f"--crop {crop} must be a multiple of {degradation.size_multiple} for {task}.")
    sources = _sources(images_dir)
    small = [name for name, _, pixels in sources if min(pixels.shape[:2]) < crop]
    if small:
        raise UserError(f"Images smaller than the {crop}x{crop} crop: {', '.join(small)}. Pass a smaller "
                        "--crop or larger images (crops should be at least as large as the model's "
                        "receptive field, ideally deployment-sized).")
    output = Path(output)
    manifest_path(output).unlink(missing_ok=True)  # an old manifest must never vouch for a new set
    crops = []
    with atomic_open(output) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for index in tqdm(range(count), desc="calibration set", unit="crop", disable=not progress):
            name, _, pixels = sources[index % len(sources)]
            rng = np.random.default_rng((seed, index))
            top = int(rng.integers(pixels.shape[0] - crop + 1))
            left = int(rng.integers(pixels.shape[1] - crop + 1))
            clean = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
            degraded = degradation.apply(clean, rng)
            for key, array in ((f"input_{index:05d}", degraded), (f"target_{index:05d}", clean)):
                with archive.open(f"{key}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.ascontiguousarray(array, dtype=np.float32))
            crops.append(Crop(name, top, left, crop))
    manifest = CalibrationManifest(
        task=task, degradation=degradation.describe(), count=count, crop=crop, seed=seed,
        sources={name: digest for name, digest, _ in sources}, crops=crops, npz_sha256=file_sha256(output))
    atomic_write_text(manifest_path(output), manifest.to_json())
    return manifest


REBUILD = "Rebuild the set with `mirnet calibrate` (or delete it: the default set is rebuilt on use)."


def read_manifest(path: Path) -> CalibrationManifest:
    """A set's JSON manifest, or a UserError naming it when it is unreadable or edited out of shape."""
    try:
        return CalibrationManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
        raise UserError(f"The calibration manifest {path} cannot be read ({type(error).__name__}: {error}). "
                        f"{REBUILD}") from None


class CalibrationSet:
    """A calibration set on disk: its manifest, and its samples loaded one at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"No calibration set at {self.path}: make one with "
                            "`mirnet calibrate --task TASK --output set.npz`.")
        meta = manifest_path(self.path)
        if not meta.is_file():
            raise UserError(f"{self.path} has no manifest {meta}: it was not made by `mirnet calibrate` "
                            "or the manifest was removed; rebuild the set.")
        self.manifest = read_manifest(meta)
        try:
            self._archive = np.load(self.path)  # lazy: members are read when indexed; never unpickles
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(f"Calibration set {self.path} cannot be read ({error}): it is truncated or not "
                            f"an .npz made by `mirnet calibrate`. {REBUILD}") from None
        if not isinstance(self._archive, np.lib.npyio.NpzFile):
            raise UserError(f"Calibration set {self.path} is a single .npy array, not an .npz archive of "
                            f"samples. {REBUILD}")
        missing = [i for i in range(self.manifest.count) if f"input_{i:05d}" not in self._archive.files]
        if missing:
            raise UserError(f"{self.path} does not match its manifest: samples {missing[:5]} are missing. "
                            f"{REBUILD}")

    @property
    def sha256(self) -> str:
        return self.manifest.npz_sha256

    def __len__(self) -> int:
        return self.manifest.count

    @property
    def input_channels(self) -> int:
        """Channels of the inputs: the degradation's (its manifest entry says when not 3)."""
        return int(self.manifest.degradation.get("channels", 3))

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(degraded input, clean target) of sample `index`, float32 HxWxC and HxWx3."""
        try:
            pair = self._archive[f"input_{index:05d}"], self._archive[f"target_{index:05d}"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise UserError(f"Sample {index} of calibration set {self.path} cannot be read ({error}): the "
                            f"file is damaged. {REBUILD}") from None
        channels = (self.input_channels, 3)
        if any(array.ndim != 3 or array.shape[2] != c or not np.isfinite(array).all()
               for array, c in zip(pair, channels, strict=True)):
            raise UserError(f"Sample {index} of calibration set {self.path} is not a finite HxWx"
                            f"{self.input_channels} input with an HxWx3 target. {REBUILD}")
        return pair

    def inputs(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """Model inputs as 1xCxHxW float32 batches, one sample in memory at a time."""
        for index in range(min(len(self), limit or len(self))):
            yield np.ascontiguousarray(self.sample(index)[0].transpose(2, 0, 1)[None])

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> CalibrationSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def default_calibration_set(task: str, folder: Path = DEFAULT_SET_DIR) -> Path:
    """The task's default set (built-in images, default count and crop, seed 0), built once and reused."""
    use_cache(folder)
    path = folder / f"{task}-builtin-{DEFAULT_COUNT}x{DEFAULT_CROP}.npz"
    with artifact_lock(path):  # concurrent builds make it once
        if path.is_file() and manifest_path(path).is_file():
            with contextlib.suppress(UserError):  # a damaged manifest: build the set again
                manifest = read_manifest(manifest_path(path))
                if (manifest.task, manifest.count, manifest.crop) == (task, DEFAULT_COUNT, DEFAULT_CROP):
                    return path
        click.echo(f"Building the default {task} calibration set {path} ...", err=True)
        build_calibration_set(task, path, progress=True)
    return path
