"""Atomic writes: an interrupted write leaves the old file (or nothing), never a partial one; what a killed
writer leaves is removed by the next write."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_layering import REPO, stage_modules

from mirnet_deploy.atomic import atomic_open, atomic_write_bytes, check_writable
from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import scratch_folder
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


def test_a_folder_that_cannot_be_made_is_an_error_naming_the_target_not_its_temporary(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=re.escape(f"Cannot write {blocker / 'x.onnx'}: ")):
        atomic_write_bytes(blocker / "x.onnx", b"data")
    assert blocker.read_text() == "not a folder"


def test_check_writable_refuses_what_the_file_system_will_not_take_and_makes_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    folder = tmp_path / "folder"
    folder.mkdir()
    refused = {  # (path, a folder?) -> the reason the error gives
        (Path("/proc/x.onnx"), False): "/proc takes no new file (No such file or directory)",  # no new files
        (Path("/proc/new/x.onnx"), False): "/proc takes no new file (No such file or directory)",
        (blocker / "deeper" / "x.onnx", False): f"{blocker} is a file, not a folder",
        (folder, False): "it is a folder (give the file's name)",
        (blocker, True): "it is a file, not a folder",
    }
    for (path, is_folder), reason in refused.items():
        with pytest.raises(UserError) as caught:
            check_writable(path, "--output", folder=is_folder)
        kind = "folder" if is_folder else "file"
        assert str(caught.value) == (f"Cannot write --output {path}: {reason}. Nothing was done; choose a "
                                     f"{kind} path you can write to.")
    check_writable(tmp_path / "new" / "deeper" / "x.onnx", "--output")  # its folders are made by the write
    check_writable(tmp_path / "new-folder", "--cache-dir", folder=True)
    check_writable(folder / "x.onnx", "--output")
    check_writable(blocker, "--output")  # an existing file is replaced atomically
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a_file", "folder"]  # nothing made, no probe left
    assert blocker.read_text() == "not a folder"


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


# A writer killed mid-write (kill -9) leaves its temporary behind; the next write removes it, and only it.
_WRITER = """
import sys, time
from mirnet_deploy.atomic import atomic_open
from mirnet_deploy.leftovers import scratch_folder
with atomic_open(sys.argv[1]) as handle, scratch_folder("test-leftovers"):
    handle.write(b"partial")
    handle.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


def _writer(target: Path, tmp: Path) -> subprocess.Popen:
    """A process inside an atomic write of `target` and a scratch folder (in `tmp`), once it says so."""
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "TMPDIR": str(tmp)})
    assert process.stdout.readline().strip() == "writing"
    return process


def test_a_killed_writers_temporaries_are_removed_by_the_next_run_and_a_live_ones_kept(tmp_path, monkeypatch):
    target, scratch = tmp_path / "out" / "model.engine", tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    killed, live = _writer(target, scratch), _writer(target, scratch)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        temporaries = sorted(p.name for p in target.parent.iterdir())
        folders = sorted(p.name for p in scratch.iterdir())
        assert len(temporaries) == len(folders) == 2  # what each writer has open
        assert all(f"-{killed.pid}." in name or f"-{live.pid}." in name for name in temporaries + folders)

        atomic_write_bytes(target, b"whole")  # the next run
        with scratch_folder("test-leftovers"):
            assert [p.name for p in scratch.iterdir() if f"-{killed.pid}." in p.name] == []
        assert target.read_bytes() == b"whole"
        left = sorted(p.name for p in target.parent.iterdir())
        assert left == sorted(["model.engine", *(n for n in temporaries if f"-{live.pid}." in n)])
        assert [p.name for p in scratch.iterdir()] == [n for n in folders if f"-{live.pid}." in n]
    finally:
        for process in (killed, live):
            process.kill()
            process.wait()


# Every temporary the stages make carries a writer tag, so a killed run's is found and removed: the
# stages make them only through leftovers.scratch_folder and atomic.atomic_open, never tempfile directly.
_TAGGED_MAKERS = {"mirnet_deploy/leftovers.py", "mirnet_deploy/atomic.py"}
_UNTAGGED = re.compile(r"\b(TemporaryDirectory|mkdtemp|mkstemp|NamedTemporaryFile|TemporaryFile)\b")


def test_stages_make_temporaries_only_through_the_tagged_makers():
    untagged = [f"{path.relative_to(REPO)}:{number}" for _, path in stage_modules()
                if str(path.relative_to(REPO)) not in _TAGGED_MAKERS
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if _UNTAGGED.search(line)]
    assert untagged == []
