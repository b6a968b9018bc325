"""FP16 audit as an ONNX graph: the FP16 ONNX we ship, computed in FP32 with FP16 storage, on ONNX Runtime.

Why a second method beside `fp16_audit` (PyTorch eager with a Python hook on every torch call):
the hook costs minutes per image at 512x512 and did not fit at 1080p, the size where pooled
sums are largest. Here the same emulation is a graph that ONNX Runtime runs at its own speed,
and it is derived from the FP16 ONNX that TensorRT gets (its FP32 islands included), so it
audits that artifact rather than the PyTorch module:

* every tensor the FP16 graph holds in float16 is rounded to float16 values right after the
  node that makes it (Cast to FLOAT16 then back to FLOAT): beyond the FP16 range it becomes
  inf, below the smallest subnormal 0;
* float16 initializers and constants become float32 tensors holding the same (rounded) values;
* every node computes in float32, as TensorRT's FP16 convolutions accumulate in FP32; the
  graph's FP32 nodes (global pools, reductions, Softmax, named nodes) stay FP32 on the rounded
  inputs their Cast gives them, and their outputs are rounded by the Cast the converter put
  after them.

Ops that only move or select values (`VALUE_PRESERVING_OPS`) cannot leave the float16 grid
when their inputs are on it, so their outputs are not rounded again (it would cost time and
change nothing). What this method does not give is the per-layer table (which layer comes
close to the FP16 limit, pool sums): that stays `fp16_audit`'s. Where an overflow happens it
shows up here as inf/NaN in an output, counted per graph output.

ONNX Runtime must not delete the Cast pairs: its CastChainElimination rule would (it is off
by default in 1.32, and this module switches it off explicitly); `tests/test_fp16_emulation.py`
fails if a version starts removing them anyway.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import scratch_folder
from mirnet_deploy.resolutions import format_resolution

from .fp16_audit import audit_inputs, compare_outputs, json_float, worst_error, worst_psnr
from .onnx_export import export_onnx
from .onnx_file import read_metadata, set_metadata
from .onnx_read import load_onnx
from .precision import convert_to_fp16
from .spec import ModelSpec

#: Ops whose outputs are input values moved, selected or compared (or exact zeros): on float16
#: inputs they give float16 values, so rounding them again changes nothing.
VALUE_PRESERVING_OPS = frozenset({
    "Concat", "DepthToSpace", "Expand", "Flatten", "Gather", "Identity", "Max", "MaxPool", "Min",
    "Pad", "Relu", "Reshape", "Slice", "SpaceToDepth", "Split", "Squeeze", "Tile", "Transpose",
    "Unsqueeze",
})
#: ONNX Runtime's session setting (kOrtSessionOptionsEnableCastChainElimination) that would let its
#: optimizer fold the FLOAT -> FLOAT16 -> FLOAT pairs this graph is made of.
CAST_CHAIN_ELIMINATION = "session.enable_cast_chain_elimination"
#: ONNX Runtime's session setting (kOrtSessionOptionsConfigAllowIntraOpSpinning): "0" lets idle
#: intra-op threads sleep instead of polling for work.
INTRA_OP_SPINNING = "session.intra_op.allow_spinning"
#: Node attributes that name an element type (Cast's `to`, ConstantOfShape-like `dtype`).
DTYPE_ATTRIBUTES = ("to", "dtype")


def _float32_tensor(tensor: TensorProto) -> TensorProto:
    """A FLOAT16 tensor as FLOAT with the same values (exact: every float16 is a float32)."""
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed tensor of `model` (shape inference fills in the intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _compute_in_float32(node: onnx.NodeProto) -> None:
    """Rewrite the node's FLOAT16 attributes (a Cast's target, a tensor value) to FLOAT in place."""
    for attribute in node.attribute:
        if attribute.name in DTYPE_ATTRIBUTES and attribute.i == TensorProto.FLOAT16:
            attribute.i = TensorProto.FLOAT
        elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT16:
            attribute.t.CopyFrom(_float32_tensor(attribute.t))


def emulation_model(fp16: onnx.ModelProto) -> onnx.ModelProto:
    """The FP16 model `fp16` as an FP32 graph that rounds every float16 tensor to float16 values.

    Raises UserError when `fp16` is not an FP16 model or a node output's type cannot be inferred
    (a tensor that could not be rounded would make the audit silently optimistic).
    """
    metadata = read_metadata(fp16)
    if metadata.get("precision") != "fp16":
        raise UserError("The graph FP16 audit starts from the FP16 ONNX (`mirnet export --precision fp16`); "
                        f"this model's precision is {metadata.get('precision', 'not recorded')}.")
    types = _elem_types(fp16)
    model = onnx.ModelProto()
    model.CopyFrom(fp16)
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            graph.initializer[index].CopyFrom(_float32_tensor(init))
    nodes: list[onnx.NodeProto] = []
    rounded = 0
    for node in graph.node:
        untyped = [name for name in node.output if name and name not in types]
        if untyped:
            raise UserError(f"Cannot tell the type of {untyped[0]!r} (node {node.name!r}, {node.op_type}): "
                            "the graph FP16 audit needs every tensor's type to know what to round.")
        _compute_in_float32(node)
        nodes.append(node)
        if node.op_type in VALUE_PRESERVING_OPS:
            continue
        for position, name in enumerate(node.output):
            if name and types[name] == TensorProto.FLOAT16:
                node.output[position] = f"{name}_unrounded"
                nodes += [helper.make_node("Cast", [f"{name}_unrounded"], [f"{name}_fp16"],
                                           name=f"{name}_round_fp16", to=TensorProto.FLOAT16),
                          helper.make_node("Cast", [f"{name}_fp16"], [name],
                                           name=f"{name}_round_fp32", to=TensorProto.FLOAT)]
                rounded += 1
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # FLOAT16 types of tensors that are FLOAT now
    set_metadata(model, {"precision": "fp16-emulated", "rounded_tensors": str(rounded)})
    return model


def emulation_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """An ONNX Runtime CPU session that keeps the rounding Cast pairs (cast chain elimination off).

    Without ONNX Runtime's memory arena, so every tensor goes back to the system when it dies.
    Measured on MPRNet `derain` at 1080p: the default arena (one per session, growing by powers
    of two) held 7.05 GB through the FP32 run and passed 11.9 GB in the emulated run; one arena
    shared by both sessions and growing by the size requested passed 11 GB in the FP32 run;
    without an arena the FP32 run peaked at 5.7 GB. The price is CPU time: every feature map is
    mapped and zeroed afresh (1.7x the CPU seconds of an FP32 run at 512x512; a process started
    with `host_allocator.MALLOC_HUGE_PAGES` faults it in 2 MiB at a time).

    Intra-op threads sleep instead of spinning when they run out of work: on shared cores the spin
    burned a quarter of the CPU seconds (MPRNet `derain` at 512x512: 72 user-s spinning, 54 not)."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry(INTRA_OP_SPINNING, "0")
    options.add_session_config_entry(CAST_CHAIN_ELIMINATION, "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@dataclass
class GraphAuditReport:
    """How far the FP16 graph, emulated on ONNX Runtime, is from the FP32 graph on the same inputs."""

    resolution: str  # 'WxH' of the audited (padded) images
    images: int
    psnr_per_image: list[float]  # emulated FP16 vs FP32 ONNX output, both clamped to [0, 1]
    max_abs_error: float  # on the raw outputs; NaN when the emulated output has NaN
    nonfinite_outputs: dict[str, int]  # inf/NaN values in each emulated graph output
    rounded_tensors: int  # float16 tensors the emulation rounds after their node
    fp32_kept: list[str]  # op types and node names the FP16 graph keeps in FP32
    seconds: float
    method: str = "graph"

    @property
    def psnr_db(self) -> float:
        return worst_psnr(self.psnr_per_image)

    @property
    def output_nonfinite(self) -> int:
        return sum(self.nonfinite_outputs.values())

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "resolution": self.resolution, "images": self.images,
                "psnr_db": json_float(self.psnr_db),
                "psnr_per_image": [json_float(v) for v in self.psnr_per_image],
                "max_abs_error": json_float(self.max_abs_error), "output_nonfinite": self.output_nonfinite,
                "nonfinite_outputs": self.nonfinite_outputs, "rounded_tensors": self.rounded_tensors,
                "fp32_kept": self.fp32_kept, "seconds": round(self.seconds, 3)}

    def format_table(self, top: int = 0) -> str:
        """One summary line (`top` matches the PyTorch report's signature; this report has no layer rows)."""
        bad = {name: count for name, count in self.nonfinite_outputs.items() if count}
        output = ", ".join(f"{count} inf/NaN in {name!r}" for name, count in bad.items()) or "finite"
        return (f"{self.resolution} (method graph: the FP16 ONNX emulated on ONNX Runtime vs the FP32 ONNX): "
                f"PSNR vs FP32 {self.psnr_db:.2f} dB (worst of {len(self.psnr_per_image)}), max |error| "
                f"{self.max_abs_error:.3g}, output {output}; {self.rounded_tensors} float16 tensors rounded, "
                f"kept FP32: {', '.join(self.fp32_kept) or 'nothing'}")


