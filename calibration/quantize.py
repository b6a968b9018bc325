"""INT8 Q/DQ models from an FP32 ONNX and a calibration set, for TensorRT or for CPUs.

One Q/DQ file cannot serve both (DEPLOY_STACK.md §3.2), so there are two targets:

- `tensorrt`: what TensorRT's explicit quantization expects (the option set NVIDIA's
  ModelOpt passes to ONNX Runtime's quantizer, §3.1): symmetric INT8 activations and
  weights (all zero points 0), per-channel weight scales, weights kept float behind a
  Q/DQ pair, no bias and no output quantization, nothing around Softmax/Sigmoid/PRelu,
  opset 19, and everything outside the Q/DQ pairs in FP16 (or FP32) with FP32 I/O.
- `cpu`: the layout ONNX Runtime fuses into QLinearConv on x86 (u8 activations with zero
  points, s8 per-channel weights, quantized outputs), preceded by exact rewrites that let
  more of the network run in INT8 (see `prepare`).
- `cpu-symmetric`: the `cpu` graph with symmetric s8 activations (zero points 0). OpenVINO
  fuses an asymmetric activation's zero point into a float Subtract and a u8->f32 Convert
  outside its INT8 convolutions; without a zero point there is nothing to subtract. ONNX
  Runtime runs s8 activations no faster than FP32 on x86: this target is for OpenVINO.

Quantization is ONNX Runtime's `quantize_static`, fed ranges that `ranges.collect_ranges`
measured one sample at a time (bounded memory; see there). The ranges are cached per
(prepared model, calibration set, method), so re-quantizing with other exclusions (the
mixed-precision search) never runs the calibration again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from export.onnx_read import load_onnx
from export.stack_sum import rewrite_stacked_sums
from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.caches import use_cache
from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import scratch_folder

from .dataset import CalibrationSet
from .ort_lookups import indexed_lookups
from .ranges import collect_ranges, save_ranges

TARGETS = ("tensorrt", "cpu", "cpu-symmetric")
#: Targets with the CPU graph: the exact rewrites of `prepare` and INT8 chains between convolutions.
CPU_TARGETS = ("cpu", "cpu-symmetric")
#: A target whose graph is another's with other quantization types -> that target: the layers the
#: other's PSNR-budget search kept in high precision are the first guess for its own.
TWIN_TARGETS = {"cpu-symmetric": "cpu"}
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
HIGH_PRECISIONS = ("fp16", "fp32")
#: Op types quantized by default. TensorRT: the convolutions, which carry almost all of the work;
#: quantizing the attention arithmetic costs accuracy and buys TensorRT nothing. CPU: also the
#: element-wise Add/Mul/LeakyRelu between convolutions, so ONNX Runtime's INT8 kernels chain from
#: one QLinearConv to the next instead of dequantizing around each. Not Concat: QLinearConcat
#: requantizes MIRNet's multi-scale branches to one shared scale, which doubled the enhance
#: model's PSNR loss on held-out photographs (0.064 -> 0.142 dB at 448x296).
DEFAULT_OP_TYPES: dict[str, tuple[str, ...]] = {
    "tensorrt": ("Conv", "ConvTranspose"),
    "cpu": ("Conv", "ConvTranspose", "Add", "Mul", "LeakyRelu"),
    "cpu-symmetric": ("Conv", "ConvTranspose", "Add", "Mul", "LeakyRelu"),
}
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
TENSORRT_OPSET = 19  # FP16 Q/DQ scales need opset 19
DEFAULT_CACHE_DIR = Path("artifacts") / "calibration-cache"


@dataclass
class QuantizeReport:
    output: str
    target: str
    method: str
    high_precision: str
    calibration_set: str
    calibration_samples: int
    ranges_cached: bool  # True when the calibration ranges came from the cache
    rewrites: dict[str, int]  # exact graph rewrites applied before quantization
    quantized_layers: list[str]  # convolutions (layers with weights) in INT8
    excluded_nodes: list[str]
    op_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def target_settings(target: str) -> tuple[QuantType, QuantType, dict]:
    """(activation type, weight type, ONNX Runtime extra_options) for a target."""
    if target == "tensorrt":
        return QuantType.QInt8, QuantType.QInt8, {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "AddQDQPairToWeight": True,  # the TensorRT parser wants DQ inputs to be activations
            "DedicatedQDQPair": False,
            "ForceQuantizeNoInputCheck": True,
            "QDQDisableWeightAdjustForInt32Bias": True,
            "OpTypesToExcludeOutputQuantization": ["Conv", "ConvTranspose"],
            "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
        }
    per_channel_axes = {"Conv": 0, "ConvTranspose": 1}
    if target == "cpu":
        # u8 activations / s8 weights: the VNNI-friendly combination; no reduce_range on VNNI machines.
        return QuantType.QUInt8, QuantType.QInt8, {
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": per_channel_axes,
        }
    if target == "cpu-symmetric":
        return QuantType.QInt8, QuantType.QInt8, {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": per_channel_axes,
        }
    raise UserError(f"Unknown quantization target {target!r}: choose one of {', '.join(TARGETS)}.")


def unsigned_for_target(model: onnx.ModelProto, target: str) -> list[str]:
    """Tensors a target quantizes as asymmetric u8 whatever its activation type. `cpu-symmetric`:
    the concatenations read by convolutions (MIRNet's attention outputs and its spatial attention's
    channel max and mean). OpenVINO 2026.4.1 computes Concat -> s8 Q/DQ -> INT8 Conv wrongly (the
    output comes out near zero), where u8 is right (`engines.openvino_int8_check` probes both)."""
    if target != "cpu-symmetric":
        return []
    concats = {node.output[0] for node in model.graph.node if node.op_type == "Concat"}
    return sorted({node.input[0] for node in model.graph.node
                   if node.op_type in ("Conv", "ConvTranspose") and node.input[0] in concats})


#: The export stage's graph rewrites that `prepare` applies, as files of the repository.
EXPORT_REWRITES = ("export/stack_sum.py", "export/subpixel.py")


@functools.cache
def quantization_code_sha256() -> str:
    """sha256 of the `calibration` package's source (its CLI aside) and of the export rewrites it applies:
    the code that makes an INT8 model (rewrites, ranges, quantization, the PSNR-budget search). Caches
    of INT8 models key on it, so a model that older code made is made again, not silently reused
    (`toolkit_version` is not bumped per change)."""
    repository = Path(__file__).parents[1]
    sources = [path for path in sorted((repository / "calibration").glob("*.py")) if path.name != "cli.py"]
    digest = hashlib.sha256()
    for source in [*sources, *(repository / name for name in EXPORT_REWRITES)]:
        name = source.relative_to(repository).as_posix()
        digest.update(name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def default_subpixel(target: str) -> bool:
    """The sub-pixel rewrite is on for the CPU targets, off for TensorRT (see `quantize_onnx`)."""
    return target in CPU_TARGETS


def prepare(model: onnx.ModelProto, target: str, *, subpixel: bool) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Exact rewrites before quantization; returns the model and how many nodes each rewrite changed.

    - `subpixel`: stride-2 ConvTranspose -> Conv + DepthToSpace (ONNX Runtime has no INT8
      ConvTranspose kernel, so without it those layers stay float on CPUs).
    - cpu targets: single-slope PRelu -> LeakyRelu, and sums over a stacked axis (SKFF) -> Adds
      (`export.stack_sum`): both have INT8 kernels in ONNX Runtime where the originals have none.
    - tensorrt: opset 19, so the high-precision part can be FP16 with FP16 Q/DQ scales.
    """
    rewrites: dict[str, int] = {}
    if subpixel:
        from export.subpixel import rewrite_transposed_convs

        model, rewrites["convtranspose_to_subpixel"] = rewrite_transposed_convs(model)
    if target in CPU_TARGETS:
        model, rewrites["prelu_to_leakyrelu"] = scalar_prelu_to_leaky_relu(model)
        model, rewrites["stacked_sum_to_adds"] = rewrite_stacked_sums(model)
    if target == "tensorrt" and _opset(model) < TENSORRT_OPSET:
        model = onnx.version_converter.convert_version(model, TENSORRT_OPSET)
    return model, rewrites


