"""What keeping a layer in float costs at run time, so the PSNR-budget search keeps the cheap ones.

A layer kept in float loses the INT8 speed-up of its multiply-accumulates and breaks the INT8
chain around it: its inputs and output cross a float/INT8 boundary as float tensors instead of
8-bit ones. Measured on OpenVINO (the runtime `auto` picks for the demo's INT8), denoise demo
model, cpu-symmetric, 512x512, 9 alternated runs in one process (`engines.cpu_choice.
time_alternately`), each form keeping 20 nodes of one kind in float; median added time over
all-INT8 (2,654 ms; FP32 4,755 ms; load average about 9 on 2 cores, so ratios only):

- 20 full-scale 3x3 convolutions (20,118 MACs per pixel): +317 ms, 0.0158 ms per MAC/pixel,
  about 55 % of their float time: the cost of a convolution is its MACs;
- 20 residual Adds (208 output elements per pixel): +326 ms, as much as those convolutions:
  1.57 ms per element/pixel, 100 MAC-equivalents per element;
- 20 attention Muls (292): +206 ms, 45 MAC-equivalents per element;
- 20 LeakyRelus (216): +43 ms, 13 per element (OpenVINO runs an activation as a post-op of
  the convolution before it, float or not).

So a layer costs its MACs plus `BOUNDARY_MACS[op]` per element of its output, both per input
pixel, read from one FP32 forward pass of a small image with every layer's output exposed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .quantize import WEIGHTED_OPS

#: MAC-equivalents a float/INT8 boundary costs per element of a kept element-wise node's output
#: (measured: see the module docstring); other element-wise op types count as the dearest.
BOUNDARY_MACS = {"Add": 100.0, "Mul": 45.0, "LeakyRelu": 13.0}
UNMEASURED_BOUNDARY_MACS = max(BOUNDARY_MACS.values())
#: The side of the image the cost pass runs on: a multiple of every family's size multiple (8)
#: with room for three 2x downsamplings, and small, so that exposing every layer's output stays cheap.
COST_PROBE_SIZE = 32


def float_costs(prepared: onnx.ModelProto, layers: Sequence[Sequence[str]],
                threads: int | None = None) -> list[float]:
    """Per layer (a list of node names of `prepared`): MAC-equivalents per input pixel that keeping
    it in float adds to an INT8 model (its MACs, or `BOUNDARY_MACS` per output element)."""
    nodes = {node.name: node for node in prepared.graph.node}
    weights = {init.name: tuple(init.dims) for init in prepared.graph.initializer}
    outputs = list(dict.fromkeys(nodes[name].output[0] for layer in layers for name in layer))
    probe = onnx.ModelProto()
    probe.CopyFrom(prepared)
    exposed = {out.name for out in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name)
                              for name in outputs if name not in exposed)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    channels = image.shape[1] if isinstance(image.shape[1], int) else 3
    feed = np.full((1, channels, COST_PROBE_SIZE, COST_PROBE_SIZE), 0.5, np.float32)
    shapes = {name: value.shape for name, value in zip(
        [out.name for out in session.get_outputs()], session.run(None, {image.name: feed}), strict=True)}
    pixels = COST_PROBE_SIZE**2
    return [sum(_node_cost(nodes[name], shapes[nodes[name].output[0]], weights) for name in layer) / pixels
            for layer in layers]


def _node_cost(node: onnx.NodeProto, output_shape: tuple[int, ...],
               weights: dict[str, tuple[int, ...]]) -> float:
    weight = weights.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None or node.op_type not in WEIGHTED_OPS:
        return BOUNDARY_MACS.get(node.op_type, UNMEASURED_BOUNDARY_MACS) * float(np.prod(output_shape))
    return _macs(node, output_shape, weight)


def _macs(node: onnx.NodeProto, output_shape: tuple[int, ...], weight: tuple[int, ...]) -> float:
    """Multiply-accumulates of one weighted node, from its output shape."""
    if node.op_type == "Conv":  # each output element: one filter of Cin/groups x kh x kw
        return float(np.prod(output_shape)) * float(np.prod(weight[1:]))
    if node.op_type == "ConvTranspose":  # each input pixel meets Cin x Cout/groups x kh x kw weights
        strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1, 1])
        input_pixels = output_shape[0] * float(np.prod(output_shape[2:])) / float(np.prod(strides))
        return input_pixels * float(np.prod(weight))
    transposed = any(a.name == "transB" and a.i for a in node.attribute)  # Gemm's weight as (N, K)
    return float(np.prod(output_shape)) * float(weight[1] if transposed else weight[0])  # K per output
