"""Regenerate the PNG decoder fixtures in this folder (not run by the build or by CTest).

The fixtures are written by two independent encoders, pypng (every colour type and bit depth,
Adam7 interlacing) and OpenCV/libpng (each row filter type forced, and adaptive), so that
mirnet_core's decoder is checked against files it did not write. Pixel values follow a hash-like formula that
tests/test_png.cpp recomputes; `fixtures.txt` lists: file colour_type bit_depth width height
interlaced.

    python -m venv /tmp/v && /tmp/v/bin/pip install pypng opencv-python-headless numpy
    /tmp/v/bin/python engines/cpp/tests/data/make_png_fixtures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png  # pypng

HERE = Path(__file__).resolve().parent
M32 = 0xFFFFFFFF


def value(x: int, y: int, c: int, bits: int) -> int:
    """Must match fixture_value() in tests/test_png.cpp."""
    h = ((x + 1) * 2654435761 + (y + 1) * (c + 1) * 40503 + c * 97) & M32
    h ^= h >> 13
    h = (h * 2246822519) & M32
    h ^= h >> 16
    return h & ((1 << bits) - 1)


def palette_entry(i: int) -> tuple[int, int, int]:
    """Must match palette_entry() in tests/test_png.cpp."""
    return (i * 37) % 256, (i * 91 + 5) % 256, (255 - i * 13) % 256


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def rows(color_type: int, bits: int, width: int, height: int) -> list[list[int]]:
    n = CHANNELS[color_type]
    return [[value(x, y, c, bits) for x in range(width) for c in range(n)] for y in range(height)]


def write_pypng(name: str, color_type: int, bits: int, width: int, height: int, interlace: bool) -> str:
    kwargs = dict(width=width, height=height, bitdepth=bits, interlace=interlace)
    if color_type == 3:
        kwargs["palette"] = [palette_entry(i) for i in range(1 << bits)]
    else:
        kwargs["greyscale"] = color_type in (0, 4)
        kwargs["alpha"] = color_type in (4, 6)
    with open(HERE / name, "wb") as f:
        png.Writer(**kwargs).write(f, rows(color_type, bits, width, height))
    return f"{name} {color_type} {bits} {width} {height} {int(interlace)}"


def write_opencv(name: str, color_type: int, bits: int, width: int, height: int, row_filter: str) -> str:
    import cv2

    flag = getattr(cv2, f"IMWRITE_PNG_FILTER_{row_filter.upper()}", None) or cv2.IMWRITE_PNG_ALL_FILTERS
    dtype = np.uint8 if bits == 8 else np.uint16
    n = CHANNELS[color_type]
    a = np.array(rows(color_type, bits, width, height), dtype=dtype).reshape(height, width, n)
    if n == 3:
        a = a[:, :, ::-1]  # OpenCV stores BGR arrays as RGB files
    ok, data = cv2.imencode(".png", np.ascontiguousarray(a), [cv2.IMWRITE_PNG_FILTER, flag])
    assert ok
    (HERE / name).write_bytes(data.tobytes())
    return f"{name} {color_type} {bits} {width} {height} 0"


def main() -> None:
    lines = []
    for ct, depths in ((0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))):
        for bits in depths:
            lines.append(write_pypng(f"pypng_ct{ct}_{bits}.png", ct, bits, 13, 7, False))
    for ct, bits, w, h in (
        (0, 1, 13, 7),
        (0, 4, 13, 7),
        (2, 8, 13, 7),
        (2, 16, 13, 7),
        (3, 4, 13, 7),
        (6, 16, 13, 7),
        (2, 8, 1, 1),
        (2, 8, 3, 2),
        (0, 2, 9, 10),
    ):
        lines.append(write_pypng(f"pypng_ct{ct}_{bits}_adam7_{w}x{h}.png", ct, bits, w, h, True))
    # libpng with each row filter forced (NONE, SUB, UP, AVG, PAETH) and with its adaptive choice.
    for ct, bits in ((2, 8), (2, 16), (0, 8), (0, 16)):
        for row_filter in ("none", "sub", "up", "avg", "paeth", "all_filters"):
            lines.append(write_opencv(f"libpng_ct{ct}_{bits}_{row_filter}.png", ct, bits, 21, 9, row_filter))
    (HERE / "fixtures.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