def _run_all(session: ort.InferenceSession, images: Sequence[torch.Tensor]) -> list[list[np.ndarray]]:
    name = session.get_inputs()[0].name
    return [session.run(None, {name: image.numpy()}) for image in images]


def audit_fp16_graph(fp32_onnx: str | os.PathLike, fp16_onnx: str | os.PathLike,
                     images: Sequence[torch.Tensor]) -> GraphAuditReport:
    """Run the FP32 ONNX and the emulated FP16 ONNX on each NCHW float32 image (already padded to the
    model's size multiple) and compare the first outputs; inf/NaN is counted in every output.

    The sessions run one after the other (the FP32 one closed first), so only one holds activations."""
    if not images:
        raise UserError("The FP16 audit needs at least one image.")
    start = time.perf_counter()
    fp16 = load_onnx(fp16_onnx)
    metadata = read_metadata(fp16)
    emulated_model = emulation_model(fp16)
    rounded = int(read_metadata(emulated_model)["rounded_tensors"])
    del fp16
    expected = _run_all(emulation_session(load_onnx(fp32_onnx)), images)
    session = emulation_session(emulated_model)
    del emulated_model
    actual = _run_all(session, images)
    names = [output.name for output in session.get_outputs()]
    del session
    psnrs: list[float] = []
    errors: list[float] = []
    nonfinite = dict.fromkeys(names, 0)
    for got, want in zip(actual, expected, strict=True):
        image_psnrs, error, _ = compare_outputs(torch.from_numpy(got[0]), torch.from_numpy(want[0]))
        psnrs += image_psnrs
        errors.append(error)
        for name, values in zip(names, got, strict=True):
            nonfinite[name] += int((~np.isfinite(values)).sum())
    kept = json.loads(metadata.get("fp32_op_types", "[]")) + json.loads(metadata.get("fp32_nodes", "[]"))
    sizes = dict.fromkeys(format_resolution((image.shape[-1], image.shape[-2])) for image in images)
    return GraphAuditReport(
        resolution=",".join(sizes), images=len(psnrs), psnr_per_image=psnrs,
        max_abs_error=worst_error(errors), nonfinite_outputs=nonfinite, rounded_tensors=rounded,
        fp32_kept=kept, seconds=time.perf_counter() - start)


