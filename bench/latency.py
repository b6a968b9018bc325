"""The timing loop and its statistics: the first run apart, warm-up, then at least N runs and S seconds.

Published restoration runtimes mislead in three usual ways: warm-up counted into the average,
GPU work timed before it finished, and a single number with no spread. Here every run is timed
by the host clock around `Runner.run`, which returns only once the output is back in host memory
(every runner synchronizes before returning), so a sample is what a caller waits for. The first
run is reported alone (`first_ms`: lazy initialization, kernel selection, allocator growth), the
warm-up runs after it are not counted, and the steady state is summarized by percentiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall-clock milliseconds: the very first run, then one sample per steady-state run."""

    first_ms: float
    samples_ms: list[float]


def _timed_ms(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1e3


def time_runs(run: Callable[[], object], *, warmup: int, min_iters: int, min_seconds: float) -> Timing:
    """Time `run()`: once (first_ms), `warmup` more times untimed, then until both minimums are met."""
    if warmup < 0 or min_iters < 1 or min_seconds < 0:
        raise ValueError(f"time_runs needs warmup >= 0, min_iters >= 1, min_seconds >= 0; "
                         f"got {warmup}, {min_iters}, {min_seconds}")
    first_ms = _timed_ms(run)
    for _ in range(warmup):
        run()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_iters or time.perf_counter() - started < min_seconds:
        samples.append(_timed_ms(run))
    return Timing(first_ms, samples)


@dataclass(frozen=True)
class LatencyStats:
    """Steady-state latency in milliseconds. Percentiles interpolate linearly (NumPy's default);
    `std_ms` is the sample standard deviation (0 for a single sample)."""

    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float


def summarize(samples_ms: list[float]) -> LatencyStats:
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("summarize needs at least one sample")
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    std = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    return LatencyStats(int(samples.size), float(p50), float(p90), float(p99), float(samples.mean()), std,
                        float(samples.min()), float(samples.max()))


@dataclass(frozen=True)
class Throughput:
    """Rates over the steady state (batch / mean latency), and the share of the machine's peak."""

    images_per_s: float
    mp_per_s: float  # output megapixels per second
    gmacs_per_s: float | None  # None when the model's MAC count is unknown
    cpu_peak_fraction: float | None  # gmacs_per_s / the matrix-product peak; CPU runs only


def throughput(stats: LatencyStats, *, batch: int, output_pixels: int, gmacs: float | None,
               peak_gmacs_per_s: float | None) -> Throughput:
    """`output_pixels` per image; `gmacs` per run (the whole batch); `peak_gmacs_per_s` None off the CPU."""
    runs_per_s = 1e3 / stats.mean_ms
    achieved = gmacs * runs_per_s if gmacs is not None else None
    fraction = achieved / peak_gmacs_per_s if achieved is not None and peak_gmacs_per_s else None
    return Throughput(batch * runs_per_s, batch * output_pixels * runs_per_s / 1e6, achieved, fraction)