def scalar_prelu_to_leaky_relu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """PRelu with one slope for all channels -> LeakyRelu(alpha=slope): the same function, but
    ONNX Runtime has an INT8 LeakyRelu and no INT8 PRelu, so activations stay quantized through it."""
    slopes = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    result = onnx.ModelProto()
    result.CopyFrom(model)
    count = 0
    for index, node in enumerate(result.graph.node):
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1:
            continue
        result.graph.node[index].CopyFrom(onnx.helper.make_node(
            "LeakyRelu", [node.input[0]], list(node.output), name=node.name, alpha=float(slope.reshape(()))))
        count += 1
    used = {name for node in result.graph.node for name in node.input}
    kept = [init for init in result.graph.initializer if init.name in used]
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept)
    return result, count


def shapes_read_before_dequantizing(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape(DequantizeLinear(q)) -> Shape(q): the same shape, without dequantizing a whole tensor
    for it. MIRNet-v2's context blocks read the shape of quantized feature maps; ONNX Runtime kept
    a float DequantizeLinear (and an NHWC -> NCHW transpose) per block for nothing but that."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    dequantized = {node.output[0]: node.input[0] for node in result.graph.node
                   if node.op_type == "DequantizeLinear"}
    for node in result.graph.node:
        if node.op_type == "Shape" and node.input[0] in dequantized:
            node.input[0] = dequantized[node.input[0]]
    used = {name for node in result.graph.node for name in node.input} | {o.name for o in result.graph.output}
    alive = [node for node in result.graph.node
             if node.op_type != "DequantizeLinear" or node.output[0] in used]
    del result.graph.node[:]
    result.graph.node.extend(alive)
    return result


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _ranges_cache_path(model: onnx.ModelProto, calibration: CalibrationSet, method: str,
                       op_types: tuple[str, ...], cache_dir: Path) -> Path:
    """Ranges depend on the graph being calibrated, the data, the method and which tensors are observed."""
    digest = hashlib.sha256(model.graph.SerializeToString())
    digest.update(json.dumps([calibration.sha256, method, sorted(op_types)]).encode())
    return cache_dir / f"ranges-{method}-{digest.hexdigest()[:16]}.json"


