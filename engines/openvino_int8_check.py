"""Whether this OpenVINO computes our INT8 Q/DQ layouts correctly: measured probes.

OpenVINO 2026.4.1's CPU plugin fuses a quantization into the operation before it, and gets some
of these fusions wrong where ONNX Runtime computes the ONNX result:

- the `tensorrt` target (calibration/quantize.py) quantizes convolution inputs only, right after
  float operations. ReduceMax over the channels -> s8 Q/DQ -> INT8 Conv returns all zeros. MIRNet's
  spatial attention is that pattern (max and mean over the channels, concatenated, then a 5x5
  convolution), and its attention outputs are concatenated and quantized the same way. On the
  denoise demo this cost 1.94 dB against PyTorch FP32, where ONNX Runtime runs the same file within
  0.08 dB. With OpenVINO's low-precision transformations switched off the file runs within 0.08 dB
  too, which places the fault there, but then it runs slower than FP32 and is no INT8 engine.
- any Concat -> s8 Q/DQ -> INT8 Conv, also of INT8 inputs (`FAULTS`), with the AVX-512 VNNI
  kernels (jit/brgconv_avx512_*); its AMX kernels (brgconv_avx512_amx_i8, on a Xeon with AMX-INT8)
  compute it right. The symmetric CPU target therefore quantizes such concatenations as u8 with a
  zero point (`unsigned_for_target`), which OpenVINO computes right with either, so that one INT8
  file is right on every CPU; its probes check exactly that layout.
- the `cpu` target (u8 activations with zero points everywhere) runs correctly.

So building or compiling an INT8 model for OpenVINO first runs its layout's smallest cases on the
device (milliseconds, once per process) against ONNX Runtime, and refuses the model with the
measured numbers when OpenVINO gets them wrong. An OpenVINO release that computes the probes
correctly lifts the refusal by itself; the C++ CTest `run.parity.int8_tensorrt` then judges the
whole TensorRT-target model against the parity thresholds.
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
CHANNELS = 16


@dataclass(frozen=True)
class Pattern:
    """x -> [Q/DQ of x as `input_type`] -> each branch (an op over x) -> Concat -> Q/DQ as `concat_type`
    -> Conv with per-channel symmetric s8 Q/DQ weights. Types: 's8' (zero point 0), 'u8' (zero point
    128), or None (float: no Q/DQ)."""

    branches: tuple[str, ...]  # ReduceMax / ReduceMean over the channels (keepdims), or Identity / Sigmoid
    concat_type: str
    input_type: str | None = None


#: Each layout (a model's precision metadata) -> the smallest cases of its pattern OpenVINO must compute.
PROBES: dict[str, dict[str, Pattern]] = {
    TENSORRT_TARGET: {
        "ReduceMax over the channels -> Q/DQ -> INT8 Conv": Pattern(("ReduceMax",), "s8"),
        "Concat(ReduceMax, ReduceMean) over the channels -> Q/DQ -> INT8 Conv (MIRNet's spatial attention)":
            Pattern(("ReduceMax", "ReduceMean"), "s8"),
    },
    "int8-cpu-symmetric": {
        "Concat of s8 tensors -> u8 Q/DQ -> INT8 Conv (MIRNet's attention outputs)":
            Pattern(("Identity", "Sigmoid"), "u8", input_type="s8"),
        "Concat(ReduceMax, ReduceMean) of an s8 tensor -> u8 Q/DQ -> INT8 Conv (spatial attention)":
            Pattern(("ReduceMax", "ReduceMean"), "u8", input_type="s8"),
        "s8 Q/DQ -> Sigmoid -> s8 Q/DQ -> INT8 Conv": Pattern(("Sigmoid",), "s8", input_type="s8"),
    },
}
#: Cases OpenVINO 2026.4.1 is known to get wrong, which no layout of ours contains any more (the
#: symmetric CPU target's u8 concatenations exist because of it); tests watch for a release that fixes it.
FAULTS: dict[str, Pattern] = {
    "Concat of s8 tensors -> s8 Q/DQ -> INT8 Conv": Pattern(("Identity", "Sigmoid"), "s8", input_type="s8"),
}
#: How messages name each layout.
LAYOUT_NAMES = {TENSORRT_TARGET: "TensorRT-target", "int8-cpu-symmetric": "symmetric CPU-target"}
_ZERO_POINTS = {"s8": np.array(0, np.int8), "u8": np.array(128, np.uint8)}


@dataclass(frozen=True)
class ProbeResult:
    case: str
    largest_output: float  # the ONNX result's largest magnitude (ONNX Runtime)
    largest_error: float  # OpenVINO's largest absolute difference from it
    kernel: str = ""  # the kernel OpenVINO ran the convolution with (brgconv_avx512_amx_i8, ...)

    @property
    def correct(self) -> bool:
        return self.largest_error <= RELATIVE_TOLERANCE * self.largest_output


def _qdq(tensor: str, kind: str, scale: float, nodes: list[onnx.NodeProto],
         initializers: list[onnx.TensorProto]) -> str:
    """Appends Q/DQ of `tensor` as `kind` with `scale`; returns the dequantized tensor's name."""
    scale_name, zero_name = f"{tensor}_scale", f"{tensor}_zero"
    initializers += [numpy_helper.from_array(np.array(scale, np.float32), scale_name),
                     numpy_helper.from_array(_ZERO_POINTS[kind], zero_name)]
    nodes += [helper.make_node("QuantizeLinear", [tensor, scale_name, zero_name], [f"{tensor}_q"]),
              helper.make_node("DequantizeLinear", [f"{tensor}_q", scale_name, zero_name], [f"{tensor}_dq"])]
    return f"{tensor}_dq"


