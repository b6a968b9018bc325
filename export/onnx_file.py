"""Writing an ONNX artifact: the checks every exported or converted model passes first.

A model is written only after `onnx.checker` (full check, with shape inference) and the
TensorRT-acceptability lint accept it, and atomically, so a failed step never leaves a
half-written or unchecked `.onnx` where a later stage would pick it up.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

import onnx

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.errors import UserError

from .lint import LintReport, lint_onnx

#: Opset 17 by default: TensorRT 10.0 documents opsets 9-20 (JetPack 6 ships 10.3), FP16 needs
#: nothing newer, and the INT8 stage raises the opset itself (ModelOpt moves Q/DQ models to
#: >= 19 for FP16 scales, DEPLOY_STACK.md §3.1), so a higher export opset only narrows the
#: TensorRT versions that accept the FP32 and FP16 models.
DEFAULT_OPSET = 17
#: The opsets offered: 11 is the first with today's Resize and Pad, 20 the legacy exporter's last.
OPSETS = range(11, 21)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Set `metadata_props` keys, replacing existing ones and keeping the others."""
    merged = {**read_metadata(model), **values}
    del model.metadata_props[:]
    for key, value in merged.items():
        model.metadata_props.add(key=key, value=value)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> LintReport:
    """Check, lint and atomically write `model`; return the lint report (warnings only)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise UserError(
            f"The ONNX model for {path} is invalid ({str(error).strip()[:300]}), so it was not written. "
            "This is a bug in the export or conversion step: please report it with the command used."
        ) from None
    report = lint_onnx(model)
    if not report.ok:
        findings = "; ".join(f"[{f.rule}] {f.message}" for f in report.errors)
        raise UserError(
            f"The ONNX model for {path} would not build on TensorRT, so it was not written: {findings} "
            "The network uses an op or attribute TensorRT's parser rejects: change the network or "
            "the export (`mirnet lint --help` lists the rules)."
        )
    atomic_write_bytes(path, model.SerializeToString())
    return report


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Main-graph node count per op type, most frequent first."""
    return dict(Counter(node.op_type for node in model.graph.node).most_common())
