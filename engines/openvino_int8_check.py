"""Whether this OpenVINO computes the TensorRT-target INT8 layout correctly: a measured probe.

The `tensorrt` Q/DQ target (calibration/quantize.py) quantizes convolution inputs only, right
after float operations (reductions, element-wise products, concatenations). OpenVINO 2026.4.1's
CPU plugin fuses such a quantization into the float operation before it and miscomputes it. The
smallest case: ReduceMax over the channels -> QuantizeLinear/DequantizeLinear -> a convolution
with Q/DQ weights returns all zeros, where ONNX Runtime returns the ONNX result. MIRNet's spatial
attention is that pattern (max and mean over the channels, concatenated, then a 5x5 convolution),
and its attention outputs are concatenated and quantized the same way. On the denoise demo this
cost 1.94 dB against PyTorch FP32, where ONNX Runtime runs the same file within 0.08 dB. With
OpenVINO's low-precision transformations switched off the file runs within 0.08 dB too, which
places the fault there, but then it runs slower than FP32 and is no INT8 engine. The `cpu`
target (every activation between convolutions quantized) runs correctly on OpenVINO.

So building or compiling an `int8-tensorrt` model for OpenVINO first runs the smallest cases on
the device (milliseconds, once per process) against ONNX Runtime, and refuses the model with the
measured numbers when OpenVINO gets them wrong. An OpenVINO release that computes the probes
correctly lifts the refusal by itself; the C++ CTest `run.parity.int8_tensorrt` then judges the
whole model against the parity thresholds.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import TensorProto, helper, numpy_helper

from mirnet_deploy.errors import UserError

#: The precision metadata of the TensorRT-target Q/DQ models (`mirnet quantize --target tensorrt`).
TENSORRT_TARGET = "int8-tensorrt"
#: A probe passes when OpenVINO's largest error stays below this share of the largest output:
#: one quantization step of rounding differences, not a wrong kernel.
RELATIVE_TOLERANCE = 0.05
#: Each probe: the float reductions over the channels whose concatenation is quantized.
PROBES = {
    "ReduceMax over the channels -> Q/DQ -> INT8 Conv": ("ReduceMax",),
    "Concat(ReduceMax, ReduceMean) over the channels -> Q/DQ -> INT8 Conv (MIRNet's spatial attention)":
        ("ReduceMax", "ReduceMean"),
}


@dataclass(frozen=True)
class ProbeResult:
    case: str
    largest_output: float  # the ONNX result's largest magnitude (ONNX Runtime)
    largest_error: float  # OpenVINO's largest absolute difference from it

    @property
    def correct(self) -> bool:
        return self.largest_error <= RELATIVE_TOLERANCE * self.largest_output


def probe_model(reductions: tuple[str, ...], channels: int = 16) -> onnx.ModelProto:
    """x -> each reduction over the channels (keepdims) -> Concat -> symmetric INT8 Q/DQ ->
    5x5 Conv with per-channel symmetric INT8 Q/DQ weights: the TensorRT target's layout."""
    weights = np.random.default_rng(0).normal(0, 0.1, (1, len(reductions), 5, 5)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.004, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(np.abs(weights).max(keepdims=True).reshape(1) / 127, "w_scale"),
        numpy_helper.from_array(np.zeros(1, np.int8), "w_zero"),
    ]
    reduced = [f"reduced{index}" for index in range(len(reductions))]
    nodes = [helper.make_node(op, ["x", "axes"], [name], keepdims=1)
             for op, name in zip(reductions, reduced, strict=True)]
    nodes += [
        helper.make_node("Concat", reduced, ["c"], axis=1),
        helper.make_node("QuantizeLinear", ["c", "x_scale", "x_zero"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "x_scale", "x_zero"], ["c_dq"]),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["w_q"], axis=0),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
        helper.make_node("Conv", ["c_dq", "w_dq"], ["y"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
    ]
    graph = helper.make_graph(nodes, "openvino_int8_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 24, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    # IR 9 is opset 19's own: helper.make_model would stamp the installed onnx's newest IR (14 with onnx
    # 1.23), which onnxruntime < 1.32 refuses (seen on the GPU machine's onnxruntime 1.30).
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def run_probe(case: str, reductions: tuple[str, ...], device: str) -> ProbeResult:
    """One probe on OpenVINO (`device`, f32 precision hint) against ONNX Runtime on the CPU."""
    model = probe_model(reductions).SerializeToString()
    x = np.random.default_rng(1).uniform(-0.15, 0.35, (1, 16, 24, 24)).astype(np.float32)
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), device, {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled([x])[compiled.output(0)]
    return ProbeResult(case, float(np.abs(expected).max()), float(np.abs(got - expected).max()))


@functools.cache
def probe(device: str) -> tuple[ProbeResult, ...]:
    """Every probe on `device`, once per process."""
    return tuple(run_probe(case, reductions, device) for case, reductions in PROBES.items())


def miscomputed_probes(declared_precision: str | None, device: str) -> list[ProbeResult]:
    """The probes OpenVINO gets wrong on `device`, when the model is TensorRT-target INT8 (else none)."""
    if declared_precision != TENSORRT_TARGET:
        return []
    return [result for result in probe(device) if not result.correct]


def check_int8_layout(declared_precision: str | None, device: str, onnx_path: str | os.PathLike) -> None:
    """UserError when `onnx_path` is a TensorRT-target INT8 model and OpenVINO miscomputes the probes."""
    wrong = miscomputed_probes(declared_precision, device)
    if not wrong:
        return
    from .openvino_build import openvino_version

    measured = "; ".join(f"{result.case}: largest error {result.largest_error:.3g} on outputs up to "
                         f"{result.largest_output:.3g}" for result in wrong)
    raise UserError(
        f"OpenVINO {openvino_version()} on {device} miscomputes the TensorRT-target INT8 layout of "
        f"{onnx_path} (measured here against ONNX Runtime: {measured}). On the denoise demo that is "
        f"1.9 dB below PyTorch FP32, where ONNX Runtime runs the same file within 0.1 dB, so it is "
        f"refused rather than built. For OpenVINO, quantize for CPUs (`mirnet quantize --target cpu`, or "
        f"`mirnet build --task TASK --precision int8 --backend openvino`); to check this TensorRT file "
        f"on a CPU, use --backend ort.")
