"""Image files in, image files out: the one place where pixels enter and leave the toolkit.

Inside the toolkit an image is always a float32 array of shape HxWx3, RGB, values in
[0, 1] — the model's contract (DESIGN.md) and what the authors' scripts feed it
(OpenCV read, BGR->RGB, divided by the maximum code value). This module converts
every supported file to that form and back:

* 8- and 16-bit PNG and TIFF, 8-bit JPEG, WebP and BMP are read with OpenCV's
  IMREAD_UNCHANGED flag, so 16-bit files keep their precision (divided by 65535).
  Float32 TIFFs are accepted if their values already lie in [0, 1].
* Grayscale is replicated to three equal channels: the networks are RGB-only and a
  grey image is the RGB image whose channels are equal.
* Alpha is dropped: the colour channels are restored as stored and transparency is
  not part of the restoration problem (compositing onto a background would invent
  pixels the user never saw). A gray+alpha PNG becomes a grey RGB image.
* EXIF orientation is not applied; the array is the pixel grid stored in the file.

Reading fails safely: every failure (unreadable file, unknown format, corrupt or truncated data,
a decoder exception) is an ImageError naming the file. The size is decided before decoding: the
header's declared width x height is read first (tifffile for TIFF, whose float layouts Pillow does
not open; Pillow's lazy open, which parses only the header, for the others) and an image over
`max_pixels` is refused with its dimensions, so a decompression bomb (a few kB declaring tens of
thousands of pixels per side) never reaches the decoder and peak memory stays bounded.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.errors import ImageError

if TYPE_CHECKING:
    import torch

# File suffixes this module reads and writes; dataset readers list folders with it.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".webp", ".bmp")
#: A NumPy array H x W x C: the input of a model of other than 3 channels (dual-pixel views), which
#: no image format holds. Read by `read_input`, never written.
ARRAY_SUFFIX = ".npy"
# Formats that can hold 16 bits per channel.
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_JPEG_QUALITY = 95  # OpenCV's default, stated so that outputs do not depend on its version
#: The largest image read by default, in declared pixels (width x height): 8192x8192, twice 8K UHD.
#: Decoding costs up to about 40 bytes per pixel (the decoded codes, float32 RGB and a copy), so
#: about 2.5 GB at this limit; `mirnet infer --max-pixels` raises or lowers it.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Bytes per pixel of the largest uncompressed layout read (float32 RGBA TIFF): a file bigger than
#: this many bytes per allowed pixel cannot hold an allowed image, and is refused before it is read.
_MAX_BYTES_PER_PIXEL = 16
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_JPEG_MAGIC, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"  # start, scan, end markers


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: `pixels` is float32 HxWx3 RGB in [0, 1]; `bit_depth` is 8, 16 or 32
    (32 = a float file), so that a result can be written back at its source precision."""

    pixels: np.ndarray
    bit_depth: int


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file as float32 RGB in [0, 1]; every failure is an ImageError naming it.

    An image whose header declares more than `max_pixels` pixels is refused before decoding.
    """
    path = Path(path)
    data = _read_bounded(path, max_pixels)
    width, height = declared_size(data, path)
    if width * height > max_pixels:
        raise ImageError(
            f"Image {path} declares {width}x{height} pixels ({width * height:,}), more than the limit of "
            f"{max_pixels:,} pixels; it was not decoded. Pass a larger --max-pixels if the image is "
            "genuine (decoding needs up to 40 bytes per pixel), or downscale it."
        )
    _check_jpeg_complete(data, path)
    # imdecode on the bytes rather than imread on the path: the same decoder and flags, but a
    # missing file and an undecodable one give different messages, and non-ASCII paths work.
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"Cannot decode image {path}: OpenCV failed ({_last_line(exc)}). The file is "
                         "corrupt or truncated; re-export or replace it.") from None
    if decoded is None or decoded.size == 0:
        raise ImageError(
            f"Cannot decode image {path}: its header declares {width}x{height} pixels but OpenCV cannot "
            "decode its data (corrupt or truncated). Re-export or replace the file."
        )
    return LoadedImage(_to_rgb(_to_unit_float(decoded, path), path), _bit_depth(decoded))


def read_input(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """A model input file: an image (`read_image`, RGB) or a `.npy` array (`read_array`, any channels)."""
    reader = read_array if Path(path).suffix.lower() == ARRAY_SUFFIX else read_image
    return reader(path, max_pixels)


def read_array(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """A `.npy` array H x W x C as float32 in [0, 1], as the C++ runner reads one: uint8 codes / 255,
    uint16 / 65535 (bit depth 8 and 16), float32/float64 finite and within [0, 1] (bit depth 32).
    Its header's shape is checked against `max_pixels` before the data is read; pickled objects
    are never loaded. Every failure is an ImageError naming the file."""
    path = Path(path)
    save_hint = "Save an H x W x C array of uint8, uint16, float32 or float64 with numpy.save."
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
        array = np.load(path, mmap_mode="r", allow_pickle=False) if magic == _NPY_MAGIC else None
    except (OSError, ValueError, EOFError) as exc:  # unreadable, truncated, or of Python objects
        raise ImageError(f"Cannot read array {path}: {_last_line(exc).rstrip('.')}. {save_hint}") from None
    if array is None:
        raise ImageError(f"{path} is not a .npy file (no NumPy magic string at its start). {save_hint}")
    if array.ndim != 3 or array.size == 0:
        raise ImageError(f"Array {path} has shape {array.shape}; an H x W x C array with no empty dimension "
                         "is required (e.g. np.concatenate([left, right], axis=2) for dual-pixel views).")
    if array.dtype.newbyteorder("=").name not in ("uint8", "uint16", "float32", "float64"):
        raise ImageError(f"Array {path} holds {array.dtype} values. {save_hint}")
    height, width = array.shape[:2]
    if height * width > max_pixels:
        raise ImageError(f"Array {path} is {width}x{height} pixels ({width * height:,}), more than the limit "
                         f"of {max_pixels:,} pixels; it was not read. Pass a larger --max-pixels if it is "
                         "genuine.")
    decoded = np.array(array, dtype=array.dtype.newbyteorder("="))  # the data, in this machine's byte order
    return LoadedImage(_to_unit_float(decoded, path), _bit_depth(decoded))


def _read_bounded(path: Path, max_pixels: int) -> bytes:
    """The file's bytes, unless it cannot be read or is too large to hold an image within the limit."""
    try:
        size = path.stat().st_size
        if size > max_pixels * _MAX_BYTES_PER_PIXEL + (1 << 20):
            raise ImageError(
                f"Image {path} is {size:,} bytes, more than any image of at most {max_pixels:,} pixels "
                "needs; it was not read. Pass a larger --max-pixels if the image is genuine."
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(
            f"Cannot read image {path}: {exc.strerror or exc}. Check that the path exists and is "
            "a readable file."
        ) from None
    if not data:
        raise ImageError(f"Image {path} is empty (0 bytes). Re-export or replace the file.")
    return data


def declared_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) as the file's header declares it, read without decoding the pixels."""
    try:
        if data.startswith(_TIFF_MAGIC):
            with tifffile.TiffFile(io.BytesIO(data)) as tiff:
                page = tiff.pages.first
                return int(page.imagewidth), int(page.imagelength)
        with _pillow_header_only(), Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as exc:  # each format plugin raises its own types (SyntaxError, struct.error, ...)
        cause = ("no supported format recognises it, or its header is corrupt"
                 if isinstance(exc, UnidentifiedImageError) else _last_line(exc))
        raise ImageError(
            f"Cannot read image {path}: its {len(data):,} bytes do not start with a valid image header "
            f"({cause}). Supported formats: {', '.join(IMAGE_SUFFIXES)}. Re-export or replace the file."
        ) from None


