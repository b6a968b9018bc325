"""Cache folders (`mirnet cache`): entries with their sidecars, sizes, least-recently-used pruning, and no
pruning while a run uses the folder, also one that is then killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirnet_deploy.caches import entries, parse_age, parse_size, prune
from mirnet_deploy.cli import main
from mirnet_deploy.errors import UserError

DAY = 86400.0


def _file(path: Path, size: int, days_ago: float) -> Path:
    path.write_bytes(b"x" * size)
    when = time.time() - days_ago * DAY
    os.utime(path, (when, when))
    return path


@pytest.fixture
def cache(tmp_path) -> Path:
    """An engine with its manifest, a calibration set with its manifest, a chain step with its record,
    a ranges file; a lock and a live writer's temporary beside them (not entries)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    _file(folder / "m.int8-cpu.ort.onnx", 1000, days_ago=40)
    _file(folder / "m.int8-cpu.ort.onnx.json", 10, days_ago=1)  # read a day ago: the entry's last use
    _file(folder / "denoise-builtin-32x384.npz", 5000, days_ago=20)
    _file(folder / "denoise-builtin-32x384.json", 50, days_ago=20)
    _file(folder / "d.fp32.onnx", 300, days_ago=10)
    _file(folder / "d.fp32.onnx.step.json", 30, days_ago=10)
    _file(folder / "ranges-minmax-0123.json", 7, days_ago=50)
    _file(folder / ".d.fp32.onnx.lock", 0, days_ago=60)
    _file(folder / f".d.fp16.onnx.00000000-{os.getpid()}.abc.tmp", 99, days_ago=60)
    return folder


def test_entries_group_sidecars_and_sort_least_recently_used_first(cache):
    found = entries(cache)
    assert [(e.name, len(e.files), e.size) for e in found] == [
        ("ranges-minmax-0123.json", 1, 7), ("denoise-builtin-32x384.npz", 2, 5050),
        ("d.fp32.onnx", 2, 330), ("m.int8-cpu.ort.onnx", 2, 1010)]
    assert time.time() - found[-1].last_used == pytest.approx(DAY, abs=60)


def test_prune_by_age_then_size_removes_whole_entries_oldest_first(cache):
    assert [e.name for e in prune(cache, older_than=30 * DAY)] == ["ranges-minmax-0123.json"]
    removed = prune(cache, max_size=1400)  # 5050 + 330 + 1010 left: the calibration set must go
    assert [e.name for e in removed] == ["denoise-builtin-32x384.npz"]
    assert sorted(p.name for p in cache.iterdir()) == sorted([
        ".d.fp32.onnx.lock", f".d.fp16.onnx.00000000-{os.getpid()}.abc.tmp", ".in-use.lock",
        "d.fp32.onnx", "d.fp32.onnx.step.json", "m.int8-cpu.ort.onnx", "m.int8-cpu.ort.onnx.json"])
    assert [e.name for e in prune(cache, max_size=0, dry_run=True)] == ["d.fp32.onnx", "m.int8-cpu.ort.onnx"]
    assert len(entries(cache)) == 2  # a dry run removes nothing


def test_size_and_age_parsing():
    assert [parse_size(text) for text in ("2G", "1.5k", "500MiB", "0")] == [2 << 30, 1536, 500 << 20, 0]
    assert [parse_age(text) for text in ("30d", "90m", "2w")] == [30 * DAY, 5400, 14 * DAY]
    for bad in ("2 parsecs", "-1G", ""):
        with pytest.raises(UserError, match="Cannot read the size"):
            parse_size(bad)
    with pytest.raises(UserError, match="Say what to prune"):
        prune(Path("anywhere"))


_USER = """
import sys, time
from mirnet_deploy.caches import use_cache
use_cache(sys.argv[1])
print("using", flush=True)
time.sleep(600)
"""


