"""Atomic file output: write to a temporary file in the same folder, fsync, rename.

An interrupted build or save therefore leaves either the old file or nothing,
never a truncated engine, checkpoint or report. The temporary file's name carries its writer's
tag (leftovers.py), so the next write of the same file removes one a killed writer left. A write
the file system refuses (full disk, quota, read-only or forbidden folder) is a UserError that
names the file and says so. `check_writable` asks the same question before a verb's work starts, so
an output that cannot be written costs no export, calibration or benchmark.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import UserError
from .leftovers import TAG_PATTERN, remove_stale, writer_tag

#: errno values that mean "this file system will not take the file", whatever the caller wrote.
_REFUSED_WRITES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
#: ... and those that mean its folder cannot be made (a missing mount, a file in the path: EEXIST from mkdir).
_NO_FOLDER = {errno.ENOENT, errno.ENOTDIR, errno.EEXIST}
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path`; on success it replaces `path`, on error it is removed."""
    if mode not in ("wb", "w"):
        raise ValueError("atomic_open writes whole files: mode must be 'wb' or 'w'")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent, re.escape(f".{target.name}.") + TAG_PATTERN + r"\.\w+\.tmp")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{writer_tag()}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as error:
        if error.errno in _REFUSED_WRITES | _NO_FOLDER:
            raise _refused(target, error) from None
        raise
    try:
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.errno in _REFUSED_WRITES:
            raise _refused(target, error) from None
        raise


def _refused(target: Path, error: OSError) -> UserError:
    return UserError(f"Cannot write {target}: {error.strerror}. Nothing was written there (a previous "
                     "file of that name is unchanged); free space or choose another folder, then rerun.")


def check_writable(path: str | os.PathLike, what: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output `path` (a file; a folder with `folder`) that cannot be written;
    `what` names it in the error (the option that gave it: "--output").

    It makes nothing: the folders a write would create are not created; the nearest existing one takes a
    tagged empty file, removed at once (what atomic_open would make there first), which asks the file
    system itself: permissions, a read-only mount, /proc. A full disk shows only when the write comes.
    """
    target = Path(path)
    kind = "folder" if folder else "file"
    reason = None
    if target.is_dir() and not folder:
        reason = "it is a folder (give the file's name)"
    elif target.exists() and not target.is_dir() and folder:
        reason = "it is a file, not a folder"
    else:
        existing = target if folder else target.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            reason = f"{existing} is a file, not a folder"
        else:
            reason = _probe(existing, target.name)
    if reason:
        raise UserError(f"Cannot write {what} {target}: {reason}. Nothing was done; choose a {kind} "
                        "path you can write to.")


def _probe(folder: Path, name: str) -> str | None:
    """Why `folder` takes no new file (the file system's words), or None where it does."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{name}.{writer_tag()}.", suffix=".tmp", dir=folder)
    except OSError as error:
        return f"{folder} takes no new file ({error.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)
