"""File identities: the sha256 every cache and record keys on.

Here, not beside the checkpoint reader, so that the stages that only hash files (engine caches,
calibration sets, the chain's step records) do not import PyTorch for it.
"""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
