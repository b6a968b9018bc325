"""Temporary files and folders of killed writers: named after their writer, removed once it is gone.

An atomic write (atomic.py), an engine build (engines/manifest.py) or a staged model version
(serving/triton_repo.py) writes to a temporary name first and renames it into place; `kill -9`
between the two leaves the temporary behind, as it leaves a scratch folder (`scratch_folder`:
exports, quantization) in the system's temporary folder. Each such name carries a writer tag, this host's
and the writing process's, so a later run can tell a dead writer's leftover (removed) from what
another run is writing right now (kept): only a tag of this host whose process no longer exists
is stale. A process id that an unrelated process has taken since keeps the leftover until that
process ends too, which errs on the safe side; a tag of another host (a shared network folder)
is never judged here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: A writer tag in a name: 8 hex digits of the host's name, '-', the process id.
TAG_PATTERN = r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)"


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def writer_tag() -> str:
    """This process's tag (computed per call: a forked child has its own process id)."""
    return f"{_host()}-{os.getpid()}"


def writer_is_gone(host: str, pid: int) -> bool:
    """Whether the writer a tag names has certainly ended: a process of this host that is not running."""
    if host != _host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, as another user
        return False
    return False


def remove_stale(folder: str | os.PathLike, name_pattern: str) -> list[Path]:
    """Remove the entries of `folder` whose whole name matches `name_pattern` (a regular expression
    holding TAG_PATTERN) and whose writer is gone; the paths removed."""
    pattern = re.compile(name_pattern)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or not writer_is_gone(match["host"], int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # removed by another run first, or not ours to remove: left as it is
            continue
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def scratch_folder(purpose: str) -> Iterator[Path]:
    """A temporary folder `mirnet-<purpose>.<tag>.<random>` in the system's temporary folder, removed
    afterwards; those a killed run of the same purpose left are removed first."""
    base = tempfile.gettempdir()
    remove_stale(base, re.escape(f"mirnet-{purpose}.") + TAG_PATTERN + r"\.\w+")
    with tempfile.TemporaryDirectory(prefix=f"mirnet-{purpose}.{writer_tag()}.", dir=base) as folder:
        yield Path(folder)
