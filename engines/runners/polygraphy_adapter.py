"""Any Runner as a polygraphy runner, so the parity harness can use polygraphy's Comparator on it."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from .base import Runner


class PolygraphyRunner(BaseRunner):
    """Wraps a Runner; activation does not reopen or close it (its owner does that).

    With `remember_outputs`, an input seen before (same shape, type and bytes) gets the output computed
    then: a reference that several artifacts are compared against runs once per input.
    """

    def __init__(self, runner: Runner, name: str | None = None, *, remember_outputs: bool = False):
        super().__init__(name=name or runner.name, prefix="mirnet-runner")
        self.runner = runner
        self.remembered: dict[tuple, np.ndarray] | None = {} if remember_outputs else None

    def activate_impl(self) -> None:
        """Nothing to allocate: the wrapped runner is already loaded."""

    def get_input_metadata_impl(self) -> TensorMetadata:
        spec = self.runner.input_spec
        return TensorMetadata().add(spec.name, np.dtype(spec.dtype), spec.shape)

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        started = time.perf_counter()
        batch = feed_dict[self.runner.input_spec.name]
        if self.remembered is None:
            output = self.runner.run(batch)
        else:
            output = self._remembered_output(np.ascontiguousarray(batch))
        self.inference_time = time.perf_counter() - started
        return OrderedDict([(self.runner.output_spec.name, output)])

    def _remembered_output(self, batch: np.ndarray) -> np.ndarray:
        key = (batch.shape, batch.dtype.str, hashlib.sha256(batch.data).digest())
        if key not in self.remembered:
            output = np.asarray(self.runner.run(batch))
            output.flags.writeable = False  # shared by every comparison against this input
            self.remembered[key] = output
        return self.remembered[key]

    def deactivate_impl(self) -> None:
        """The wrapped runner stays open: Comparator.run activates and deactivates on every call."""


def as_polygraphy_runner(runner: Runner, name: str | None = None, *,
                         remember_outputs: bool = False) -> PolygraphyRunner:
    return PolygraphyRunner(runner, name, remember_outputs=remember_outputs)
