"""Any Runner as a polygraphy runner, so the parity harness can use polygraphy's Comparator on it."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from .base import Runner


class PolygraphyRunner(BaseRunner):
    """Wraps a Runner; activation does not reopen or close it (its owner does that)."""

    def __init__(self, runner: Runner, name: str | None = None):
        super().__init__(name=name or runner.name, prefix="mirnet-runner")
        self.runner = runner

    def activate_impl(self) -> None:
        """Nothing to allocate: the wrapped runner is already loaded."""

    def get_input_metadata_impl(self) -> TensorMetadata:
        spec = self.runner.input_spec
        return TensorMetadata().add(spec.name, np.dtype(spec.dtype), spec.shape)

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        started = time.perf_counter()
        output = self.runner.run(feed_dict[self.runner.input_spec.name])
        self.inference_time = time.perf_counter() - started
        return OrderedDict([(self.runner.output_spec.name, output)])

    def deactivate_impl(self) -> None:
        """The wrapped runner stays open: Comparator.run activates and deactivates on every call."""


def as_polygraphy_runner(runner: Runner, name: str | None = None) -> PolygraphyRunner:
    return PolygraphyRunner(runner, name)