def probe_model(pattern: Pattern) -> onnx.ModelProto:
    """The ONNX graph of `pattern` (see `Pattern`), on a 1x16x24x24 input."""
    reduced = any(branch.startswith("Reduce") for branch in pattern.branches)
    concat_channels = len(pattern.branches) * (1 if reduced else CHANNELS)
    weights = np.random.default_rng(0).normal(0, 0.1, (1, concat_channels, 5, 5)).astype(np.float32)
    nodes: list[onnx.NodeProto] = []
    initializers = [numpy_helper.from_array(np.array([1], np.int64), "axes")] if reduced else []
    initializers += [numpy_helper.from_array(weights, "w"),
                    numpy_helper.from_array(np.abs(weights).max(keepdims=True).reshape(1) / 127, "w_scale"),
                    numpy_helper.from_array(np.zeros(1, np.int8), "w_zero")]
    x = _qdq("x", pattern.input_type, 0.003, nodes, initializers) if pattern.input_type else "x"
    outputs = []
    for index, op in enumerate(pattern.branches):
        inputs = [x, "axes"] if op.startswith("Reduce") else [x]
        keep = {"keepdims": 1} if op.startswith("Reduce") else {}
        nodes.append(helper.make_node(op, inputs, [f"branch{index}"], **keep))
        outputs.append(f"branch{index}")
    nodes.append(helper.make_node("Concat", outputs, ["c"], axis=1))
    concat = _qdq("c", pattern.concat_type, 0.004, nodes, initializers)
    nodes += [
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["w_q"], axis=0),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
        helper.make_node("Conv", [concat, "w_dq"], ["y"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
    ]
    graph = helper.make_graph(nodes, "openvino_int8_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 24, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    # IR 9 is opset 19's own: helper.make_model would stamp the installed onnx's newest IR (14 with onnx
    # 1.23), which onnxruntime < 1.32 refuses (seen on the GPU machine's onnxruntime 1.30).
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def run_probe(case: str, pattern: Pattern, device: str) -> ProbeResult:
    """One probe on OpenVINO (`device`, f32 precision hint) against ONNX Runtime on the CPU."""
    model = probe_model(pattern).SerializeToString()
    x = np.random.default_rng(1).uniform(-0.15, 0.35, (1, CHANNELS, 24, 24)).astype(np.float32)
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), device,
                                  {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    got = request.infer([x])[compiled.output(0)]
    kernel = next((info.exec_type for info in request.profiling_info if info.node_type == "Convolution"), "")
    return ProbeResult(case, float(np.abs(expected).max()), float(np.abs(got - expected).max()), kernel)


@functools.cache
def probe(device: str, layout: str = TENSORRT_TARGET) -> tuple[ProbeResult, ...]:
    """Every probe of `layout` on `device`, once per process."""
    return tuple(run_probe(case, pattern, device) for case, pattern in PROBES.get(layout, {}).items())


def miscomputed_probes(declared_precision: str | None, device: str) -> list[ProbeResult]:
    """The probes of the model's layout (its precision metadata) that OpenVINO gets wrong on `device`."""
    if declared_precision not in PROBES:
        return []
    return [result for result in probe(device, declared_precision) if not result.correct]


def check_int8_layout(declared_precision: str | None, device: str, onnx_path: str | os.PathLike) -> None:
    """UserError when OpenVINO miscomputes a probe of the INT8 layout of `onnx_path`."""
    wrong = miscomputed_probes(declared_precision, device)
    if not wrong:
        return
    from .openvino_build import openvino_version

    measured = "; ".join(f"{result.case}: largest error {result.largest_error:.3g} on outputs up to "
                         f"{result.largest_output:.3g}" for result in wrong)
    consequence = (" On the denoise demo that is 1.9 dB below PyTorch FP32, where ONNX Runtime runs the same "
                   "file within 0.1 dB." if declared_precision == TENSORRT_TARGET else "")
    raise UserError(
        f"OpenVINO {openvino_version()} on {device} miscomputes the {LAYOUT_NAMES[declared_precision]} INT8 "
        f"layout of {onnx_path} (measured here against ONNX Runtime: {measured}).{consequence} It is "
        f"refused rather than built. For OpenVINO, quantize for CPUs (`mirnet quantize --target cpu`, or "
        f"`mirnet build --task TASK --precision int8 --backend openvino`); to check this file on a CPU, use "
        f"--backend ort.")
