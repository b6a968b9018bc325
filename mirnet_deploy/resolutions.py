"""Named deployment resolutions (`720p`, `4k`, ...) and `WxH` strings, as (width, height)."""

from __future__ import annotations

import re

from .errors import UserError

NAMED_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "256": (256, 256),
    "512": (512, 512),
    "480p": (640, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}


def parse_resolution(text: str) -> tuple[int, int]:
    """`'1080p'` -> (1920, 1080); `'45x71'` -> (45, 71) as width x height; `'300'` -> (300, 300)."""
    key = text.strip().lower()
    if key in NAMED_RESOLUTIONS:
        return NAMED_RESOLUTIONS[key]
    # ASCII digits only: int() alone also takes "+5", "1_000" and other scripts' digits.
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", key, flags=re.ASCII)
    if match:
        width = int(match.group(1))
        height = int(match.group(2) or width)
    else:
        names = ", ".join(NAMED_RESOLUTIONS)
        raise UserError(
            f"Unknown resolution {text!r}: use one of {names}, a side length like 300, "
            "or WIDTHxHEIGHT like 1920x1080."
        ) from None
    if width < 1 or height < 1:
        raise UserError(f"Resolution {text!r} must be at least 1x1 pixels.")
    return width, height


def parse_resolutions(text: str) -> list[tuple[int, int]]:
    """A comma-separated list: `'256,720p,45x71'`."""
    return [parse_resolution(part) for part in text.split(",") if part.strip()]


def format_resolution(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
