"""Static TensorRT-acceptability lint: will TensorRT's ONNX parser take this model?

TensorRT cannot answer that on a CPU-only machine (it crashes without a GPU, see
DEPLOY_STACK.md §2), so this reads the ONNX graph and compares it with TensorRT's
documented ONNX support, kept as data with its sources in `trt_onnx_support.json`.
It works on any ONNX model: FP32, FP16 (Cast islands) or INT8 Q/DQ.

Rules (rule ids as they appear in findings):

- ``opset``: the ai.onnx opset is one TensorRT 10.x/11.x imports.
- ``io-dtype``: graph inputs/outputs have types TensorRT has, ideally float32.
- ``op-unknown`` / ``op-unsupported`` / ``op-custom-domain`` / ``op-newer-than-target``:
  every op is one TensorRT imports (and is old enough for the oldest target, TensorRT 10.3).
- ``constant-input``: inputs the parser needs at build time (e.g. ReduceMean ``axes``) are constant.
- ``resize-mode`` / ``resize-dynamic-scales``: Resize attributes are supported and ``scales``
  is constant (a computed ``sizes`` is fine).
- ``pad-mode`` / ``pad-dynamic-axes``: Pad mode is supported; a computed ``axes`` needs 10.4+.
- ``qdq-scale`` / ``qdq-zero-point`` / ``qdq-type``: Q/DQ is symmetric INT8 (or FP8/INT4/FP4)
  with positive, finite scales.
- ``training-leftover``: no Dropout or training-mode nodes.

"Constant" means what the parser sees as weights, kept simple: an initializer that no graph
input overrides, the output of a Constant node, or the output of a Cast/Identity of such a
constant (its values are read from the source tensor, before the Cast). Anything else, even
a subgraph a constant folder could evaluate, counts as computed at runtime.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from mirnet_deploy.errors import UserError

from .onnx_read import load_onnx

#: lint target -> its support table (data, with sources) next to this module.
SUPPORT_TABLES: dict[str, Path] = {"tensorrt": Path(__file__).with_name("trt_onnx_support.json")}

#: Domain names meaning "standard ONNX operator set".
DEFAULT_DOMAINS = ("", "ai.onnx")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem: where it is (node name and op type, empty for model-level) and what to do."""

    severity: Severity
    rule: str
    message: str
    node: str = ""
    op_type: str = ""


@dataclass(frozen=True)
class LintReport:
    """The findings of one lint run; `ok` means no errors (warnings do not block a build)."""

    model: str
    target: str
    opset: int | None
    node_count: int
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target": self.target,
            "opset": self.opset,
            "node_count": self.node_count,
            "ok": self.ok,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }

    def summary(self) -> str:
        verdict = f"{self.target}-acceptable" if self.ok else f"NOT {self.target}-acceptable"
        return (
            f"{self.model}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) - "
            f"{verdict} (opset {self.opset}, {self.node_count} nodes)"
        )

    def format_table(self, width: int = 100) -> str:
        """Findings as a table, errors first, each message wrapped under its row."""
        if not self.findings:
            return "No findings."
        rows = sorted(self.findings, key=lambda f: f.severity != "error")
        header = ("severity", "rule", "op", "node")
        cells = [header, *((f.severity, f.rule, f.op_type or "-", f.node or "-") for f in rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(3)]
        indent = " " * 4

        def line(row: tuple[str, ...]) -> str:
            padded = [cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)]
            return "  ".join([*padded, row[3]])

        out = [line(header), line((*("-" * w for w in widths), "-" * len("node")))]
        for finding, row in zip(rows, cells[1:], strict=True):
            out.append(line(row))
            wrapped = textwrap.wrap(finding.message, width - len(indent), break_on_hyphens=False)
            out.extend(indent + text for text in wrapped)
        return "\n".join(out)


