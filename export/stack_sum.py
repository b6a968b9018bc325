"""Sums over a stacked axis as sums of the stacked tensors: ReduceSum(stack(x_i), k) = x_0 + x_1 + ...

Why: SKFF (MIRNet, MIRNet-v2) fuses its branches with `torch.stack(feats, 1).sum(1)` and
`(stack * attention).sum(1)`, which export as Unsqueeze -> Concat -> [Mul ->] ReduceSum over a
5-D tensor. ONNX Runtime's CPU provider has no INT8 kernel for any of these: in a Q/DQ model
every branch is dequantized, stacked and summed in float, the Mul's 5-D product is requantized
and dequantized again, and the NHWC layout of the quantized convolutions is transposed back to
NCHW around each fusion. On MIRNet-v2 at 256x256 those steps took 40 % of the INT8 run (the
stacked ReduceSums alone 20 %), which is why its INT8 was barely faster than FP32
(`python -m bench.layer_profile M.onnx --backend ort --nodes 20`, README "Every official preset").
As element-wise Adds and Muls of 4-D tensors the same arithmetic runs as QLinearAdd/QLinearMul
in the NHWC chain of the convolutions. In FP32 the 5-D stack is a copy that the Adds skip: the CPU
engines compile FP32 models rewritten too (`engines.cpu_graph`); the export itself stays as it is.

The two forms, for a ReduceSum over one axis k with keepdims 0, where every Concat input along
k is an Unsqueeze at k of a tensor x_i:

    ReduceSum(Concat(x_i))                  -> x_0 + x_1 + ... (left to right)
    ReduceSum(Concat(x_i) * w), w[k] == n   -> x_0 * w_0 + x_1 * w_1 + ...,  w_i = Gather(w, i, axis=k)

Both are exact in float32 for two stacked tensors (one addition either way) and for more they add
in the order ONNX Runtime's ReduceSum does (checked against it, `tests/test_stack_sum.py`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def rewrite_stacked_sums(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite every ReduceSum over a stacked axis (the two forms above); return the model and how many.

    `model` is not modified. Nodes left without consumers (the stacks) are removed; the rest of the
    graph, node order included, is kept, so the result stays topologically sorted.
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    inferred = onnx.shape_inference.infer_shapes(result).graph
    ranks = {info.name: len(info.type.tensor_type.shape.dim)
             for info in (*inferred.value_info, *inferred.input, *inferred.output)
             if info.type.tensor_type.HasField("shape")}
    dims = {info.name: info.type.tensor_type.shape.dim for info in inferred.value_info}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    constants.update({node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node
                      if node.op_type == "Constant" and node.attribute[0].name == "value"})
    producer = {output: node for node in graph.node for output in node.output}

    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        replacement = None
        if node.op_type == "ReduceSum":
            replacement = _unstacked_sum(node, producer, constants, ranks, dims)
        if replacement is None:
            new_nodes.append(node)
            continue
        new_nodes.extend(replacement[0])
        graph.initializer.extend(replacement[1])
        count += 1
    del graph.node[:]
    graph.node.extend(_without_dead_nodes(new_nodes, {output.name for output in graph.output}))
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return result, count


def _unstacked_sum(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                   constants: dict[str, np.ndarray], ranks: dict[str, int],
                   dims: dict[str, object]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """The nodes (and index initializers) that replace `node`, or None where it is not a stacked sum."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("keepdims", 1) != 0 or node.input[0] not in ranks:
        return None
    axes = attributes.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1] in constants:
        axes = constants[node.input[1]].reshape(-1).tolist()
    rank = ranks[node.input[0]]
    if axes is None or len(axes) != 1:
        return None
    axis = axes[0] % rank
    summed = producer.get(node.input[0])
    if summed is None:
        return None
    parts = _stacked(summed, axis, rank, producer, constants)
    if parts is not None:
        return _add_chain(node, parts), []
    if summed.op_type != "Mul":
        return None
    for stack_input, weight in (summed.input, reversed(summed.input)):
        stack = producer.get(stack_input)
        parts = _stacked(stack, axis, rank, producer, constants) if stack is not None else None
        if parts is None or ranks.get(weight) != rank or not _has_dim(dims.get(weight), axis, len(parts)):
            continue
        nodes, indices = [], []
        products = []
        for i, part in enumerate(parts):
            stem = f"{node.output[0]}/unstacked_{i}"  # tensor names: from the output's, which is unique
            indices.append(numpy_helper.from_array(np.array(i, dtype=np.int64), f"{stem}/index"))
            nodes.append(helper.make_node("Gather", [weight, indices[-1].name], [f"{stem}/weight"],
                                          name=f"{_name(node)}/unstacked_{i}/Gather", axis=axis))
            nodes.append(helper.make_node("Mul", [part, f"{stem}/weight"], [f"{stem}/product"],
                                          name=f"{_name(node)}/unstacked_{i}/Mul"))
            products.append(f"{stem}/product")
        return nodes + _add_chain(node, products), indices
    return None


def _stacked(node: onnx.NodeProto, axis: int, rank: int, producer: dict[str, onnx.NodeProto],
             constants: dict[str, np.ndarray]) -> list[str] | None:
    """The tensors x_i if `node` is Concat(Unsqueeze(x_i, k)...) along `axis` (of a rank-`rank` result)."""
    if node.op_type != "Concat":
        return None
    concat_axis = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "axis")
    if concat_axis % rank != axis:
        return None
    parts = []
    for name in node.input:
        unsqueeze = producer.get(name)
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
            return None
        axes = next((helper.get_attribute_value(a) for a in unsqueeze.attribute if a.name == "axes"), None)
        if axes is None and len(unsqueeze.input) > 1 and unsqueeze.input[1] in constants:
            axes = constants[unsqueeze.input[1]].reshape(-1).tolist()
        if axes is None or [a % rank for a in axes] != [axis]:
            return None
        parts.append(unsqueeze.input[0])
    return parts if len(parts) > 1 else None


def _has_dim(shape_dims: object, axis: int, size: int) -> bool:
    return (shape_dims is not None and shape_dims[axis].HasField("dim_value")
            and shape_dims[axis].dim_value == size)


def _name(node: onnx.NodeProto) -> str:
    """The node's name, or its output's where it has none (names of new nodes start with it)."""
    return node.name or node.output[0]


def _add_chain(node: onnx.NodeProto, terms: list[str]) -> list[onnx.NodeProto]:
    """Left-to-right Adds of `terms`, the last one writing the ReduceSum's output."""
    nodes = []
    total = terms[0]
    for i, term in enumerate(terms[1:], start=1):
        output = node.output[0] if i == len(terms) - 1 else f"{node.output[0]}/unstacked_sum_{i}"
        name = f"{_name(node)}/unstacked_Add_{i}"
        nodes.append(helper.make_node("Add", [total, term], [output], name=name))
        total = output
    return nodes


def _without_dead_nodes(nodes: list[onnx.NodeProto], graph_outputs: set[str]) -> list[onnx.NodeProto]:
    """`nodes` less those whose outputs nothing reads (repeatedly: a stack's Unsqueezes after its Concat)."""
    kept = list(nodes)
    while True:
        used = graph_outputs | {name for node in kept for name in node.input}
        alive = [node for node in kept if any(output in used for output in node.output)]
        if len(alive) == len(kept):
            return alive
        kept = alive