def quantizable_metadata(onnx_path: str | os.PathLike) -> dict[str, str]:
    """`check_quantizable` on the graph alone (no external weights read): cheap enough to run before any
    calibration set is built or read, so a file that cannot be quantized costs no calibration work."""
    return check_quantizable(load_onnx(onnx_path, load_external_data=False), onnx_path)


def check_quantizable(model: onnx.ModelProto, onnx_path: str | os.PathLike) -> dict[str, str]:
    """The model's metadata, after refusing what quantization cannot start from: a reduced-precision
    model, or a graph whose one input is not a float32 batch of images (N x C x H x W)."""
    from export.onnx_file import read_metadata

    metadata = read_metadata(model)
    if metadata.get("precision", "fp32") != "fp32":
        raise UserError(f"{onnx_path} is {metadata['precision']}: quantization starts from the FP32 export "
                        "(`mirnet export --precision fp32`), never from an already reduced model.")
    weights = {init.name for init in model.graph.initializer}  # IR < 4 lists them as inputs too
    inputs = [value for value in model.graph.input if value.name not in weights]
    tensor = inputs[0].type.tensor_type if len(inputs) == 1 else None
    if tensor is None or tensor.elem_type != onnx.TensorProto.FLOAT or len(tensor.shape.dim) != 4:
        shown = ", ".join(f"{value.name!r} ({_input_text(value)})" for value in inputs) or "no input"
        raise UserError(f"{onnx_path} takes {shown}: quantization calibrates a model with one float32 image "
                        "input, N x C x H x W, as `mirnet export` writes it. Export the model with it.")
    return metadata


def _input_text(value: onnx.ValueInfoProto) -> str:
    """'float, Nx3xHxW': an input's element type and shape as a user reads them."""
    tensor = value.type.tensor_type
    dims = "x".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
                    for d in tensor.shape.dim)
    return f"{onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}, {dims or 'no shape'}"


