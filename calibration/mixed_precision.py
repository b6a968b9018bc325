"""PSNR-budget mixed precision: keep the most quantization-sensitive layers in high precision.

Restoration networks lose quality in a few layers (the first convolutions, attention
projections), not everywhere, so quantizing all but those is nearly as fast as full INT8
and nearly as exact as FP32. The search:

1. quantize everything and measure the task PSNR drop against the FP32 model, on the
   calibration set's own (input, clean target) pairs; within budget x `SEARCH_MARGIN` -> done;
2. otherwise rank the quantized layers (a weight shared by several convolutions counts as
   one layer; the cpu target's quantized element-wise ops are layers too) by the error they
   cause alone on a small crop, hierarchically (`layer_groups.py`): whole blocks of the graph
   first, then only inside the blocks with the most error, best first, within a probe budget
   that grows as sqrt(layers). The ranking is a list of units: single layers at its head,
   then the blocks left unopened, each kept or quantized as a whole. One ONNX Runtime session
   over the INT8 graph with a run-time switch per layer (`switchable.py`) answers every probe,
   so a probe costs one forward pass of a small crop, not a graph copy and a session;
3. predict how many of the most sensitive units to keep: the same session measures the output
   error with the top k kept in float, and the error that remains, scaled to the measured drop
   of step 1, predicts the drop; a bisection over k on that prediction costs log2(units) runs;
4. verify the prediction for real: quantize with those layers excluded (cached ranges) and
   measure the drop as in step 1. If it misses the budget, the miss corrects the prediction
   and a larger k is verified, until one passes; the blocks between the last miss and that pass
   are then opened (probed part by part), and a few more real evaluations narrow the gap
   (secant, bisection), so a block can be kept in part. These bracketing evaluations run on
   the evaluation samples' centre crops (`SCREEN_CROP`, a quarter of the pixels at 384x384):
   a real quantized model each, on less of the images;
5. the count they settle on is evaluated on the full samples, as in step 1. If it misses there,
   step 4 runs again on the full samples. The result is always a measured one on the full
   samples, and the model written is the verified candidate itself (not quantized again).

If the search ends with every layer kept, the model has no INT8 layer left: the report says so
in `warnings` (a float model under an INT8 name), and `mirnet quantize` prints it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

from export.onnx_read import load_onnx
from mirnet_deploy.atomic import atomic_open, atomic_write_bytes
from mirnet_deploy.cpus import usable_cpus
from mirnet_deploy.leftovers import scratch_folder
from mirnet_ref.metrics import psnr

from .dataset import CalibrationSet
from .layer_groups import RankedUnit, layer_tree, open_best_first, probe_budget, rank_best_first
from .ort_cpu import cpu_session
from .quantize import (
    DEFAULT_CACHE_DIR,
    DEFAULT_OP_TYPES,
    WEIGHTED_OPS,
    QuantizeReport,
    check_quantizable,
    default_subpixel,
    prepare,
    quantize_onnx,
)
from .switchable import SWITCHES, switchable_quantization, switches

T, R = TypeVar("T"), TypeVar("R")

DEFAULT_BUDGET_DB = 0.1
#: The search meets budget x margin on the calibration samples: unseen photographs lost up to
#: 1.6x more than the calibration samples did (demo models, held-out built-in images), and the
#: budget is a promise about the images the model will see, not about the calibration set.
SEARCH_MARGIN = 0.5
DEFAULT_EVAL_SAMPLES = 8
#: The ranking runs many forward passes, so it looks at less: centre crops of a few samples.
RANKING_SAMPLES, RANKING_CROP = 1, 64
#: ... on one thread per probe: a probe of a 64x64 crop through the switchable graph (thousands of
#: small nodes) is mostly per-node overhead, which a second thread only spin-waits on. Denoise demo,
#: 30 probes, load 6: 0.163 CPU-s (0.25 s) per probe on one thread against 0.287 CPU-s (0.45 s) on
#: two, and bit-identical errors (ONNX Runtime's CPU kernels do not split a sum across threads), so
#: the ranking is the same. The cores are used instead by running a round's probes (the parts of one
#: group) concurrently, one per core (`_LayerProbe.errors`): ONNX Runtime releases the GIL in `run`.
RANKING_THREADS = 1
#: The ranking's probes may cost at most this many real evaluations, counted in pixels: they only
#: steer the real evaluations. It binds on a big model with a small evaluation set (`full` with 8
#: crops of 128x128: 32 probes of 64x64), not on the demo models' default set (288 per evaluation).
RANKING_COST_IN_EVALUATIONS = 1.0
#: The bracketing evaluations (step 4) run on centre crops of this size of the evaluation samples;
#: only the all-INT8 model and the count they settle on are evaluated on the full samples. Denoise
#: demo (8 crops of 384x384): each bracketing evaluation's forward passes cost a quarter.
SCREEN_CROP = 192
#: Real evaluations (a quantization and an evaluation each) that narrow the layer count down once
#: one has passed: each keeps fewer layers in float (a faster INT8 model) for a measured cost.
REFINEMENTS = 3
#: ... but only while the gap between the last miss and the first pass is more than this share of
#: all nodes: on `full` two refinements (a quantization and an evaluation each, ~75 CPU-s) were
#: spent to keep 1 node of 880 in float instead of 2.
REFINE_MIN_GAIN = 0.01


@dataclass
class Evaluation:
    task_psnr_db: float  # mean PSNR of the clamped output against the clean targets
    drop_db: float  # mean of each sample's drop against FP32, a gain counting up to a cap: `_capped_drop`
    psnr_vs_fp32_db: float  # worst sample


@dataclass
class MixedPrecisionReport:
    budget_db: float
    fp32_task_psnr_db: float
    full_int8: Evaluation | None  # None: not measured, the `try_first` layers passed first
    final: Evaluation
    kept_high_precision: list[str]  # most sensitive first
    #: (unit, PSNR vs FP32 when only it is quantized), in ranking order: single layers first (a
    #: layer is the set of nodes sharing one weight: MIRNet runs some modules twice, and a weight
    #: is INT8 or not, as a whole), then the blocks the ranking left unopened.
    sensitivity: list[tuple[list[str], float]]
    candidates_tried: list[tuple[int, float]]  # (nodes kept, drop dB); -1: the `try_first` nodes
    #: (nodes kept, drop dB on the `SCREEN_CROP` centre crops): the bracketing evaluations; the
    #: result's drop on the full samples is in `candidates_tried`
    screened: list[tuple[int, float]]
    quantize: QuantizeReport
    #: CPU seconds of this process (ONNX Runtime's threads included) per part of the search:
    #: where its time goes, whatever else loads the machine.
    cpu_seconds: dict[str, float]
    layer_count: int = 0  # layers the search chose among (0: no search ran)
    ranking_probes: int = 0  # forward passes of the ranking crop spent on the ranking
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Stopwatch:
    """CPU seconds of this process, summed per named part (`with stopwatch("part"): ...`)."""

    def __init__(self) -> None:
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.cpu_seconds[part] = self.cpu_seconds.get(part, 0.0) + time.process_time() - start


class _Evaluator:
    """Runs ONNX models on the evaluation pairs and scores them against FP32 and the clean targets."""

    def __init__(self, calibration: CalibrationSet, samples: int, threads: int | None,
                 crop: int | None = None, samples_at_once: int = 1, gain_cap_db: float = 0.0) -> None:
        count = min(samples, len(calibration))
        pairs = [_center_crop(calibration.sample(i), crop) for i in range(count)]
        self.inputs = [np.ascontiguousarray(x.transpose(2, 0, 1)[None]) for x, _ in pairs]
        self.targets = [t for _, t in pairs]
        self.threads = threads  # each session's intra-op threads
        self.samples_at_once = samples_at_once  # forward passes in flight on one session
        self.gain_cap_db = gain_cap_db  # the most a sample's gain over FP32 counts (`_capped_drop`)
        self.reference: list[np.ndarray] = []
        self.reference_psnrs: list[float] = []
        self.reference_psnr = 0.0
        self.pixels = sum(x.shape[2] * x.shape[3] for x in self.inputs)  # a forward pass's work
        self._inputs_key = json.dumps([calibration.sha256, count, crop])

    def session(self, model: onnx.ModelProto | str | os.PathLike) -> ort.InferenceSession:
        """A session computing `model` as its target does (tensorrt target: Q/DQ unfused, `ort_cpu`)."""
        return cpu_session(model, self.threads)

    def outputs(self, model: onnx.ModelProto | str | os.PathLike | ort.InferenceSession,
                feeds: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The clamped HWC outputs on every evaluation input; `feeds` adds inputs besides the image."""
        session = model if isinstance(model, ort.InferenceSession) else self.session(model)
        name = session.get_inputs()[0].name

        def output(x: np.ndarray) -> np.ndarray:
            return np.clip(session.run(None, {name: x, **(feeds or {})})[0][0].transpose(1, 2, 0), 0, 1)

        return _concurrently(output, self.inputs, self.samples_at_once)

    def set_reference(self, model: onnx.ModelProto, cache_dir: Path | None = None) -> None:
        """The FP32 outputs every evaluation is scored against. With `cache_dir` they are kept there,
        keyed by the graph and the inputs: the `cpu-symmetric` twin's search, run right after the `cpu`
        target's on the same prepared graph, then reads them instead of computing them again."""
        path = None
        if cache_dir is not None:
            digest = hashlib.sha256(model.graph.SerializeToString())
            digest.update(self._inputs_key.encode())
            path = Path(cache_dir) / f"fp32-outputs-{digest.hexdigest()[:16]}.npz"
        self.reference = _read_outputs(path, len(self.inputs)) if path else None
        if self.reference is None:
            self.reference = self.outputs(model)
            if path:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                with atomic_open(path) as file:
                    np.savez(file, *self.reference)
        self.reference_psnrs = self._sample_psnrs(self.reference)
        self.reference_psnr = float(np.mean(self.reference_psnrs))

    def _sample_psnrs(self, outputs: Sequence[np.ndarray]) -> list[float]:
        return [psnr(out, target) for out, target in zip(outputs, self.targets, strict=True)]

    def psnr_vs_fp32(self, outputs: Sequence[np.ndarray]) -> float:
        return min(psnr(out, ref) for out, ref in zip(outputs, self.reference, strict=True))

    def mse_vs_fp32(self, outputs: Sequence[np.ndarray]) -> float:
        """Mean squared error against FP32 over all samples: noise powers add across layers."""
        pairs = zip(outputs, self.reference, strict=True)
        return float(np.mean([np.mean((out - ref) ** 2) for out, ref in pairs]))

    def evaluate(self, model: onnx.ModelProto | str | os.PathLike) -> Evaluation:
        outputs = self.outputs(model)
        psnrs = self._sample_psnrs(outputs)
        return Evaluation(float(np.mean(psnrs)), _capped_drop(self.reference_psnrs, psnrs, self.gain_cap_db),
                          self.psnr_vs_fp32(outputs))


