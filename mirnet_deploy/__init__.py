"""Glue shared by every stage: the `mirnet` CLI group, errors, atomic file writes, resolutions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mirnet-deploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
