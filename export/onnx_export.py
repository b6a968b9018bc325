"""PyTorch -> ONNX: one FP32 graph with dynamic N/H/W, in-graph padding and metadata.

Exporter: the legacy TorchScript exporter (`dynamo=False`) with `dynamic_axes`, because
- it exports `DeploymentGraph`'s padding arithmetic as graph ops valid for every H, W >= 1,
  whereas `torch.export` specialises a batch-1 example and adds guards on the padded sizes
  (the dynamo exporter then falls back to a draft export);
- it writes one self-contained file (the dynamo exporter puts weights in `.onnx.data`);
- it is about 8x faster (3 s against 24 s for the `small` preset on 2 busy cores).
Its graph keeps Constant nodes, Identity aliases of shared weights and reflect-Pad `pads`
computed at run time (its folder skips the reversed Slice); onnxscript's optimizer, the
pass the dynamo exporter runs, folds all of that, so the result is as clean as dynamo's.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import onnx
import onnx_ir as ir
import torch
from onnxscript.optimizer import optimize_ir
from torch import nn

from mirnet_deploy import __version__

from .graph import DeploymentGraph
from .onnx_file import DEFAULT_OPSET, save_onnx, set_metadata
from .spec import ModelSpec

INPUT_NAME, OUTPUT_NAME = "input", "output"
DYNAMIC_AXES = {
    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
    OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
}
#: The I/O contract, stored as the model's doc_string for whoever opens the file.
CONTRACT = (
    "Input 'input': float32 NCHW RGB in [0, 1], any batch, height and width >= 1. Output "
    "'output': float32 NCHW, height and width times the 'scale' metadata. The graph reflect-pads "
    "bottom/right to 'size_multiple' and crops back. The output is NOT clamped: clamp to [0, 1]."
)


def export_onnx(
    module: nn.Module,
    spec: ModelSpec,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    sr_scale: int | None = None,
) -> Path:
    """Export `module` (put in eval mode) as an FP32 ONNX model at `path`; return the path.

    With `sr_scale`, the graph takes the low-resolution image and upsamples it bicubically
    before the network. Raises UserError if the checker or the TensorRT lint rejects the graph.
    """
    graph = DeploymentGraph(module, spec, sr_scale).eval()
    device = next(module.parameters()).device
    # The size is irrelevant (all of N/H/W are dynamic); odd, so no shortcut could bake it in.
    example = torch.rand(1, spec.in_channels, 2 * spec.size_multiple + 1, 2 * spec.size_multiple + 1)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Known chatter: the legacy exporter's deprecation notice, its Slice folding note, and
        # tracer notes on Python numbers taken from tensors (e.g. a channel count in a module
        # name); a height or width baked in that way would fail verification at other sizes.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python number")
        torch.onnx.export(
            graph,
            (example.to(device),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=DYNAMIC_AXES,
            do_constant_folding=True,
        )
    model = _optimize(onnx.load_from_string(buffer.getvalue()))
    model.graph.name = spec.name
    model.doc_string = CONTRACT
    set_metadata(model, _metadata(spec, sr_scale))
    save_onnx(model, path)
    return Path(path)


def _metadata(spec: ModelSpec, sr_scale: int | None) -> dict[str, str]:
    """The `metadata_props` every artifact carries (DESIGN.md); variants change `precision`."""
    return {
        "task": spec.task,
        "model_name": spec.name,
        "model_config": spec.config_json(),
        "size_multiple": str(spec.size_multiple),
        "scale": str(spec.scale * (sr_scale or 1)),
        "precision": "fp32",
        "checkpoint_sha256": spec.checkpoint_sha256,
        "toolkit_version": __version__,
    }


def _optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants (ConstantOfShape too: here it only feeds Pad's `pads`), drop dead nodes."""
    ir_model = ir.from_proto(model)
    optimize_ir(ir_model, should_fold=lambda node: True if node.op_type == "ConstantOfShape" else None)
    return ir.to_proto(ir_model)