def _check_jpeg_complete(data: bytes, path: Path) -> None:
    """Refuse a JPEG without an end-of-image marker after its first scan: libjpeg decodes a truncated
    JPEG with a warning and grey rows, and the restoration of that would be silently wrong."""
    if data.startswith(_JPEG_MAGIC) and data.rfind(_JPEG_END) < data.find(_JPEG_SCAN) + 2:
        raise ImageError(f"Image {path} is a truncated JPEG: its data ends before the end-of-image marker "
                         "(an interrupted download or copy). Re-export or replace the file.")


@contextlib.contextmanager
def _pillow_header_only() -> Iterator[None]:
    """Switch off Pillow's own decompression-bomb refusal while reading a header: its error does not
    carry the dimensions, and `read_image` applies its own, documented limit to them."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _last_line(exc: BaseException) -> str:
    """The informative line of a library's message (OpenCV's is the last of several)."""
    text = str(exc).strip()
    return (text.splitlines()[-1] if text else type(exc).__name__)[:200]


def _bit_depth(decoded: np.ndarray) -> int:
    return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(decoded.dtype, 32)


def _to_unit_float(decoded: np.ndarray, path: Path) -> np.ndarray:
    """Scale integer codes to [0, 1]; accept float files only if finite and already in [0, 1]."""
    if decoded.dtype == np.uint8:
        return decoded.astype(np.float32) / np.float32(255)
    if decoded.dtype == np.uint16:
        return decoded.astype(np.float32) / np.float32(65535)
    if decoded.dtype in (np.float32, np.float64):
        pixels = decoded.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise ImageError(
                f"Image {path} contains NaN or infinite values. The models need finite pixel "
                "values in [0, 1]; fix or re-export the file."
            )
        if pixels.min() < 0 or pixels.max() > 1:
            raise ImageError(
                f"Image {path} is a floating-point image with values in [{pixels.min():.4g}, "
                f"{pixels.max():.4g}], outside [0, 1]. The models expect display-referred values "
                "in [0, 1]; tone-map or rescale it and save it as 8- or 16-bit PNG."
            )
        return pixels
    raise ImageError(
        f"Image {path} has {decoded.dtype} samples, which this toolkit does not read. Convert it "
        "to 8- or 16-bit PNG or TIFF."
    )


def _to_rgb(pixels: np.ndarray, path: Path) -> np.ndarray:
    """OpenCV channel order to RGB: grey replicated, alpha dropped (see the module docstring)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if channels in (3, 4):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    raise ImageError(
        f"Image {path} has {channels} channels; only grey (1), grey+alpha, RGB (3) and RGBA (4) "
        "images are supported. Convert it to an RGB PNG."
    )