def lint_onnx(
    model: onnx.ModelProto | str | os.PathLike[str], *, target: str = "tensorrt"
) -> LintReport:
    """Check an ONNX model (a ModelProto or a path) against `target`'s ONNX support."""
    table = load_support_table(target)
    proto, label = _load_model(model)
    context = _Context(table, proto)
    findings = [
        *_check_opset(context.declared_opset, table),
        *_check_io_dtypes(proto.graph, table),
        *_check_training_info(proto),
    ]
    for node in context.nodes:
        findings.extend(_check_op_support(node, context))
        findings.extend(_check_training_leftovers(node, context))
        if node.proto.domain in DEFAULT_DOMAINS and node.proto.op_type in NODE_RULES:
            findings.extend(NODE_RULES[node.proto.op_type](node, context))
    return LintReport(label, target, context.declared_opset, len(context.nodes), tuple(findings))


@cache
def load_support_table(target: str = "tensorrt") -> dict[str, Any]:
    """The support table (operators, opset range, Resize/Pad/Q-DQ facts) for `target`."""
    try:
        path = SUPPORT_TABLES[target]
    except KeyError:
        raise UserError(
            f"Unknown lint target {target!r}: the known targets are {', '.join(SUPPORT_TABLES)}."
        ) from None
    return json.loads(path.read_text())


def _load_model(model: onnx.ModelProto | str | os.PathLike[str]) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "<in-memory model>"
    path = Path(model)
    proto = load_onnx(path)
    return proto, str(path)


# --- the graph as the rules see it -------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    proto: onnx.NodeProto
    label: str

    def input(self, index: int) -> str:
        """The input name at `index`, or "" when the optional input is absent."""
        return self.proto.input[index] if index < len(self.proto.input) else ""

    def attribute(self, name: str, default: Any = None) -> Any:
        for attribute in self.proto.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default