def test_no_prune_while_a_run_uses_the_folder_and_none_blocked_by_a_killed_one(cache):
    user = subprocess.Popen([sys.executable, "-c", _USER, str(cache)], stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout.readline().strip() == "using"
        before = sorted(p.name for p in cache.iterdir())
        with pytest.raises(UserError, match=r"uses .*nothing was removed"):
            prune(cache, max_size=0)
        assert sorted(p.name for p in cache.iterdir()) == before
        user.send_signal(signal.SIGKILL)
        user.wait()
        assert len(prune(cache, max_size=0)) == 4  # the kernel dropped the killed run's lock
        assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []
    finally:
        user.kill()
        user.wait()


def test_killed_writers_temporaries_go_with_a_prune_and_live_ones_stay(cache):
    dead = subprocess.run([sys.executable, "-c", "from mirnet_deploy.leftovers import writer_tag; "
                           "print(writer_tag())"], capture_output=True, text=True, check=True).stdout.strip()
    host = dead.split("-")[0]
    (cache / f".m.onnx.{dead}.x1.tmp").write_bytes(b"partial")
    (cache / f".partial-{dead}-e.engine").write_bytes(b"partial")
    live = cache / f".m.onnx.{host}-{os.getppid()}.x2.tmp"
    live.write_bytes(b"being written")
    prune(cache, older_than=1000 * DAY)
    assert sorted(p.name for p in cache.iterdir() if ".tmp" in p.name or "partial" in p.name) == sorted(
        [live.name, f".d.fp16.onnx.00000000-{os.getpid()}.abc.tmp"])


def test_the_verb_lists_and_refuses_to_prune_without_a_criterion(cache, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["cache", "list", str(cache)])
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines()[1:]]
    assert rows == [[str(cache), "4", "6.2", "KiB", "ranges-minmax-0123.json", "(50.0", "d", "ago)"]]
    fresh = runner.invoke(main, ["cache", "list", "--artifacts", str(tmp_path)])  # no known cache made yet
    assert fresh.exit_code == 0, fresh.output
    assert [line.split()[1:] for line in fresh.output.splitlines()[1:]] == [["0", "0", "B", "-"]] * 6
    refused = runner.invoke(main, ["cache", "prune", str(cache)])
    assert refused.exit_code == 1
    assert "Say what to prune" in refused.output
    pruned = runner.invoke(main, ["cache", "prune", "--max-size", "2K", str(cache)])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output.splitlines()[-1] == f"{cache}: removed 2 entries, 4.9 KiB; 2 entries, 1.3 KiB left"


@pytest.mark.parametrize("verb", [["list"], ["prune", "--max-size", "0"], ["prune", "--older-than", "1d",
                                                                         "--dry-run"]])
@pytest.mark.parametrize("where", [["--artifacts", "{absent}"], ["{absent}"], ["{cache}", "{absent}"]])
def test_a_folder_that_does_not_exist_is_one_line_of_error_and_nothing_is_made(cache, tmp_path, verb, where):
    before = sorted(tmp_path.rglob("*"))
    absent = tmp_path / "artifcats"
    args = [arg.format(absent=absent, cache=cache) for arg in where]
    result = CliRunner().invoke(main, ["cache", *verb, *args])
    assert result.exit_code == 1, result.output
    kind = "--artifacts" if where[0] == "--artifacts" else "cache"
    (line,) = result.output.splitlines()
    assert line.startswith(f"Error: The {kind} folder {absent} does not exist: nothing was listed or removed")
    assert sorted(tmp_path.rglob("*")) == before  # nothing made, nothing removed (the cache's entries too)


def test_the_caches_users_mark_their_folders(tmp_path):
    """An engine look-up, a chain step and `mirnet-bench`'s artifacts each hold their folder: a prune of
    it (from this very process, through another descriptor) is refused and the file stays."""
    from test_manifest import REQUEST, fake_engine, load_manifest

    from bench.models import Artifacts, resolve_model
    from engines.cache import build_or_reuse
    from pipeline.chain import _cached_step

    engine = build_or_reuse(REQUEST, tmp_path / "engines", lambda path: load_manifest(fake_engine(path))).path
    def export(path: Path) -> dict:
        path.write_bytes(b"onnx")
        return {}

    step = _cached_step("export", tmp_path / "onnx" / "m.onnx", {}, export).path
    Artifacts(resolve_model("small"), tmp_path / "bench")
    for folder, kept in (("engines", engine), ("onnx", step), ("bench", None)):
        with pytest.raises(UserError, match="nothing was removed"):
            prune(tmp_path / folder, max_size=0)
        assert kept is None or kept.is_file()