def check_rgb(array: np.ndarray, what: str) -> None:
    """Raise ImageError unless `array` is a finite float HxWx3 array (the toolkit's image form)."""
    check_planes(array, what, 3)


def check_planes(array: np.ndarray, what: str, channels: int | None) -> None:
    """Raise ImageError unless `array` is a finite float HxWxC array with C = `channels` (any C
    when None): an image, or a model input of other than 3 channels (dual-pixel views)."""
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(
            f"{what} has {array.dtype} values; float RGB in [0, 1] is required. Divide 8-bit "
            "codes by 255 (16-bit by 65535), or read files with read_image."
        )
    if array.ndim != 3 or channels not in (None, array.shape[2]) or min(array.shape[:2]) < 1:
        wanted = "an HxWx3 RGB array" if channels == 3 else f"an HxWx{channels or 'C'} array"
        raise ImageError(
            f"{what} has shape {array.shape}; {wanted} is required. Convert grey or "
            "RGBA data with read_image or by replicating/dropping channels."
        )
    if not np.isfinite(array).all():
        raise ImageError(
            f"{what} contains NaN or infinite values. Check the model output or the input data "
            "that produced it."
        )


def write_image(path: str | os.PathLike, pixels: np.ndarray, bit_depth: int = 8) -> None:
    """Write float RGB in [0, 1] as an 8- or 16-bit file, atomically; values are clipped to
    [0, 1] and rounded to the nearest code (not truncated). The format follows the suffix."""
    path = Path(path)
    check_rgb(pixels, f"The image to write to {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(
            f"Cannot write {path}: unknown image suffix {path.suffix!r}. Use one of "
            f"{', '.join(IMAGE_SUFFIXES)}."
        )
    if bit_depth not in (8, 16):
        raise ImageError(f"Cannot write {path}: bit_depth must be 8 or 16, not {bit_depth}.")
    if bit_depth == 16 and suffix not in _SIXTEEN_BIT_SUFFIXES:
        raise ImageError(
            f"Cannot write {path} with 16 bits per channel: {suffix} stores 8 bits. Use .png or "
            ".tiff for 16-bit output, or bit_depth=8."
        )
    max_code, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    codes = np.round(np.clip(pixels, 0.0, 1.0) * max_code).astype(dtype)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(codes[:, :, ::-1]), params)
    except cv2.error as exc:
        raise ImageError(f"OpenCV could not encode {path} as {suffix} ({_last_line(exc)}).") from None
    if not ok:
        raise ImageError(f"OpenCV could not encode {path} as {suffix}; try .png instead.")
    atomic_write_bytes(path, encoded.tobytes())


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """HxWxC float array -> 1xCxHxW float32 tensor (a batch of one, as the model takes it): an RGB
    image, or the 6 planes of dual-pixel views."""
    import torch  # here: reading and writing images needs no PyTorch

    check_planes(pixels, "The image to convert to a tensor", None)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), np.float32))[None]


def from_tensor(tensor: torch.Tensor, clamp: bool = True) -> np.ndarray:
    """1x3xHxW or 3xHxW tensor -> HxWx3 float32 array, clamped to [0, 1] by default as the
    authors' test scripts clamp the model output before saving or scoring it."""
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ImageError(
            f"A tensor of shape {tuple(tensor.shape)} is not one RGB image; expected 1x3xHxW or "
            "3xHxW. Split batches into single images first."
        )
    import torch

    tensor = tensor.detach().to("cpu", torch.float32)
    if clamp:
        tensor = tensor.clamp(0.0, 1.0)
    return np.ascontiguousarray(tensor.numpy().transpose(1, 2, 0))
