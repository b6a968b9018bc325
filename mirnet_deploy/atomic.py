"""Atomic file output: write to a temporary file in the same folder, fsync, rename.

An interrupted build or save therefore leaves either the old file or nothing,
never a truncated engine, checkpoint or report. The temporary file's name carries its writer's
tag (leftovers.py), so the next write of the same file removes one a killed writer left. A write
the file system refuses (full disk, quota, read-only or forbidden folder) is a UserError that
names the file and says so.
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)