def _capped_drop(reference_psnrs: Sequence[float], psnrs: Sequence[float], gain_cap_db: float) -> float:
    """The budget's measure: the mean over samples of each one's PSNR drop against FP32, a gain counting
    at most `gain_cap_db` (the search's target). INT8 moves some outputs closer to the clean image by
    chance; in the plain mean those gains paid for losses elsewhere: MIRNet-v2 enhance's all-INT8 file
    lost up to 0.324 dB on single calibration samples and gained up to 0.203 dB on others, mean 0.054 dB,
    and then lost 0.334 dB on a held-out photograph (README, the family chains). Counting no gain at all
    biases the measure up by the samples' noise: on `full` with random weights (drops of +-0.01 dB) a
    0.01 dB budget then never settled (7 real evaluations, 5.0x the plain quantization's time). Capped,
    small gains still cancel small losses and large ones buy nothing. Without gains (the denoise demo)
    it is the plain mean."""
    pairs = zip(reference_psnrs, psnrs, strict=True)
    drops = [max(reference - value, -gain_cap_db) for reference, value in pairs]
    return float(np.mean(drops))


def _concurrently(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`function` of each item, in order, `workers` at a time. The ranking's probes and the screen's
    samples run so, one single-threaded pass per core (ONNX Runtime releases the GIL in `run`): a
    pass split over threads waits on its slowest share at every node, and the numbers are the same
    bit for bit (test). Their passes are small (64x64 probes; 192x192 screen crops, two of which
    hold half the pixels of one full sample). The full-sample evaluations run one pass at a time on
    every core: two at once took `full`'s default-set quantization from 2.8 to 3.86 GB resident."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    pool = ThreadPoolExecutor(min(workers, len(items)))
    try:
        return list(pool.map(function, items))
    finally:  # on an error or Ctrl-C, the passes not started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _read_outputs(path: Path, count: int) -> list[np.ndarray] | None:
    """Cached outputs, or None when there are none or the file is unreadable (then they are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            outputs = [stored[f"arr_{i}"] for i in range(count)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return outputs


def _center_crop(pair: tuple[np.ndarray, np.ndarray], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    if size is None or min(pair[0].shape[:2]) <= size:
        return pair
    top, left = (pair[0].shape[0] - size) // 2 // 4 * 4, (pair[0].shape[1] - size) // 2 // 4 * 4
    return tuple(np.ascontiguousarray(a[top : top + size, left : left + size]) for a in pair)


def search_mixed_precision(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *, target: str,
                           calibration: str | os.PathLike, budget_db: float = DEFAULT_BUDGET_DB,
                           method: str = "minmax", high_precision: str = "fp16",
                           eval_samples: int = DEFAULT_EVAL_SAMPLES, threads: int | None = None,
                           cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, subpixel: bool | None = None,
                           op_types: tuple[str, ...] | None = None, progress: bool = False,
                           try_first: Sequence[str] = ()) -> MixedPrecisionReport:
    """Quantize `onnx_path` for `target`, keeping the fewest layers in high precision that bring the
    task PSNR drop within `budget_db`; the chosen model is written to `output_path`.

    `try_first`: nodes to keep that another search of the same model found (the `cpu` target's, for
    its symmetric twin). They are evaluated first; if keeping them meets the budget, that verified
    result is taken without a search of its own and without measuring the all-INT8 model (one
    evaluation less; the layers kept may then not be the fewest: if the all-INT8 model would have
    passed, it is not found); else the search runs as usual."""
    source = load_onnx(onnx_path)
    check_quantizable(source, onnx_path)  # before the calibration set is read or the FP32 model run
    calib = CalibrationSet(calibration)
    stopwatch = _Stopwatch()
    cores = threads or usable_cpus()
    aim = budget_db * SEARCH_MARGIN
    evaluator = _Evaluator(calib, eval_samples, threads, gain_cap_db=aim)  # a pass at a time: `_concurrently`
    subpixel = default_subpixel(target) if subpixel is None else subpixel
    op_types = tuple(op_types or DEFAULT_OP_TYPES[target])
    prepared, _ = prepare(source, target, subpixel=subpixel)
    with stopwatch("fp32 reference"):
        evaluator.set_reference(prepared, Path(cache_dir))

    with scratch_folder("mixed") as scratch:
        candidates: dict[int, QuantizeReport] = {}  # by the number of nodes kept (one per k)

        def candidate(excluded: Sequence[str]) -> QuantizeReport:
            path = Path(scratch) / f"candidate-{len(excluded)}.onnx"
            with stopwatch("quantize"):
                candidates[len(excluded)] = quantize_onnx(
                    onnx_path, path, target=target, calibration=calib, method=method,
                    high_precision=high_precision, exclude_nodes=tuple(excluded), subpixel=subpixel,
                    op_types=op_types, cache_dir=cache_dir)
            return candidates[len(excluded)]

        def evaluated_on(samples: _Evaluator, part: str) -> Evaluate:
            def evaluate(excluded: Sequence[str]) -> tuple[QuantizeReport, Evaluation]:
                report = candidate(excluded)
                with stopwatch(part):
                    return report, samples.evaluate(report.output)
            return evaluate

        evaluate = evaluated_on(evaluator, "evaluate")
        full, final, kept, sensitivity, tried, screened = None, None, [], [], [], []
        if try_first:
            final = evaluate(try_first)[1]
            tried.append((-1, final.drop_db))  # -1: the nodes given, not a count of ranked layers
            if final.drop_db <= budget_db * SEARCH_MARGIN:
                kept = list(try_first)
        if not kept:
            full_report, full = evaluate(())
            final = full
            tried.append((0, full.drop_db))
        layer_count, probes = 0, 0
        if final.drop_db > budget_db * SEARCH_MARGIN:
            with stopwatch("probe session"):
                quantized = onnx.load(full_report.output)
                layers = (_by_weight(prepared, full_report.quantized_layers)
                          + _elementwise(quantized, op_types))
                ranking = _Evaluator(calib, RANKING_SAMPLES, RANKING_THREADS, crop=RANKING_CROP)
                ranking.set_reference(prepared)
                probe = _LayerProbe(quantized, prepared, layers, ranking, cores)
            cost_cap = int(RANKING_COST_IN_EVALUATIONS * evaluator.pixels / ranking.pixels)
            with stopwatch("ranking"):
                probe.rank(cost_cap, progress)
            screen = _Evaluator(calib, eval_samples, 1, crop=SCREEN_CROP, samples_at_once=cores,
                                gain_cap_db=aim)
            screen_full = None
            if screen.pixels * 2 <= evaluator.pixels:  # else screening would save little
                with stopwatch("screen"):
                    screen.set_reference(prepared, Path(cache_dir))
                    screen_full = screen.evaluate(full_report.output)

            def predictor_for(full_drop_db: float) -> Callable[[int], float]:
                predictor = probe.drop_predictor(full_drop_db)

                def predicted_drop(k: int) -> float:
                    with stopwatch("prediction"):
                        return predictor(k)
                return predicted_drop

            def open_gap(low: int, high: int) -> int:
                with stopwatch("ranking"):
                    return probe.open(low, high)

            def verify(excluded: Sequence[str]) -> Evaluation:  # the screened result, on the full samples
                with stopwatch("evaluate"):
                    return evaluator.evaluate(candidates[len(excluded)].output)

            kept, final = _screened_fewest(
                probe.ranked, predictor_for, budget_db * SEARCH_MARGIN, full.drop_db,
                None if screen_full is None else screen_full.drop_db, evaluate,
                evaluated_on(screen, "screen"), verify, tried, screened, open_gap)
            layer_count, probes = len(layers), probe.probes
            sensitivity = [(nodes, _psnr_of_mse(unit.error))
                           for nodes, unit in zip(probe.ranked, probe.units, strict=True)]
        chosen = candidates[len(kept)]
        atomic_write_bytes(output_path, Path(chosen.output).read_bytes())
    calib.close()
    report = dataclasses.replace(chosen, output=str(output_path))
    warnings = [] if chosen.quantized_layers or not kept else [_all_kept_warning(final, budget_db)]
    return MixedPrecisionReport(budget_db, evaluator.reference_psnr, full, final, kept, sensitivity, tried,
                                screened, report, stopwatch.cpu_seconds, layer_count, probes, warnings)


def _all_kept_warning(final: Evaluation, budget_db: float) -> str:
    return (f"no convolution is INT8: the search kept every one in high precision (task PSNR drop "
            f"{final.drop_db:.3f} dB, aiming at {budget_db * SEARCH_MARGIN:.3f} dB), so this model runs as "
            "the float model under an INT8 name. Allow more loss (--budget-db), or deploy the FP16/FP32 "
            "model instead.")


def _psnr_of_mse(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def _by_weight(prepared: onnx.ModelProto, nodes: Sequence[str]) -> list[list[str]]:
    """`nodes` grouped by the weight initializer they read, in graph order."""
    weight_of = {node.name: node.input[1] for node in prepared.graph.node if node.name in set(nodes)}
    groups: dict[str, list[str]] = {}
    for node in prepared.graph.node:
        if node.name in weight_of:
            groups.setdefault(weight_of[node.name], []).append(node.name)
    return list(groups.values())


def _elementwise(quantized: onnx.ModelProto, op_types: Sequence[str]) -> list[list[str]]:
    """Quantized nodes without weights (cpu target: Add, Mul, Concat, LeakyRelu), one per layer."""
    dequantized = {node.output[0] for node in quantized.graph.node if node.op_type == "DequantizeLinear"}
    return [[node.name] for node in quantized.graph.node
            if node.op_type in op_types and node.op_type not in WEIGHTED_OPS
            and any(name in dequantized for name in node.input)]


class _LayerProbe:
    """The output of the INT8 graph on the ranking crops, with any set of layers quantized:
    one session over the switchable graph, one forward pass per question. It holds the ranking
    (`units`, and `ranked`: their node lists), which `open` refines in place."""

    def __init__(self, quantized: onnx.ModelProto, prepared: onnx.ModelProto, layers: list[list[str]],
                 evaluator: _Evaluator, concurrent_probes: int = 1) -> None:
        self.layers, self.evaluator, self.concurrent_probes = layers, evaluator, concurrent_probes
        self.session = evaluator.session(switchable_quantization(quantized, prepared, layers))
        self.probes = 0  # forward passes spent on the ranking
        self.budget = 0  # the ranking's probe budget; opening blocks later may spend as much again
        self.units: list[RankedUnit] = []
        self._remaining: dict[tuple[int, ...], float] = {}  # quantized layers -> `_remaining_error`
        self.ranked: list[list[str]] = []

    def outputs(self, quantized: Sequence[int] | None) -> list[np.ndarray]:
        return self.evaluator.outputs(self.session, {SWITCHES: switches(len(self.layers), quantized)})

    def errors(self, rounds: list[tuple[int, ...]]) -> list[float]:
        """Mean squared output error against FP32 with only the layers of each set in INT8, one
        probe per set, `concurrent_probes` at a time on the one session."""
        self.probes += len(rounds)
        return _concurrently(lambda quantized: self.evaluator.mse_vs_fp32(self.outputs(quantized)), rounds,
                             self.concurrent_probes)

    def rank(self, cost_cap: int, progress: bool) -> None:
        """Units (layers, then unopened blocks), most damaging per layer first (`rank_best_first`),
        in at most `probe_budget` probes."""
        tree = layer_tree(self.layers)
        self.budget = probe_budget(tree, cost_cap)
        with tqdm(total=self.budget, desc="layer sensitivity", unit="probe", disable=not progress) as bar:
            self._set(rank_best_first(tree, self.errors, self.budget, bar.update))

    def open(self, low: int, high: int) -> int:
        """Open the blocks among `units[low:high]` (between a verified miss and a verified pass) in
        at most the ranking's probe budget, so the search can keep part of a block; returns where
        `high` moved."""
        opened = open_best_first(self.units[low:high], self.errors, self.budget)
        self._set(self.units[:low] + opened + self.units[high:])
        return low + len(opened)

    def _set(self, units: list[RankedUnit]) -> None:
        self.units[:] = units
        self.ranked[:] = [[node for index in unit.group.layers for node in self.layers[index]]
                          for unit in units]

    def drop_predictor(self, full_drop_db: float) -> Callable[[int], float]:
        """k -> the task PSNR drop predicted with the first k `units` (as they are when asked) kept
        in float.

        The error left with those units in float, as a fraction of the all-INT8 error (both
        measured here), scales the all-INT8 drop measured on the evaluation pairs: an error
        uncorrelated with the FP32 model's own adds its power to the task's mean squared error.
        Predictors of other drops (the screen's, the full samples') share the measured fractions.
        """
        full_noise = 10 ** (full_drop_db / 10) - 1  # the all-INT8 error power / FP32's task error power

        def predicted_drop(k: int) -> float:
            quantized = tuple(sorted(index for unit in self.units[k:] for index in unit.group.layers))
            return 10 * np.log10(1 + self._remaining_error(quantized) * full_noise)

        return predicted_drop

    @functools.cached_property
    def _all_int8_error(self) -> float:
        return self.evaluator.mse_vs_fp32(self.outputs(None))

    def _remaining_error(self, quantized: tuple[int, ...]) -> float:
        """The output error with only the layers at `quantized` in INT8, as a fraction of all-INT8's."""
        if quantized not in self._remaining:
            error = self.evaluator.mse_vs_fp32(self.outputs(quantized))
            self._remaining[quantized] = error / self._all_int8_error
        return self._remaining[quantized]


Evaluate = Callable[[Sequence[str]], tuple[QuantizeReport, Evaluation]]


def _screened_fewest(ranked: list[list[str]], predictor_for: Callable[[float], Callable[[int], float]],
                     budget_db: float, full_drop_db: float, screen_full_drop_db: float | None,
                     evaluate: Evaluate, screen: Evaluate, verify: Callable[[Sequence[str]], Evaluation],
                     tried: list[tuple[int, float]], screened: list[tuple[int, float]],
                     open_gap: Callable[[int, int], int] | None = None) -> tuple[list[str], Evaluation]:
    """`_verified_fewest` on the cheap `screen` evaluations, its result then `verify`-ed on the full
    samples; if that misses the budget, `_verified_fewest` again on the full samples (`evaluate`),
    from above that miss.

    `predictor_for(drop)` is the prediction scaled to an all-INT8 drop: the screen's own
    (`screen_full_drop_db`) while screening, the full samples' (`full_drop_db`) after. No screen
    (None), or one that the all-INT8 model passes while the full samples do not: the full search at
    once. `tried` gets the full samples' measurements, `screened` the screen's."""
    missed = None
    if screen_full_drop_db is not None and screen_full_drop_db > budget_db:
        screened.append((0, screen_full_drop_db))
        kept, _ = _verified_fewest(ranked, predictor_for(screen_full_drop_db), budget_db, screen, screened,
                                   open_gap=open_gap)
        final = verify(kept)
        tried.append((len(kept), final.drop_db))
        if final.drop_db <= budget_db:
            return kept, final
        units = list(itertools.accumulate((len(unit) for unit in ranked), initial=0)).index(len(kept))
        missed = (units, final.drop_db)
    return _verified_fewest(ranked, predictor_for(full_drop_db), budget_db, evaluate, tried,
                            open_gap=open_gap, missed=missed)


def _verified_fewest(ranked: list[list[str]], predicted_drop: Callable[[int], float], budget_db: float,
                     evaluate: Evaluate, tried: list[tuple[int, float]], refinements: int = REFINEMENTS, *,
                     open_gap: Callable[[int, int], int] | None = None,
                     missed: tuple[int, float] | None = None) -> tuple[list[str], Evaluation]:
    """The nodes of the fewest most-sensitive units that meet the budget, by real quantizations
    and evaluations (`evaluate`), steered by the cheap `predicted_drop`.

    `ranked`: units (node lists) in the order they are kept. `tried` holds the (nodes kept, drop
    dB) measured so far, the all-INT8 miss (0, drop) among them; every measurement is appended.
    `missed`: (units kept, drop) of another miss measured already (the screen's result): the search
    starts above it, its prediction corrected by it as by a miss of its own. Phases:

    1. the fewest k predicted within the budget is verified; a miss corrects the prediction by the
       factor it was off (in error power) and verifies the new fewest k, at least a quarter more
       units, until one passes. The correction overshoots when the prediction's error is not
       one constant factor (denoise demo: 15, 42 then 101 layers, for 0.011 dB of 0.05);
    2. if a refinement is worth its time (below), `open_gap(low, high)` may refine the units
       between the largest k that missed and the fewest that passed in place (open the blocks
       among them) and return where the pass moved to;
    3. at most `refinements` more real evaluations narrow that gap: secant steps (the real error
       power interpolated linearly against the predicted one between the two measurements, so the
       prediction's shape is kept and only its scale corrected) alternating with bisections (which
       halve the gap whatever the secant does). It stops early when no unit is left between them
       or the secant says none fewer passes, or when the gap is at most `REFINE_MIN_GAIN` of all
       nodes (a real run to save a node or two of hundreds is not worth its time).
       The fewest k that passed is kept.

    If even keeping every layer misses the budget (the unquantized rest of the graph, e.g. FP16,
    costs more than the budget), all are kept.
    """
    def nodes(k: int) -> list[str]:
        return [node for layer in ranked[:k] for node in layer]

    evaluations: dict[int, Evaluation] = {}
    drops = {0: dict(tried)[0]}  # units kept -> measured drop

    def passes(k: int) -> bool:
        evaluations[k] = evaluate(nodes(k))[1]
        drops[k] = evaluations[k].drop_db
        tried.append((len(nodes(k)), drops[k]))
        return drops[k] <= budget_db

    allowed, low = _power(budget_db), 0  # invariant: keeping fewer than `low` units misses the budget
    if missed is not None:
        known, drops[known] = missed
        allowed *= _power(predicted_drop(known)) / _power(drops[known])
        low = min(len(ranked), known + 1)
    while True:
        high = _fewest(lambda k, allowed=allowed: _power(predicted_drop(k)) <= allowed, low, len(ranked))
        if passes(high):
            break
        if high == len(ranked):
            return nodes(high), evaluations[high]
        # the real error power was this many times the predicted one: ask the prediction for less
        allowed *= _power(predicted_drop(high)) / _power(evaluations[high].drop_db)
        low = min(len(ranked), high + max(1, high // 4))

    low = max(k for k, drop in drops.items() if k < high and drop > budget_db)
    smallest_gain = max(1, round(REFINE_MIN_GAIN * len(nodes(len(ranked)))))

    def worth_a_real_run() -> bool:  # saving a node or two of hundreds is not
        return len(nodes(high)) - len(nodes(low)) > smallest_gain

    if open_gap is not None and refinements and worth_a_real_run():
        moved = open_gap(low, high)
        evaluations[moved], drops[moved] = evaluations.pop(high), drops.pop(high)
        high = moved
    for step in range(refinements):
        if not worth_a_real_run():
            break
        k = _secant(low, drops[low], high, drops[high], budget_db, predicted_drop) if step % 2 == 0 else None
        if k is None:
            k = (low + high) // 2
        if k in (low, high):  # no unit left between them, or the secant says none passes
            break
        if passes(k):
            high = k
        else:
            low = k
    return nodes(high), evaluations[high]


def _secant(low: int, low_drop: float, high: int, high_drop: float, budget_db: float,
            predicted_drop: Callable[[int], float]) -> int | None:
    """The fewest k in (`low`, `high`] where the real error power, linear in the predicted power
    through the two measurements (`low` missed, `high` passed), meets the budget: `high` when it
    says no fewer layers pass; None when the prediction does not fall from `low` to `high`."""
    predicted_low, predicted_high = _power(predicted_drop(low)), _power(predicted_drop(high))
    if high - low <= 1 or predicted_low <= predicted_high:
        return None
    slope = (_power(high_drop) - _power(low_drop)) / (predicted_high - predicted_low)
    wanted = predicted_low + (_power(budget_db) - _power(low_drop)) / slope
    return _fewest(lambda k: _power(predicted_drop(k)) <= wanted, low + 1, high)


def _power(drop_db: float) -> float:
    """A task PSNR drop as added error power, relative to the FP32 model's own error."""
    return 10 ** (drop_db / 10) - 1


def _fewest(within: Callable[[int], bool], low: int, high: int) -> int:
    """The smallest k in [low, high] with `within(k)` (assumed monotone), by bisection; `high` if none."""
    while low < high:
        middle = (low + high) // 2
        if within(middle):
            high = middle
        else:
            low = middle + 1
    return high
