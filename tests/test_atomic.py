"""Atomic writes: an interrupted write leaves the old file (or nothing), never a partial one."""

from __future__ import annotations

import pytest

from mirnet_deploy.atomic import atomic_open, atomic_write_bytes
from mirnet_deploy.resolutions import parse_resolution, parse_resolutions


def _write_then_fail(target, data: bytes, error: BaseException) -> None:
    with atomic_open(target) as handle:
        handle.write(data)
        raise error


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.engine"
    with pytest.raises(KeyboardInterrupt):
        _write_then_fail(target, b"partial", KeyboardInterrupt())
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_file(tmp_path):
    target = tmp_path / "model.engine"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="build failed"):
        _write_then_fail(target, b"new but incomplete", RuntimeError("build failed"))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine"]


def test_published_file_gets_the_usual_permissions(tmp_path):
    target = tmp_path / "weights.pth"
    atomic_write_bytes(target, b"x")
    reference = tmp_path / "plain"
    reference.write_bytes(b"x")
    assert target.stat().st_mode == reference.stat().st_mode


def test_resolutions():
    assert parse_resolution("1080p") == (1920, 1080)
    assert parse_resolution("4K") == (3840, 2160)
    assert parse_resolution("45x71") == (45, 71)
    assert parse_resolutions("256, 720p") == [(256, 256), (1280, 720)]
