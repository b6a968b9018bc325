"""Errors a user can act on. The CLI prints them as one paragraph and exits non-zero."""


class UserError(Exception):
    """Bad input or a missing backend: the message says what failed, why, and what to do."""


class CheckpointError(UserError):
    """A file that is not a loadable MIRNet checkpoint, or that contradicts explicit arguments."""


class ImageError(UserError):
    """An image that cannot be read or does not fit (channels, bit depth, size, NaN)."""
