"""Image files: exact 8/16-bit round trips, RGB order, grey and alpha handling, clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mirnet_deploy.errors import ImageError
from mirnet_ref.images import from_tensor, read_image, to_tensor, write_image


def random_codes(max_code: int, shape: tuple[int, ...] = (13, 17, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, max_code + 1, shape)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize(("bit_depth", "max_code"), [(8, 255), (16, 65535)])
def test_lossless_round_trip_is_exact(
    tmp_path: Path, suffix: str, bit_depth: int, max_code: int
) -> None:
    codes = random_codes(max_code)
    path = tmp_path / f"image{suffix}"
    write_image(path, (codes / max_code).astype(np.float32), bit_depth=bit_depth)

    on_disk = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert on_disk.dtype == (np.uint8 if bit_depth == 8 else np.uint16)
    loaded = read_image(path)
    assert loaded.bit_depth == bit_depth
    assert loaded.pixels.dtype == np.float32
    assert loaded.pixels.shape == codes.shape
    np.testing.assert_array_equal(np.round(loaded.pixels.astype(np.float64) * max_code), codes)


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_lossy_round_trip_is_close(tmp_path: Path, suffix: str) -> None:
    y, x = np.mgrid[0:64, 0:64] / 63.0
    smooth = np.stack([x, y, (x + y) / 2], axis=2).astype(np.float32)
    path = tmp_path / f"image{suffix}"
    write_image(path, smooth)
    loaded = read_image(path)
    assert loaded.bit_depth == 8
    assert np.abs(loaded.pixels - smooth).mean() < 0.01


def test_channels_are_rgb_in_memory_and_bgr_on_disk(tmp_path: Path) -> None:
    red = np.zeros((4, 5, 3), np.float32)
    red[..., 0] = 1.0
    write_image(tmp_path / "red.png", red)
    assert cv2.imread(str(tmp_path / "red.png"))[0, 0].tolist() == [0, 0, 255]  # OpenCV is BGR

    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    assert read_image(tmp_path / "blue.png").pixels[0, 0].tolist() == [0.0, 0.0, 1.0]


def test_write_rounds_to_nearest_code_and_clips(tmp_path: Path) -> None:
    pixels = np.array([[[0.4 / 255, 0.6 / 255, 254.5001 / 255], [-0.2, 1.3, 0.5]]], np.float32)
    write_image(tmp_path / "codes.png", pixels)
    codes = cv2.imread(str(tmp_path / "codes.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert codes.tolist() == [[[0, 1, 255], [0, 255, 128]]]


@pytest.mark.parametrize(
    ("dtype", "max_code", "bit_depth"), [(np.uint8, 255, 8), (np.uint16, 65535, 16)]
)
def test_grey_is_replicated_to_three_channels(
    tmp_path: Path, dtype: type, max_code: int, bit_depth: int
) -> None:
    grey = random_codes(max_code, (6, 7)).astype(dtype)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    loaded = read_image(tmp_path / "grey.png")
    assert loaded.bit_depth == bit_depth
    assert loaded.pixels.shape == (6, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., channel] * max_code, grey)


def test_grey_jpeg_is_replicated(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "grey.jpg"), np.full((8, 8), 100, np.uint8))
    pixels = read_image(tmp_path / "grey.jpg").pixels
    assert pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(pixels, 100 / 255, atol=2 / 255)


def test_alpha_is_dropped_keeping_the_stored_colours(tmp_path: Path) -> None:
    bgra = np.zeros((3, 4, 4), np.uint16)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 1000, 2000, 3000  # B, G, R
    bgra[..., 3] = [[0, 20000, 40000, 65535]] * 3  # transparent to opaque
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    loaded = read_image(tmp_path / "rgba.png")
    assert loaded.bit_depth == 16
    assert loaded.pixels.shape == (3, 4, 3)
    expected_rgb = np.broadcast_to([3000, 2000, 1000], (3, 4, 3))
    np.testing.assert_array_equal(loaded.pixels * 65535, expected_rgb)


def test_grey_plus_alpha_becomes_grey_rgb(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    grey_alpha = np.dstack([np.full((3, 4), 77, np.uint8), np.zeros((3, 4), np.uint8)])
    Image.fromarray(grey_alpha, "LA").save(buffer, "PNG")
    (tmp_path / "la.png").write_bytes(buffer.getvalue())
    pixels = read_image(tmp_path / "la.png").pixels
    np.testing.assert_array_equal(pixels * 255, np.full((3, 4, 3), 77))


def test_corrupt_file_is_an_image_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a PNG at all" * 10)
    with pytest.raises(ImageError, match=r"broken\.png"):
        read_image(path)


def test_truncated_and_missing_files_are_image_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "whole.png", np.full((32, 32, 3), 0.5, np.float32))
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:40])
    with pytest.raises(ImageError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match=r"missing\.png"):
        read_image(tmp_path / "missing.png")


def test_float_tiff_must_be_finite_and_in_range(tmp_path: Path) -> None:
    good = np.full((4, 4, 3), 0.25, np.float32)
    cv2.imwrite(str(tmp_path / "good.tif"), good)
    loaded = read_image(tmp_path / "good.tif")
    assert loaded.bit_depth == 32
    np.testing.assert_array_equal(loaded.pixels, good)

    nan = good.copy()
    nan[1, 1, 1] = np.nan
    cv2.imwrite(str(tmp_path / "nan.tif"), nan)
    with pytest.raises(ImageError, match=r"nan\.tif.*NaN"):
        read_image(tmp_path / "nan.tif")
    cv2.imwrite(str(tmp_path / "bright.tif"), good * 8)
    with pytest.raises(ImageError, match="outside"):
        read_image(tmp_path / "bright.tif")


@pytest.mark.parametrize(
    ("name", "pixels", "bit_depth", "match"),
    [
        ("deep.jpg", np.zeros((4, 4, 3), np.float32), 16, "16 bits"),
        ("image.gif", np.zeros((4, 4, 3), np.float32), 8, "suffix"),
        ("image.png", np.zeros((4, 4), np.float32), 8, "HxWx3"),
        ("image.png", np.full((4, 4, 3), np.nan, np.float32), 8, "NaN"),
        ("image.png", np.zeros((4, 4, 3), np.uint8), 8, "uint8"),
        ("image.png", np.zeros((4, 4, 3), np.float32), 12, "8 or 16"),
    ],
)
def test_bad_writes_are_image_errors(
    tmp_path: Path, name: str, pixels: np.ndarray, bit_depth: int, match: str
) -> None:
    with pytest.raises(ImageError, match=match):
        write_image(tmp_path / name, pixels, bit_depth=bit_depth)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_replaces_atomically_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "out" / "image.png"
    write_image(path, np.zeros((4, 4, 3), np.float32))
    write_image(path, np.ones((4, 4, 3), np.float32))
    assert [p.name for p in path.parent.iterdir()] == ["image.png"]
    assert read_image(path).pixels.min() == 1.0


def test_tensor_round_trip_and_clamp() -> None:
    pixels = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    tensor = to_tensor(pixels)
    assert tensor.shape == (1, 3, 5, 6)
    assert tensor.dtype == torch.float32
    assert tensor[0, 1, 2, 3].item() == pixels[2, 3, 1]
    np.testing.assert_array_equal(from_tensor(tensor), pixels)
    np.testing.assert_array_equal(from_tensor(tensor[0]), pixels)

    out_of_range = torch.tensor([-0.5, 0.5, 1.5]).reshape(1, 3, 1, 1)
    assert from_tensor(out_of_range).ravel().tolist() == [0.0, 0.5, 1.0]
    assert from_tensor(out_of_range, clamp=False).ravel().tolist() == [-0.5, 0.5, 1.5]
    with pytest.raises(ImageError, match="1x3xHxW"):
        from_tensor(torch.zeros(2, 3, 4, 4))
