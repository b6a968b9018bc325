"""One writer per artifact: concurrent runs on the same cache build each artifact once.

A run takes the lock of an artifact before it checks whether the artifact is already there, so
of two runs started together one builds it and the other waits, then finds it and reuses it.
`filelock.FileLock` takes an flock(2) lock on `.<artifact>.lock` beside the artifact; the kernel
drops that lock when its holder exits however it exits, so the lock file a `kill -9`-ed run
leaves behind is no lock at all and the next run takes it at once (stale-lock recovery without
timeouts or PID files).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout


def lock_path(artifact: str | os.PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(f".{artifact.name}.lock")


@contextlib.contextmanager
def artifact_lock(artifact: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of `artifact` (its folder is created); say so on stderr when another run has it."""
    path = lock_path(artifact)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another run that is making {Path(artifact).name} ...", file=sys.stderr,
              flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