def quantize_onnx(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *, target: str,
                  calibration: str | os.PathLike | CalibrationSet, method: str = "minmax",
                  high_precision: str = "fp16", exclude_nodes: tuple[str, ...] = (),
                  op_types: tuple[str, ...] | None = None, subpixel: bool | None = None,
                  cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> QuantizeReport:
    """Quantize the FP32 model at `onnx_path` for `target` and write it atomically to `output_path`.

    `exclude_nodes` stay in high precision (names from the prepared graph, as reports list them).
    `subpixel` defaults to on for the cpu targets and off for tensorrt (TensorRT has INT8
    ConvTranspose kernels and the rewrite adds 16/9 of the transposed layers' work).
    """
    from export.onnx_file import set_metadata

    if method not in METHODS:
        raise UserError(f"Unknown calibration method {method!r}: choose one of {', '.join(METHODS)}.")
    if high_precision not in HIGH_PRECISIONS:
        raise UserError(f"--high-precision is fp16 or fp32, not {high_precision!r}.")
    source = load_onnx(onnx_path)
    metadata = check_quantizable(source, onnx_path)
    activation_type, weight_type, extra_options = target_settings(target)
    op_types = tuple(op_types or DEFAULT_OP_TYPES[target])
    subpixel = default_subpixel(target) if subpixel is None else subpixel
    model, rewrites = prepare(source, target, subpixel=subpixel)
    _check_node_names(model, exclude_nodes)
    unsigned = unsigned_for_target(model, target)
    if unsigned:
        extra_options = {**extra_options, "TensorQuantOverrides": {
            name: [{"quant_type": QuantType.QUInt8, "symmetric": False}] for name in unsigned}}

    calib = calibration if isinstance(calibration, CalibrationSet) else CalibrationSet(calibration)
    check_calibration_task(calib, metadata.get("task"))
    cache_dir = Path(cache_dir)
    use_cache(cache_dir)
    ranges_path = _ranges_cache_path(model, calib, method, op_types, cache_dir)
    ranges_cached = ranges_path.is_file()
    with scratch_folder("quantize") as scratch:
        prepared_path = scratch / "prepared.onnx"
        onnx.save(model, prepared_path)
        quantized_path = scratch / "quantized.onnx"
        if not ranges_cached:
            input_name = source.graph.input[0].name
            ranges = collect_ranges(prepared_path, ({input_name: x} for x in calib.inputs()),
                                    method=METHODS[method], op_types=list(op_types))
            save_ranges(ranges, ranges_path)
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about pre-processing on every call
        with indexed_lookups():  # the same file, for a fraction of the quantizer's CPU time
            quantize_static(
                prepared_path, quantized_path, None,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=True,
                reduce_range=False, activation_type=activation_type, weight_type=weight_type,
                nodes_to_exclude=list(exclude_nodes), calibrate_method=METHODS[method],
                extra_options=extra_options, calibration_cache_path=ranges_path)
        quantized = onnx.load(quantized_path)
    if target in CPU_TARGETS:
        quantized = shapes_read_before_dequantizing(quantized)
    quantized_layers = sorted(_quantized_layers(quantized))
    if target == "tensorrt" and high_precision == "fp16":
        quantized = _to_fp16(quantized)
    set_metadata(quantized, {**metadata, "precision": f"int8-{target}", "quantization": json.dumps({
        "target": target, "method": method, "high_precision": high_precision, "op_types": list(op_types),
        "calibration_sha256": calib.sha256, "calibration_task": calib.manifest.task,
        "excluded_nodes": sorted(exclude_nodes), "unsigned_for_target": unsigned, "rewrites": rewrites})})
    _save(quantized, output_path, lint=target == "tensorrt")
    return QuantizeReport(
        output=str(output_path), target=target, method=method, high_precision=high_precision,
        calibration_set=str(calib.path), calibration_samples=len(calib), ranges_cached=ranges_cached,
        rewrites=rewrites, quantized_layers=quantized_layers, excluded_nodes=sorted(exclude_nodes),
        op_counts=dict(Counter(node.op_type for node in quantized.graph.node).most_common()))


def _quantized_layers(model: onnx.ModelProto) -> set[str]:
    """Layers with weights (`WEIGHTED_OPS`) whose weight arrives through a DequantizeLinear.

    These are what mixed precision chooses among: element-wise ops carry no weights, and whether
    their inputs are quantized follows from their neighbours.
    """
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    return {node.name for node in model.graph.node
            if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in dequantized}


def _check_node_names(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    known = {node.name for node in model.graph.node}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"{len(unknown)} node(s) to keep in high precision are not in the model: "
                        f"{', '.join(unknown[:3])}. Take names from `mirnet quantize --json` or the "
                        "sensitivity report of the same FP32 model.")


def check_calibration_task(calibration: CalibrationSet, task: str | None) -> None:
    """A set degraded for another task calibrates the wrong ranges (a denoiser on clean images)."""
    if task and calibration.manifest.task != task:
        raise UserError(f"The calibration set {calibration.path} was built for {calibration.manifest.task!r} "
                        f"inputs, but the model is a {task!r} model: its activations on such inputs are not "
                        f"what it sees in deployment. Build a set with `mirnet calibrate --task {task}`.")


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Everything outside the INT8 pairs in FP16 (scales too: opset 19), reductions FP32, I/O FP32."""
    from export.precision import convert_to_fp16

    with scratch_folder("quantize") as scratch:
        return onnx.load(convert_to_fp16(model, scratch / "fp16.onnx"))


def _save(model: onnx.ModelProto, path: str | os.PathLike, *, lint: bool) -> None:
    """Check and write atomically; tensorrt-target models must also pass the TensorRT lint."""
    from export.onnx_file import save_onnx

    if lint:
        save_onnx(model, path)
        return
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(path, model.SerializeToString())


def median_cpu_ms(model_path: str | Path, batch: np.ndarray, runs: int = 3) -> float:
    """Median ONNX Runtime CPU latency of one batch after a warm-up run (a quick figure; use mirnet-bench)."""
    from .ort_cpu import cpu_session

    session = cpu_session(model_path)
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
