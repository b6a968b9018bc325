"""`train_log.jsonl`: one JSON record a line, kept whole through `kill -9`.

A record is appended with one `os.write` of the whole line to a file opened with O_APPEND, and
synced to disk (records are written at validation, right after the checkpoints), so a killed
run leaves whole lines behind it. A torn last line can still come from a power cut, a full disk
or a log written by an earlier version (which wrote through Python's buffered file); the reader
then warns and skips it, and the next run that appends cuts it off first, so that a new record
never continues a torn one.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from mirnet_deploy.errors import UserError

LOG_NAME = "train_log.jsonl"


class TornLogWarning(UserWarning):
    """The log's last line was cut short (the run writing it was interrupted); it was skipped."""


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append `record` as one line in one write, then fsync; a torn last line is cut off first."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # read: the torn tail
    try:
        _cut_torn_tail(fd, Path(path))
        if os.write(fd, line) != len(line):  # a regular file takes it whole, or raises (ENOSPC)
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Truncate the file after its last newline when it does not end with one."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    cut, end = 0, size
    while end > 0:  # back from the end, 64 KiB at a time, to the last newline
        start = max(0, end - (1 << 16))
        chunk = os.pread(fd, end - start, start)
        if b"\n" in chunk:
            cut = start + chunk.rfind(b"\n") + 1
            break
        end = start
    warnings.warn(f"{path}: its last line was torn ({size - cut} bytes, an interrupted write); cut off "
                  "before appending.", TornLogWarning, stacklevel=3)
    os.ftruncate(fd, cut)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a log; a torn last line is skipped with a TornLogWarning, a damaged line
    elsewhere is a UserError naming it."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last whole line
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number == len(lines):
            warnings.warn(f"{path}: line {number} is torn (an interrupted write); read the "
                          f"{len(records)} whole records before it.", TornLogWarning, stacklevel=2)
        else:
            raise UserError(f"{path}: line {number} is not a JSON record; the log is damaged.")
    return records
