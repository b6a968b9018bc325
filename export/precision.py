"""FP16 variant: a strongly typed FP16 graph with FP32 I/O and FP32 islands where FP16 is unsafe.

TensorRT 11 builds strongly typed networks only, so precision lives in the graph
(DESIGN.md, DEPLOY_STACK.md §1.3). The conversion is ONNX Runtime's maintained fork of
onnxconverter-common's float16 converter (`onnxruntime.transformers.float16`, shipped with
onnxruntime): unlike the original it keeps Resize `scales` float32, so Resize can run in
FP16 instead of being blocked. Two things are done after it:
- Cast round trips fp32 -> fp16 -> fp32 between two FP32 nodes are bypassed: they cost two
  casts and round (or overflow to inf) exactly the values that were meant to stay FP32.
- Nodes are sorted topologically (the converter appends its Casts at the end of the graph).
Before them, exact duplicate nodes are dropped: onnxruntime 1.30's converter inserts the same
Cast twice where one FP16 tensor feeds two FP32 nodes (1.32's does not), a graph that declares
one output twice and that onnx_ir (rightly) refuses to read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import onnx
import onnx_ir as ir
import onnxruntime
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass
from onnxruntime.transformers import float16

from mirnet_deploy.errors import UserError

from .onnx_file import read_metadata, save_onnx, set_metadata
from .onnx_read import load_onnx

#: Op types kept FP32 by default (DEPLOY_STACK.md §5): global average pooling and means/sums
#: over a whole image overflow an FP16 accumulator (~2 M pixels at 1080p; FP16 max 65504),
#: public image-restoration nets give NaN on TensorRT FP16 there, and Softmax is cheap to keep
#: exact. All are tiny next to the convolutions.
DEFAULT_FP32_OPS = ("GlobalAveragePool", "ReduceMean", "ReduceSum", "Softmax")


def convert_to_fp16(
    source: onnx.ModelProto | str | os.PathLike,
    path: str | os.PathLike,
    *,
    fp32_ops: Iterable[str] = DEFAULT_FP32_OPS,
    fp32_nodes: Iterable[str] = (),
) -> Path:
    """Write the FP16 variant of the FP32 model `source` to `path`; return the path.

    `fp32_ops` are op types and `fp32_nodes` node names (e.g. from an overflow audit)
    that keep computing in FP32. Raises UserError on a non-FP32 source or unknown node names.
    """
    model = onnx.ModelProto()
    model.CopyFrom(source if isinstance(source, onnx.ModelProto) else load_onnx(source))
    fp32_ops, fp32_nodes = sorted(set(fp32_ops)), sorted(set(fp32_nodes))
    _check_source(model, fp32_nodes)
    # Stale value_info would survive the conversion with FP16 types even where the converter
    # keeps a tensor FP32 (Resize scales); the converter re-infers every type it needs.
    del model.graph.value_info[:]
    converted = float16.convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *fp32_ops],  # the defaults lack FP16 kernels
        node_block_list=fp32_nodes,
    )
    ir_model = ir.from_proto(drop_duplicate_nodes(converted))
    _bypass_fp16_round_trips(ir_model.graph)
    RemoveUnusedNodesPass()(ir_model)
    TopologicalSortPass()(ir_model)
    result = ir.to_proto(ir_model)
    set_metadata(
        result,
        {"precision": "fp16", "fp32_op_types": json.dumps(fp32_ops), "fp32_nodes": json.dumps(fp32_nodes)},
    )
    save_onnx(result, path)
    return Path(path)


def drop_duplicate_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` without repeated copies of a node (byte-identical NodeProtos, first one kept).

    Two different nodes declaring one output is a broken graph, not a duplicate: UserError.
    """
    producers: dict[str, bytes] = {}
    kept = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if any(producers.get(output) == key for output in node.output):
            continue
        clash = next((output for output in node.output if output in producers), None)
        if clash is not None:
            raise UserError(
                f"The FP16 converter (onnxruntime {onnxruntime.__version__}) produced two different "
                f"nodes that both write {clash!r}: the graph is broken. Try another onnxruntime version."
            )
        producers.update(dict.fromkeys(node.output, key))
        kept.append(node)
    if len(kept) < len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return model


def _check_source(model: onnx.ModelProto, fp32_nodes: list[str]) -> None:
    precision = read_metadata(model).get("precision", "fp32")
    if precision != "fp32":
        raise UserError(
            f"The source model is {precision}, not fp32: FP16 conversion starts from the FP32 export "
            "(`mirnet export --precision fp32`), never from an already reduced model."
        )
    names = {node.name for node in model.graph.node}
    unknown = [name for name in fp32_nodes if name not in names]
    if unknown:
        raise UserError(
            f"{len(unknown)} node name(s) to keep in FP32 are not in the model: {', '.join(unknown[:3])}"
            f"{' ...' if len(unknown) > 3 else ''}. Take the names from the FP32 ONNX this conversion "
            "starts from (node names change between exports)."
        )


def _bypass_fp16_round_trips(graph: ir.Graph) -> None:
    """Feed the FP32 source of every Cast(fp32->fp16)->Cast(fp16->fp32) chain to its consumers."""
    for node in list(graph):
        source = node.inputs[0].producer() if node.op_type == "Cast" else None
        if (
            source is not None
            and source.op_type == "Cast"
            and node.attributes["to"].as_int() == ir.DataType.FLOAT
            and source.attributes["to"].as_int() == ir.DataType.FLOAT16
            and source.inputs[0].dtype == ir.DataType.FLOAT
            and not node.outputs[0].is_graph_output()
        ):
            ir.convenience.replace_all_uses_with(node.outputs[0], source.inputs[0])
