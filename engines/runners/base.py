"""One small interface for every backend: run a float32 NCHW batch, get the output back.

Runners describe their input and output (`TensorSpec`, -1 for dynamic dims), take
NumPy arrays or PyTorch tensors, and are context managers that free what they hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from mirnet_deploy.errors import UserError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # NumPy dtype name: "float32"
    shape: tuple[int, ...]  # -1 for a dynamic dimension


def to_numpy(x: Any) -> np.ndarray:
    """A PyTorch tensor (any device) or array-like as a NumPy array, without copying when possible."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class Runner(ABC):
    """A loaded model: `run(batch) -> output`, `input_spec`/`output_spec`, `close()`."""

    name: str
    input_spec: TensorSpec
    output_spec: TensorSpec
    closed: bool = False

    @abstractmethod
    def run(self, x: Any) -> Any:
        """Run one NCHW batch (float32 in [0, 1]) and return the NCHW output (a NumPy array)."""

    def close(self) -> None:
        """Free sessions, engines and buffers (subclasses extend this); the runner cannot run afterwards."""
        self.closed = True

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"runner {self.name} is closed")

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_batch(self, x: np.ndarray) -> np.ndarray:
        """`x` as a contiguous array of the input's dtype, or a UserError saying what shape was expected."""
        self.check_open()
        expected = self.input_spec.shape
        if x.ndim != len(expected) or any(e not in (-1, s) for e, s in zip(expected, x.shape, strict=True)):
            raise UserError(f"{self.name} takes {self.input_spec.name!r} of shape {expected} (-1 = any), "
                            f"got {x.shape}: pass an NCHW batch, e.g. image[None] for one CxHxW image.")
        return np.ascontiguousarray(x, dtype=self.input_spec.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.input_spec} -> {self.output_spec})"