def audit_graph_at_resolutions(
    fp32_onnx: str | os.PathLike,
    fp16_onnx: str | os.PathLike,
    resolutions: Sequence[tuple[int, int]],
    images: Sequence[np.ndarray] | None = None,
    *,
    task: str | None = "denoise",
    seed: int = 0,
) -> dict[str, GraphAuditReport]:
    """`audit_fp16_graph` at each (width, height) on the inputs `fp16_audit.audit_inputs` makes (the same
    photographs, degradation and padding as the PyTorch method). Keys are 'WxH'."""
    multiple = int(read_metadata(load_onnx(fp32_onnx, load_external_data=False)).get("size_multiple", "1"))
    return {format_resolution(resolution): audit_fp16_graph(
                fp32_onnx, fp16_onnx, audit_inputs(resolution, multiple, images, task=task, seed=seed))
            for resolution in resolutions}


def audit_network_graph(network: nn.Module, spec: ModelSpec, resolutions: Sequence[tuple[int, int]], *,
                        task: str | None = "denoise") -> dict[str, GraphAuditReport]:
    """`audit_graph_at_resolutions` of the FP16 ONNX `mirnet export --precision fp16` makes of `network`
    (the FP32 export, then the same FP16 conversion), both made in a scratch folder and removed after.

    Runs ONNX Runtime without its arena (`emulation_session`): a process that keeps freed memory
    (`host_allocator.configure_host_allocator("retain")`) holds each freed feature map besides the
    next, so this runs best under the system allocator with `host_allocator.MALLOC_HUGE_PAGES`."""
    with scratch_folder("audit-fp16") as folder:
        fp32 = export_onnx(network, spec, folder / "model.fp32.onnx")
        fp16 = convert_to_fp16(fp32, folder / "model.fp16.onnx")
        return audit_graph_at_resolutions(fp32, fp16, resolutions, task=task)
