"""A Q/DQ graph whose layers can be quantized or not at run time, so one session serves every probe.

The budget search asks the same question hundreds of times: how far from FP32 is the output
when only these layers are INT8? Building a copy of the graph per question and an ONNX Runtime
session for it (graph optimization of thousands of nodes) cost more than running it. Here each
Q/DQ edge into a layer becomes `Where(switch, DQ(Q(x)), x)`, and a weight stored quantized becomes
`Where(switch, DQ(w_int8), w_float)`, with one boolean switch per layer fed as the graph input
`SWITCHES`. The INT8 arithmetic is simulated in float (ONNX Runtime cannot fuse QLinearConv
through a Where), which changes the result by rounding only.

The switches follow `quantize_static`'s exclusions: a layer switched off reads float inputs, and
consumers that are not layers read its float output (its output Q/DQ is bypassed), as when the
layer is excluded; a layer switched on reads its Q/DQ inputs whatever its neighbours do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SWITCHES = "mirnet_quantized_layers"


def switchable_quantization(quantized: onnx.ModelProto, prepared: onnx.ModelProto,
                            layers: Sequence[Sequence[str]]) -> onnx.ModelProto:
    """`quantized` with a bool[len(layers)] input `SWITCHES`; switch i on quantizes `layers[i]`.

    `prepared` is the float graph that was quantized: it supplies the float weights of layers
    whose weights `quantized` stores as INT8 initializers.
    """
    layer_of = {node: index for index, layer in enumerate(layers) for node in layer}
    producers = {out: node for node in quantized.graph.node for out in node.output}
    prepared_inputs = {node.name: list(node.input) for node in prepared.graph.node}
    prepared_weights = {init.name: init for init in prepared.graph.initializer}

    model = onnx.ModelProto()
    model.CopyFrom(quantized)
    present = {init.name for init in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    switch_of: dict[int, str] = {}  # layer index -> its scalar switch tensor
    switched: dict[tuple[str, int], str] = {}  # (quantized tensor, layer index) -> the Where output

    def switch(index: int) -> str:
        if index not in switch_of:
            name = f"{SWITCHES}/{index}"
            position = numpy_helper.from_array(np.array(index, np.int64), f"{name}/index")
            model.graph.initializer.append(position)
            nodes.append(helper.make_node("Gather", [SWITCHES, f"{name}/index"], [name], name=name, axis=0))
            switch_of[index] = name
        return switch_of[index]

    for node in list(model.graph.node):
        for position, name in enumerate(node.input):
            choice = _float_source(node, position, name, layer_of, producers, prepared_inputs)
            if choice is None:
                continue
            index, float_name = choice
            if float_name not in present and float_name in prepared_weights:
                model.graph.initializer.append(prepared_weights[float_name])
                present.add(float_name)
            key = (name, index)
            if key not in switched:
                switched[key] = f"{name}/switch{index}"
                nodes.append(helper.make_node("Where", [switch(index), name, float_name], [switched[key]],
                                              name=switched[key]))
            node.input[position] = switched[key]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.input.append(helper.make_tensor_value_info(SWITCHES, TensorProto.BOOL, [len(layers)]))
    return model


def _float_source(node: onnx.NodeProto, position: int, name: str, layer_of: dict[str, int],
                  producers: dict[str, onnx.NodeProto],
                  prepared_inputs: dict[str, list[str]]) -> tuple[int, str] | None:
    """(layer whose switch decides, float tensor) for a dequantized input of `node`, or None when
    no switch applies (not dequantized, or a Q/DQ that no layer's exclusion would remove)."""
    dequantize = producers.get(name)
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return None
    quantize = producers.get(dequantize.input[0])
    if quantize is None or quantize.op_type != "QuantizeLinear":  # a weight stored quantized
        if node.name not in layer_of:
            return None
        return layer_of[node.name], prepared_inputs[node.name][position]
    if node.name in layer_of:  # an input of a layer: quantized when the layer is
        return layer_of[node.name], quantize.input[0]
    producer = producers.get(quantize.input[0])  # the output of a layer, read by a non-layer
    if producer is None or producer.name not in layer_of:
        return None
    return layer_of[producer.name], quantize.input[0]


def switches(count: int, quantized: Sequence[int] | None = None) -> np.ndarray:
    """The `SWITCHES` feed: only the layers at the indices `quantized` (None: all of them) on."""
    if quantized is None:
        return np.ones(count, dtype=bool)
    feed = np.zeros(count, dtype=bool)
    feed[list(quantized)] = True
    return feed
