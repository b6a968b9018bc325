"""PSNR-budget mixed precision: keep the most quantization-sensitive layers in high precision.

Restoration networks lose quality in a few layers (the first convolutions, attention
projections), not everywhere, so quantizing all but those is nearly as fast as full INT8
and nearly as exact as FP32. The search:

1. quantize everything and measure the task PSNR drop against the FP32 model, on the
   calibration set's own (input, clean target) pairs; within budget x `SEARCH_MARGIN` -> done;
2. otherwise rank every quantized layer (a weight shared by several convolutions counts as
   one layer; the cpu target's quantized element-wise ops are layers too) by the error it
   causes alone: a copy of the INT8 graph where only that layer reads quantized inputs (all
   others have their Q/DQ pairs bypassed, `bypass_quantization`), compared with the FP32
   output — one ONNX Runtime session per layer, no re-quantization;
3. keep the k most sensitive layers in high precision, k = 1, 2, 4, ... and then a binary
   search, each candidate quantized for real (cached ranges) and measured, until the
   drop is within budget x margin.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

from export.onnx_read import load_onnx
from mirnet_ref.metrics import psnr

from .dataset import CalibrationSet
from .quantize import (
    DEFAULT_CACHE_DIR,
    DEFAULT_OP_TYPES,
    WEIGHTED_OPS,
    QuantizeReport,
    prepare,
    quantize_onnx,
)

DEFAULT_BUDGET_DB = 0.1
#: The search meets budget x margin on the calibration samples: unseen photographs lost up to
#: 1.6x more than the calibration samples did (demo models, held-out built-in images), and the
#: budget is a promise about the images the model will see, not about the calibration set.
SEARCH_MARGIN = 0.5
DEFAULT_EVAL_SAMPLES = 8
#: The ranking runs one model per layer, so it looks at less: centre crops of a few samples.
RANKING_SAMPLES, RANKING_CROP = 2, 128


@dataclass
class Evaluation:
    task_psnr_db: float  # mean PSNR of the clamped output against the clean targets
    drop_db: float  # FP32's task PSNR minus this one
    psnr_vs_fp32_db: float  # worst sample


@dataclass
class MixedPrecisionReport:
    budget_db: float
    fp32_task_psnr_db: float
    full_int8: Evaluation
    final: Evaluation
    kept_high_precision: list[str]  # most sensitive first
    #: (layer, PSNR vs FP32 when only it is quantized), worst first. A layer is the set of nodes
    #: sharing one weight (MIRNet runs some modules twice): a weight is INT8 or not, as a whole.
    sensitivity: list[tuple[list[str], float]]
    candidates_tried: list[tuple[int, float]]  # (layers kept, drop dB)
    quantize: QuantizeReport

    def to_dict(self) -> dict:
        return asdict(self)


class _Evaluator:
    """Runs ONNX models on the evaluation pairs and scores them against FP32 and the clean targets."""

    def __init__(self, calibration: CalibrationSet, samples: int, threads: int | None,
                 crop: int | None = None) -> None:
        count = min(samples, len(calibration))
        pairs = [_center_crop(calibration.sample(i), crop) for i in range(count)]
        self.inputs = [np.ascontiguousarray(x.transpose(2, 0, 1)[None]) for x, _ in pairs]
        self.targets = [t for _, t in pairs]
        self.options = ort.SessionOptions()
        if threads:
            self.options.intra_op_num_threads = threads
        self.reference: list[np.ndarray] = []
        self.reference_psnr = 0.0

    def outputs(self, model: onnx.ModelProto | str | os.PathLike) -> list[np.ndarray]:
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        session = ort.InferenceSession(source, self.options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return [np.clip(session.run(None, {name: x})[0][0].transpose(1, 2, 0), 0, 1) for x in self.inputs]

    def set_reference(self, model: onnx.ModelProto) -> None:
        self.reference = self.outputs(model)
        self.reference_psnr = self._task_psnr(self.reference)

    def _task_psnr(self, outputs: Sequence[np.ndarray]) -> float:
        return float(np.mean([psnr(out, target) for out, target in zip(outputs, self.targets, strict=True)]))

    def psnr_vs_fp32(self, outputs: Sequence[np.ndarray]) -> float:
        return min(psnr(out, ref) for out, ref in zip(outputs, self.reference, strict=True))

    def evaluate(self, model: onnx.ModelProto | str | os.PathLike) -> Evaluation:
        outputs = self.outputs(model)
        task = self._task_psnr(outputs)
        return Evaluation(task, self.reference_psnr - task, self.psnr_vs_fp32(outputs))


def _center_crop(pair: tuple[np.ndarray, np.ndarray], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    if size is None or min(pair[0].shape[:2]) <= size:
        return pair
    top, left = (pair[0].shape[0] - size) // 2 // 4 * 4, (pair[0].shape[1] - size) // 2 // 4 * 4
    return tuple(np.ascontiguousarray(a[top : top + size, left : left + size]) for a in pair)


def bypass_quantization(quantized: onnx.ModelProto, prepared: onnx.ModelProto, layers: set[str],
                        nodes: set[str]) -> onnx.ModelProto:
    """A copy of `quantized` in which the quantized `layers` named in `nodes` run in float.

    Their inputs bypass their Q/DQ pairs: DQ(Q(x)) becomes x, and a weight stored quantized
    (DQ of an INT8 initializer) becomes the float weight of the same node in `prepared`, the
    graph that was quantized. Their outputs bypass an output Q/DQ (cpu target) for every
    consumer that is not itself a quantized layer still in INT8, as `quantize_static` would
    leave them with `nodes_to_exclude`.
    """
    model = onnx.ModelProto()
    model.CopyFrom(quantized)
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    prepared_inputs = {node.name: list(node.input) for node in prepared.graph.node}
    prepared_weights = {init.name: init for init in prepared.graph.initializer}
    present = {init.name for init in model.graph.initializer}
    still_int8 = layers - nodes
    for node in [n for n in model.graph.node if n.name in nodes]:
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            quantize = producers.get(dequantize.input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                node.input[index] = quantize.input[0]
                continue
            original = prepared_inputs[node.name][index]
            if original not in present:
                model.graph.initializer.append(prepared_weights[original])
                present.add(original)
            node.input[index] = original
        for output in node.output:
            for quantize in [c for c in consumers.get(output, []) if c.op_type == "QuantizeLinear"]:
                for dequantize in [c for c in consumers.get(quantize.output[0], [])
                                   if c.op_type == "DequantizeLinear"]:
                    for consumer in consumers.get(dequantize.output[0], []):
                        if consumer.name not in still_int8:
                            consumer.input[:] = [output if i == dequantize.output[0] else i
                                                 for i in consumer.input]
    return model


def search_mixed_precision(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *, target: str,
                           calibration: str | os.PathLike, budget_db: float = DEFAULT_BUDGET_DB,
                           method: str = "minmax", high_precision: str = "fp16",
                           eval_samples: int = DEFAULT_EVAL_SAMPLES, threads: int | None = None,
                           cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, subpixel: bool | None = None,
                           op_types: tuple[str, ...] | None = None,
                           progress: bool = False) -> MixedPrecisionReport:
    """Quantize `onnx_path` for `target`, keeping the fewest layers in high precision that bring the
    task PSNR drop within `budget_db`; the chosen model is written to `output_path`."""
    calib = CalibrationSet(calibration)
    evaluator = _Evaluator(calib, eval_samples, threads)
    subpixel = target == "cpu" if subpixel is None else subpixel
    op_types = tuple(op_types or DEFAULT_OP_TYPES[target])
    prepared, _ = prepare(load_onnx(onnx_path), target, subpixel=subpixel)
    evaluator.set_reference(prepared)

    def evaluate(excluded: Sequence[str]) -> tuple[QuantizeReport, Evaluation]:
        report = quantize_onnx(onnx_path, candidate, target=target, calibration=calib, method=method,
                               high_precision=high_precision, exclude_nodes=tuple(excluded),
                               subpixel=subpixel, op_types=op_types, cache_dir=cache_dir)
        return report, evaluator.evaluate(candidate)

    with tempfile.TemporaryDirectory(prefix="mirnet-mixed.") as scratch:
        candidate = Path(scratch) / "candidate.onnx"
        full_report, full = evaluate(())
        final, kept, sensitivity, tried = full, [], [], [(0, full.drop_db)]
        if full.drop_db > budget_db * SEARCH_MARGIN:
            ranking = _Evaluator(calib, RANKING_SAMPLES, threads, crop=RANKING_CROP)
            ranking.set_reference(prepared)
            layers = _by_weight(prepared, full_report.quantized_layers) + _elementwise(
                onnx.load(candidate), op_types)
            sensitivity = _rank_layers(onnx.load(candidate), prepared, layers, ranking, progress)
            ranked = [nodes for nodes, _ in sensitivity]
            kept, final = _fewest_within_budget(ranked, budget_db * SEARCH_MARGIN, evaluate, tried)
    report = quantize_onnx(onnx_path, output_path, target=target, calibration=calib, method=method,
                           high_precision=high_precision, exclude_nodes=tuple(kept), subpixel=subpixel,
                           op_types=op_types, cache_dir=cache_dir)
    calib.close()
    return MixedPrecisionReport(budget_db, evaluator.reference_psnr, full, final, kept, sensitivity, tried,
                                report)


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


def _rank_layers(quantized: onnx.ModelProto, prepared: onnx.ModelProto, layers: list[list[str]],
                 evaluator: _Evaluator, progress: bool) -> list[tuple[list[str], float]]:
    """(layer, PSNR vs FP32 with only that layer quantized), most damaging first."""
    everything = {node for layer in layers for node in layer}
    scores = []
    for layer in tqdm(layers, desc="layer sensitivity", unit="layer", disable=not progress):
        alone = bypass_quantization(quantized, prepared, everything, everything - set(layer))
        scores.append((layer, evaluator.psnr_vs_fp32(evaluator.outputs(alone))))
    return sorted(scores, key=lambda item: item[1])


def _fewest_within_budget(ranked: list[list[str]], budget_db: float,
                          evaluate: Callable[[Sequence[str]], tuple[QuantizeReport, Evaluation]],
                          tried: list[tuple[int, float]]) -> tuple[list[str], Evaluation]:
    """The nodes of the fewest most-sensitive layers to keep: k doubles until the budget holds, then
    bisection.

    Appends every (k, drop) tried to `tried`. If even keeping every layer misses the budget
    (the unquantized rest of the graph, e.g. FP16, costs more than the budget), all are kept.
    """
    def nodes(k: int) -> list[str]:
        return [node for layer in ranked[:k] for node in layer]

    def attempt(k: int) -> Evaluation:
        evaluation = evaluate(nodes(k))[1]
        tried.append((k, evaluation.drop_db))
        return evaluation

    low, k = 0, 1  # invariant: keeping `low` layers misses the budget
    while True:
        evaluation = attempt(k)
        if evaluation.drop_db <= budget_db or k == len(ranked):
            break
        low, k = k, min(2 * k, len(ranked))
    if evaluation.drop_db > budget_db:
        return nodes(len(ranked)), evaluation
    high, best = k, evaluation
    while high - low > 1:
        middle = (low + high) // 2
        evaluation = attempt(middle)
        if evaluation.drop_db <= budget_db:
            high, best = middle, evaluation
        else:
            low = middle
    return nodes(high), best
