"""Calibration ranges collected one sample at a time, with ONNX Runtime's own calibrators.

Why not let `quantize_static` calibrate: its calibrator session keeps every observed tensor of
a sample alive until the end of the run. The augmented model hangs a ReduceMin/ReduceMax (or,
for histograms, a graph output) on each of them, and ONNX Runtime's default execution order
schedules those side branches late, so one 384x384 sample of the `small` denoiser peaked at
5.7 GB instead of the plain model's 0.6 GB, and `full` passed 20 GB. Priority-based execution
order runs each reduction as soon as its tensor exists and frees the tensor (0.7 GB).

MinMax is fed one sample per `collect_data` call and merges it with its own `merge_range`, which
gives exactly the one-shot ranges (a min of mins) while holding one sample's scalars. ONNX
Runtime's `CalibMaxIntermediateOutputs` is no substitute: it clears the collected outputs
without reducing them, silently dropping their ranges. A min of mins does not depend on the
order, so the samples are collected one per core at once (single-threaded passes of the
unoptimized augmented graph, whose thousands of small reductions a pass split over threads
mostly waits on), by copies of the one calibrator sharing its session, and their ranges merged
with the same `merge_range` — when a pass is small: the first sample's pass is measured
(`CONCURRENT_PASS_LIMIT_MIB`), and a big model's samples go one at a time, each on every core.

The histogram calibrators (entropy, percentile) are left to collect every sample in one call,
as `quantize_static` does, so their memory still grows with the set (whole tensors are their
graph outputs). Fed one sample per call they would merge running histograms, but ONNX
Runtime's merge is not chunk-invariant (up to a quarter of a range moved on the `small`
denoiser) and fails on a tensor that is constant within one sample ("Too many bins"). So they
warn: on a full-size model with the default set, they need the whole set's activations in
memory (tens of GB on `full`); minmax is the method for such models.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import (
    MinMaxCalibrater,
    TensorsData,
    create_calibrator,
    save_tensors_data,
)

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.cpus import usable_cpus
from mirnet_deploy.leftovers import scratch_folder


class _Feeds(CalibrationDataReader):
    """ONNX Runtime's calibration feed over an iterable of input dicts, consumed lazily."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


#: A second sample at once holds a second pass's activations: it runs only while the first sample's
#: pass raised the resident memory by at most this much. A first 384x384 pass raised it by 124 MiB
#: on the `small` denoiser, by 515 MiB on `full`, whose default-set quantization held 3.8 GB resident
#: with two samples at once against 2.8 GB one at a time (issue #16's limit: 4 GB).
CONCURRENT_PASS_LIMIT_MIB = 256


def collect_ranges(model_path: str | Path, feeds: Iterable[dict[str, np.ndarray]], *,
                   method: CalibrationMethod, op_types: list[str],
                   samples_at_once: int | None = None) -> TensorsData:
    """The ranges `quantize_static` would compute for `model_path` (same calibrator, same
    options: our targets set no Calib* option); minmax holds the statistics of `samples_at_once`
    samples at a time (default: one per usable core if a pass is small, `CONCURRENT_PASS_LIMIT_MIB`)."""
    at_once = samples_at_once or usable_cpus()
    streamed = method == CalibrationMethod.MinMax
    with scratch_folder("ranges") as scratch:
        augmented = scratch / "augmented.onnx"
        calibrator = create_calibrator(Path(model_path), op_types, augmented_model_path=str(augmented),
                                       calibrate_method=method)
        threads = 1 if streamed and at_once > 1 else None
        calibrator.infer_session = streaming_session(augmented, threads)
        if streamed:
            samples = iter(feeds)
            if samples_at_once is None and at_once > 1 and (first := next(samples, None)) is not None:
                grown = _memory_growth_mib(functools.partial(calibrator.collect_data, _Feeds([first])))
                if grown is None or grown > CONCURRENT_PASS_LIMIT_MIB:  # one at a time, on every core
                    at_once = 1
                    calibrator.infer_session = streaming_session(augmented)
            ranges = _streamed_min_max(calibrator, samples, at_once)
        else:
            warnings.warn(f"{method.name} calibration is not streamed: it keeps every observed tensor of "
                          "every sample in memory until all are collected (tens of GB for a full-size model "
                          "and the default set); minmax is streamed.", stacklevel=2)
            calibrator.collect_data(_Feeds(feeds))
            ranges = calibrator.compute_data()
        del calibrator
    return ranges


def _streamed_min_max(calibrator: MinMaxCalibrater, feeds: Iterable[dict[str, np.ndarray]],
                      at_once: int) -> TensorsData:
    """Each sample through its own `collect_data` call, `at_once` calls running together on copies of
    `calibrator` (its augmented model and session shared, its collected data their own); their ranges
    merged as `collect_data` merges a sample's into the running ones."""
    copies = [calibrator] + [copy.copy(calibrator) for _ in range(at_once - 1)]
    for worker in copies[1:]:
        worker.clear_collected_data()
        worker.calibrate_tensors_range = None
    samples, lock, stop = iter(feeds), threading.Lock(), threading.Event()

    def collect(worker: MinMaxCalibrater) -> TensorsData | None:
        while not stop.is_set():
            with lock:  # the feeds may be a generator reading samples from disk
                feed = next(samples, None)
            if feed is None:
                break
            worker.collect_data(_Feeds([feed]))
        return worker.calibrate_tensors_range

    if at_once == 1:
        collected = [collect(calibrator)]
    else:
        pool = ThreadPoolExecutor(at_once)  # ONNX Runtime releases the GIL in `run`
        try:
            collected = list(pool.map(collect, copies))
        finally:  # on an error or Ctrl-C the other workers stop after their current sample
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
    ranges = [each for each in collected if each is not None]
    return functools.reduce(calibrator.merge_range, ranges) if ranges else calibrator.compute_data()


def _memory_growth_mib(run: Callable[[], None]) -> float | None:
    """How far this process's resident memory rose above its level before `run`, while `run` ran
    (polled every 10 ms); None where /proc is not there to read."""
    baseline = peak = _resident_mib()
    if baseline is None:
        run()
        return None
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run)
        while not running.done():
            peak = max(peak, _resident_mib() or peak)
            time.sleep(0.01)
        running.result()
    return peak - baseline


def _resident_mib() -> float | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def streaming_session(augmented_path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """The calibrator's session (no graph optimization, as ONNX Runtime creates it), but with
    priority-based execution order, so each observed tensor is reduced and freed early."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(augmented_path), options, providers=["CPUExecutionProvider"])


def save_ranges(ranges: TensorsData, path: str | Path) -> None:
    """Write `ranges` to `path` in ONNX Runtime's calibration-cache format (what `quantize_static`'s
    `calibration_cache_path` reads), atomically and without leftovers.

    ONNX Runtime's `save_tensors_data` writes an untagged `.calibcache_*.tmp` beside its target, which
    a `kill -9` would leave in the cache folder for good; so it writes into a tagged scratch folder
    (removed by the next run once its writer is gone) and `atomic_write_bytes` publishes the file."""
    path = Path(path)
    with scratch_folder("ranges") as scratch:
        save_tensors_data(ranges, scratch / path.name)
        atomic_write_bytes(path, (scratch / path.name).read_bytes())