class _Context:
    """Everything the rules need: the table, all nodes, the opset, which tensors are constant."""

    def __init__(self, table: dict[str, Any], model: onnx.ModelProto) -> None:
        self.table = table
        self.declared_opset = next(
            (o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None
        )
        # Node rules need some opset; a model without one is already an `opset` error.
        self.opset = self.declared_opset or table["opset"]["max"]
        self.local_functions = {(f.domain, f.name) for f in model.functions}
        self.nodes = _all_nodes(model)
        self.constants = _constant_tensors(model, self.nodes)

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def value(self, name: str) -> np.ndarray | None:
        """The constant's values, or None when it is not constant or its data is not loaded."""
        tensor = self.constants.get(name)
        if tensor is None or (uses_external_data(tensor) and not tensor.raw_data):
            return None
        return numpy_helper.to_array(tensor)


def _all_nodes(model: onnx.ModelProto) -> list[_Node]:
    """The main graph's nodes, then those of If/Loop/Scan bodies and model-local functions."""
    nodes = []
    for graph in _graphs(model.graph):
        nodes.extend(_Node(n, _label(n, i)) for i, n in enumerate(graph.node))
    for function in model.functions:
        nodes.extend(
            _Node(n, f"{function.name}/{_label(n, i)}") for i, n in enumerate(function.node)
        )
    return nodes


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            is_graph = attribute.type == onnx.AttributeProto.GRAPH
            for subgraph in [attribute.g] if is_graph else attribute.graphs:
                yield from _graphs(subgraph)


def _label(node: onnx.NodeProto, index: int) -> str:
    if node.name:
        return node.name
    first_output = node.output[0] if node.output else "?"
    return f"<unnamed {node.op_type} #{index}, output '{first_output}'>"


def _constant_tensors(model: onnx.ModelProto, nodes: list[_Node]) -> dict[str, onnx.TensorProto]:
    """Tensor name -> its value, for every build-time constant (see the module docstring)."""
    overridable = {value.name for value in model.graph.input}
    constants = {
        tensor.name: tensor
        for graph in _graphs(model.graph)
        for tensor in graph.initializer
        if tensor.name not in overridable
    }
    for node in nodes:
        proto = node.proto
        if proto.domain not in DEFAULT_DOMAINS or not proto.output:
            continue
        if proto.op_type == "Constant":
            tensor = _constant_node_value(node)
            if tensor is not None:
                constants[proto.output[0]] = tensor
        elif proto.op_type in ("Cast", "Identity") and node.input(0) in constants:
            constants[proto.output[0]] = constants[node.input(0)]
    return constants


def _constant_node_value(node: _Node) -> onnx.TensorProto | None:
    """The numeric value of a Constant node; None for sparse or string constants."""
    if (tensor := node.attribute("value")) is not None:
        return tensor
    scalars = {
        "value_float": onnx.TensorProto.FLOAT,
        "value_floats": onnx.TensorProto.FLOAT,
        "value_int": onnx.TensorProto.INT64,
        "value_ints": onnx.TensorProto.INT64,
    }
    for name, data_type in scalars.items():
        if (value := node.attribute(name)) is not None:
            values = list(value) if isinstance(value, list) else [value]
            dims = [len(values)] if isinstance(value, list) else []
            return helper.make_tensor(node.proto.output[0], data_type, dims, values)
    return None


def _dtype_name(data_type: int) -> str:
    """ONNX element type as the table spells it: float32, float16, int8, float8e4m3fn, ..."""
    name = onnx.TensorProto.DataType.Name(data_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# --- model-level rules -------------------------------------------------------------------


def _check_opset(opset: int | None, table: dict[str, Any]) -> Iterator[Finding]:
    limits = table["opset"]
    if opset is None:
        message = (
            "The model declares no ai.onnx opset, so no TensorRT parser can import it. "
            "Re-export it with an explicit opset (17 or 18)."
        )
        yield Finding("error", "opset", message)
    elif not limits["min"] <= opset <= limits["max"]:
        message = (
            f"ai.onnx opset {opset} is outside the range TensorRT imports "
            f"({limits['min']}-{limits['max']}). Re-export with opset 17-19 or convert the model "
            "with onnx.version_converter."
        )
        yield Finding("error", "opset", message)
    elif opset > limits["warn_above"]:
        message = (
            f"ai.onnx opset {opset} is above {limits['warn_above']}, the highest opset TensorRT "
            f"10.0 documents; older TensorRT 10.x builds (JetPack 6 ships "
            f"{table['targets']['oldest_tensorrt']}) may reject it. Export with opset 17-19 to "
            "build on every target."
        )
        yield Finding("warning", "opset", message)


def _check_io_dtypes(graph: onnx.GraphProto, table: dict[str, Any]) -> Iterator[Finding]:
    io_types = table["io_dtypes"]
    initializers = {tensor.name for tensor in graph.initializer}
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            if value.name in initializers:  # IR < 4 lists initializers as inputs too
                continue
            where = f"Graph {kind} '{value.name}'"
            if not value.type.HasField("tensor_type"):
                message = f"{where} is not a tensor; TensorRT networks take and return tensors."
                yield Finding("error", "io-dtype", message)
                continue
            dtype = _dtype_name(value.type.tensor_type.elem_type)
            if dtype in io_types["accepted"]:
                message = (
                    f"{where} is {dtype}. TensorRT accepts it, but image models here keep "
                    "float32 I/O with reduced precision inside the graph (AutoCast "
                    "keep_io_types=True), so callers need no conversion."
                )
                yield Finding("warning", "io-dtype", message)
            elif dtype not in io_types["recommended"]:
                message = (
                    f"{where} is {dtype}, a type TensorRT has no network I/O for. Make it "
                    "float32 (cast inside the graph)."
                )
                yield Finding("error", "io-dtype", message)


def _check_training_info(model: onnx.ModelProto) -> Iterator[Finding]:
    if model.training_info:
        message = (
            "The model carries ONNX training_info (a training algorithm), which TensorRT "
            "ignores. Export the inference graph only, from a model in eval() mode."
        )
        yield Finding("warning", "training-leftover", message)


# --- node rules --------------------------------------------------------------------------


def _check_op_support(node: _Node, context: _Context) -> Iterator[Finding]:
    op_type, domain = node.proto.op_type, node.proto.domain
    if domain not in DEFAULT_DOMAINS:
        if (domain, op_type) not in context.local_functions:  # functions: linted by their body
            message = (
                f"{domain}::{op_type} is not a standard ONNX op; TensorRT imports it only "
                "through a plugin registered under that name. Export with standard ONNX ops "
                "(no ONNX Runtime contrib ops) or provide the plugin."
            )
            yield _node_finding("error", "op-custom-domain", node, message)
        return
    entry = context.table["operators"].get(op_type)
    if entry is None:
        message = (
            "the op is not in TensorRT's ONNX operator table. Rewrite it with supported ops "
            "or provide a TensorRT plugin for it."
        )
        yield _node_finding("error", "op-unknown", node, message)
        return
    if not entry["supported"]:
        hint = entry.get("hint", "Rewrite it with supported ops or provide a TensorRT plugin.")
        message = f"TensorRT's ONNX parser does not support this op. {hint}"
        yield _node_finding("error", "op-unsupported", node, message)
        return
    oldest = context.table["targets"]["oldest_tensorrt"]
    if "since" in entry and _version(entry["since"]) > _version(oldest):
        message = (
            f"the op is imported only by TensorRT {entry['since']} and newer, so builds on "
            f"TensorRT {oldest} (JetPack 6) fail. Replace it if the model must run there."
        )
        yield _node_finding("warning", "op-newer-than-target", node, message)
    for index, input_name in entry.get("constant_inputs", {}).items():
        tensor = node.input(int(index))
        if tensor and not context.is_constant(tensor):
            message = (
                f"input '{input_name}' ('{tensor}') is computed at runtime, but TensorRT needs "
                "it at build time. Make it an initializer or a Constant (constant-fold the "
                "graph, e.g. polygraphy surgeon sanitize --fold-constants)."
            )
            yield _node_finding("error", "constant-input", node, message)


def _check_training_leftovers(node: _Node, context: _Context) -> Iterator[Finding]:
    eval_mode = "Export the model in eval() mode."
    if node.proto.op_type == "Dropout":
        training_mode = node.input(2)
        if training_mode and not context.is_constant(training_mode):
            message = (
                f"training_mode ('{training_mode}') is computed at runtime; TensorRT needs it "
                f"as a constant False. {eval_mode}"
            )
            yield _node_finding("error", "training-leftover", node, message)
        elif training_mode and (value := context.value(training_mode)) is not None and value.any():
            message = f"runs in training mode, which TensorRT does not support. {eval_mode}"
            yield _node_finding("error", "training-leftover", node, message)
        else:
            message = f"a training leftover (TensorRT imports it as an identity). {eval_mode}"
            yield _node_finding("warning", "training-leftover", node, message)
    if node.attribute("training_mode", 0):
        message = f"training_mode=1, which TensorRT does not support. {eval_mode}"
        yield _node_finding("error", "training-leftover", node, message)


def _check_resize(node: _Node, context: _Context) -> Iterator[Finding]:
    facts = context.table["resize"]
    mode = node.attribute("mode", "nearest")
    attributes = {"mode": (mode, facts["modes"])}
    if context.opset >= 11:
        transformation = node.attribute("coordinate_transformation_mode", "half_pixel")
        attributes["coordinate_transformation_mode"] = (
            transformation,
            facts["coordinate_transformation_modes"],
        )
        if mode == "nearest":
            nearest = node.attribute("nearest_mode", "round_prefer_floor")
            attributes["nearest_mode"] = (nearest, facts["nearest_modes"])
    if context.opset >= 18:
        policy = node.attribute("keep_aspect_ratio_policy", "stretch")
        attributes["keep_aspect_ratio_policy"] = (policy, facts["keep_aspect_ratio_policies"])
    for name, (value, supported) in attributes.items():
        if value not in supported:
            message = f"{name}={value!r} is not supported by TensorRT ({', '.join(supported)} are)."
            yield _node_finding("error", "resize-mode", node, message)
    if node.attribute("antialias", 0) and not facts["antialias"]:
        message = "antialias=1 is not supported by TensorRT. Resize with antialias=False."
        yield _node_finding("error", "resize-mode", node, message)
    scales = node.input(2 if context.opset >= 11 else 1)
    if scales and not context.is_constant(scales):
        message = (
            f"its scales ('{scales}') are computed at runtime. TensorRT-friendly Resize uses "
            "constant scales (torch: F.interpolate(scale_factor=k) with a fixed k) or the "
            "`sizes` input (torch: F.interpolate(size=...); sizes may be computed from Shape). "
            "Re-export with one of those."
        )
        yield _node_finding(
            facts["dynamic_scales_severity"], "resize-dynamic-scales", node, message
        )


def _check_pad(node: _Node, context: _Context) -> Iterator[Finding]:
    facts = context.table["pad"]
    mode = node.attribute("mode", "constant")
    if mode not in facts["modes"]:
        message = f"mode={mode!r} is not supported by TensorRT ({', '.join(facts['modes'])} are)."
        yield _node_finding("error", "pad-mode", node, message)
    axes = node.input(3)
    if axes and not context.is_constant(axes):
        message = (
            f"its axes ('{axes}') are computed at runtime, which needs TensorRT "
            f"{facts['tensor_axes_since']} or newer (JetPack 6 ships "
            f"{context.table['targets']['oldest_tensorrt']}). Make axes an initializer, or "
            "leave it out and pad every axis."
        )
        yield _node_finding("warning", "pad-dynamic-axes", node, message)


def _check_quantize(node: _Node, context: _Context) -> Iterator[Finding]:
    """QuantizeLinear and DequantizeLinear: symmetric, positive scales, a TensorRT type."""
    facts = context.table["quantization"]
    scale_name = node.input(1)
    scale = context.value(scale_name)
    if scale is not None and not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        message = (
            f"scale tensor '{scale_name}' has non-positive or non-finite values (min "
            f"{np.min(scale):g}). TensorRT needs positive scales; recalibrate the layer or "
            "exclude it from quantization."
        )
        yield _node_finding("error", "qdq-scale", node, message)
    zero_point = node.input(2)
    if not zero_point:
        if node.proto.op_type == "QuantizeLinear" and node.attribute("output_dtype") is None:
            message = (
                "has no zero point, so ONNX quantizes to UINT8 while TensorRT quantizes to "
                "INT8, and CPU parity checks would not match TensorRT. Add an int8 zero-point "
                "initializer of 0."
            )
            yield _node_finding("warning", "qdq-zero-point", node, message)
        return
    if not context.is_constant(zero_point):
        message = (
            f"zero point '{zero_point}' is computed at runtime, so the lint cannot check that "
            "it is 0 as TensorRT requires. Make it an initializer."
        )
        yield _node_finding("warning", "qdq-zero-point", node, message)
        return
    dtype = _dtype_name(context.constants[zero_point].data_type)
    if dtype not in facts["zero_point_dtypes"]:
        message = (
            f"zero point '{zero_point}' is {dtype}, but TensorRT quantizes to "
            f"{', '.join(facts['zero_point_dtypes'])} only (a uint8 zero point is imported as "
            "int8, which changes the range). That is ONNX Runtime's CPU-oriented flavour: "
            "quantize with int8 activations and weights, symmetric (TensorRT-oriented QDQ)."
        )
        yield _node_finding("error", "qdq-type", node, message)
    values = context.value(zero_point)
    flat = np.zeros(0) if values is None else values.astype(np.float32).ravel()
    nonzero = flat[flat != 0]
    if nonzero.size:
        message = (
            f"zero point '{zero_point}' is not all zeros (e.g. {nonzero[0]:g}), but TensorRT "
            "supports symmetric quantization only. Re-quantize with symmetric activations and "
            "weights (ActivationSymmetric=True, WeightSymmetric=True)."
        )
        yield _node_finding("error", "qdq-zero-point", node, message)


def _node_finding(severity: Severity, rule: str, node: _Node, message: str) -> Finding:
    """A finding whose message starts by naming the node, so it reads on its own."""
    text = f"{node.proto.op_type} node '{node.label}': {message}"
    return Finding(severity, rule, text, node.label, node.proto.op_type)


#: op type -> its op-specific rule (op support, constants and training apply to every node).
NODE_RULES = {
    "Resize": _check_resize,
    "Pad": _check_pad,
    "QuantizeLinear": _check_quantize,
    "DequantizeLinear": _check_quantize,
}
