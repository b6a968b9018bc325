"""Cache folders: what they hold, how large they are, and pruning them least-recently-used first.

Every cached artifact is made once and reused (engines, ONNX steps, calibration sets and ranges,
`mirnet-bench`'s per-configuration files), so these folders only grow until a user prunes them.
`mirnet cache list` / `prune` (pipeline/cache_cli.py) work on the folders through this module; nothing
is ever removed unless asked.

An entry is a file of the folder with its sidecars: `E.json` / `E.step.json` (a manifest, a chain
step's record) beside `E`, or `X.json` beside `X.npz` (a calibration set's manifest). Hidden files
(locks, temporaries being written) and subfolders are not entries. An entry's last use is the latest
access or modification time of its files: Linux's default `relatime` mount option updates the access
time on the first read after a change and then at most once a day, so "least recently used" is
exact to a day (a `noatime` mount leaves the modification time alone: last made).

Concurrency: a run that reads or writes a cache folder calls `use_cache(folder)` first, which holds a
shared flock on `<folder>/.in-use.lock` until the process ends (the kernel drops it however the
process ends, `kill -9` included). `prune` takes that lock exclusively and does not wait: while any
such run lives it removes nothing and says so; a run that starts during a prune waits for it.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .leftovers import TAG_PATTERN, remove_stale

IN_USE_LOCK = ".in-use.lock"
#: Temporaries of writers (atomic.py, engines/manifest.py) that `prune` removes once their writer is gone.
_TEMPORARIES = (r"\..+\." + TAG_PATTERN + r"\.\w+\.tmp", r"\.partial-" + TAG_PATTERN + r"-.+")
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: folder -> the descriptor whose shared lock marks it as used by this process (held until exit).
_IN_USE: dict[Path, int] = {}


def use_cache(folder: str | os.PathLike) -> None:
    """Mark `folder` as used by this process until it ends, so that no prune removes what it reads."""
    folder = Path(folder).resolve()
    if folder in _IN_USE:
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / IN_USE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for `mirnet cache prune` on {folder} ...", file=sys.stderr, flush=True)
        fcntl.flock(descriptor, fcntl.LOCK_SH)
    _IN_USE[folder] = descriptor


@dataclass(frozen=True)
class Entry:
    """A cached file and its sidecars."""

    files: tuple[Path, ...]  # the main file first
    size: int  # bytes, all files
    last_used: float  # seconds since the epoch

    @property
    def name(self) -> str:
        return self.files[0].name


def _sidecar_of(name: str, mains: set[str]) -> str | None:
    """The main file `name` belongs to: `E` for `E.json`/`E.step.json`, `X.npz` for `X.json`."""
    if not name.endswith(".json"):
        return None
    for main in mains:
        if name.startswith(main + "."):
            return main
    stem = name.removesuffix(".json")
    return next((main for main in mains if not main.endswith(".json") and Path(main).stem == stem), None)


def entries(folder: str | os.PathLike) -> list[Entry]:
    """The folder's entries, least recently used first (none if the folder does not exist)."""
    try:
        files = {e.name: e.stat() for e in os.scandir(folder) if e.is_file(follow_symlinks=False)
                 and not e.name.startswith(".")}
    except FileNotFoundError:
        return []
    owner = {name: _sidecar_of(name, set(files) - {name}) or name for name in files}
    groups: dict[str, list[str]] = {name: [name] for name in files if owner[name] == name}
    for name in sorted(files):
        if owner[name] != name:
            groups.setdefault(owner[name], []).append(name)
    found = [Entry(tuple(Path(folder) / name for name in names), sum(files[n].st_size for n in names),
                   max(max(files[n].st_atime, files[n].st_mtime) for n in names))
             for names in groups.values()]
    return sorted(found, key=lambda entry: (entry.last_used, entry.name))


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5G`, `0` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise UserError(f"Cannot read the size {text!r}: write a number with K, M, G or T, e.g. 500M or 2G.")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `2w` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, flags=re.IGNORECASE)
    if not match:
        raise UserError(f"Cannot read the age {text!r}: write a number with s, m, h, d or w, e.g. 30d.")
    return float(match[1]) * _AGE_UNITS[match[2].lower()]


def choose_victims(found: list[Entry], *, older_than: float | None, max_size: int | None,
                   now: float) -> list[Entry]:
    """The entries to remove, least recently used first: those unused for longer than `older_than`
    seconds, then more until the rest take at most `max_size` bytes."""
    victims = [e for e in found if older_than is not None and now - e.last_used > older_than]
    remaining = sum(e.size for e in found) - sum(e.size for e in victims)
    for entry in found:
        if max_size is None or remaining <= max_size:
            break
        if entry not in victims:
            victims.append(entry)
            remaining -= entry.size
    return sorted(victims, key=lambda entry: (entry.last_used, entry.name))


def prune(folder: str | os.PathLike, *, older_than: float | None = None, max_size: int | None = None,
          dry_run: bool = False) -> list[Entry]:
    """Remove `choose_victims`' entries of `folder` (and temporaries whose writer is gone); the entries
    removed, or that would be with `dry_run`. Refused while a run uses the folder (`use_cache`)."""
    if older_than is None and max_size is None:
        raise UserError("Say what to prune: --older-than AGE (e.g. 30d), --max-size SIZE (e.g. 2G), or both.")
    folder = Path(folder)
    if dry_run or not folder.is_dir():
        return choose_victims(entries(folder), older_than=older_than, max_size=max_size, now=time.time())
    descriptor = os.open(folder / IN_USE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"A running process uses {folder} (a build, quantization, benchmark or server "
                            "of this toolkit): nothing was removed. Prune once it has ended.") from None
        for pattern in _TEMPORARIES:
            remove_stale(folder, pattern)
        victims = choose_victims(entries(folder), older_than=older_than, max_size=max_size, now=time.time())
        for entry in victims:
            for path in entry.files:  # the main file first: a sidecar left alone vouches for nothing
                path.unlink(missing_ok=True)
        return victims
    finally:
        os.close(descriptor)  # releases the lock
