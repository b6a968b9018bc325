"""The graph the CPU engines (ONNX Runtime, OpenVINO) compile: the ONNX model after exact rewrites that
CPU runtimes run faster.

SKFF (MIRNet, MIRNet-v2) fuses its branches with sums over a stacked axis, which the export writes as
5-D Unsqueeze -> Concat -> [Mul ->] ReduceSum; as Adds of the branches (`export.stack_sum`, bit-exact
on ONNX Runtime) the same arithmetic skips the 5-D copies (README "FP32 at >= 70 %": the measurement).
The rewrite is made when an engine is built, not in the export: the ONNX file stays the graph TensorRT
reads (it has reduce fusions of its own) and the FP16 audit checks, and nothing made from it changes.

Only FP32 graphs (BF16 engines compile the FP32 graph): the INT8 CPU targets were rewritten before
quantization (`calibration.quantize.prepare`), the TensorRT target is what TensorRT sees, and in FP16
graphs the sums read the stacks through a Cast to FP32, which the rewrite does not match. The
engine's manifest records how many sums were rewritten (`build_options.graph_rewrites`) and its cache
key names the rewrite code (`cache_option`), so an engine built from the plain graph is not reused.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import onnx

from export.onnx_read import load_onnx
from export.stack_sum import rewrite_stacked_sums

from .cache import precision_family

#: The rewrites, by the names manifests record them under.
REWRITES = ("stacked_sum_to_adds",)
#: The ONNX precisions whose graphs CPU engines rewrite (see the module docstring).
REWRITTEN_PRECISIONS = ("fp32",)
_REWRITE_SOURCES = (Path(__file__).parents[1] / "export" / "stack_sum.py",)


@functools.cache
def rewrite_code_sha256() -> str:
    """sha256 of the rewrites' source: engines key on it, so code that rewrites differently rebuilds them."""
    digest = hashlib.sha256()
    for source in _REWRITE_SOURCES:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def rewritten(precision: str) -> bool:
    """Whether CPU engines of an ONNX model of `precision` compile the rewritten graph."""
    return precision_family(precision) in REWRITTEN_PRECISIONS


def cache_option(precision: str) -> dict[str, Any]:
    """The engine cache key's part for the graph rewrites: empty where the graph is compiled as it is."""
    if not rewritten(precision):
        return {}
    return {"graph_rewrites": {"names": list(REWRITES), "code_sha256": rewrite_code_sha256()[:16]}}


def cpu_graph(onnx_path: str | os.PathLike, precision: str) -> tuple[onnx.ModelProto | None, dict[str, int]]:
    """The rewritten model (None where nothing was rewritten: compile the file as it is) and how many
    nodes each rewrite changed (empty where the precision's graphs are not rewritten)."""
    if not rewritten(precision):
        return None, {}
    model = load_onnx(onnx_path)
    if not any(node.op_type == "ReduceSum" for node in model.graph.node):  # MPRNet: nothing the rewrite
        return None, {"stacked_sum_to_adds": 0}  # matches, so no copy and shape inference of the model
    model, count = rewrite_stacked_sums(model)
    return (model if count else None), {"stacked_sum_to_adds": count}
