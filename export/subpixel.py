"""Sub-pixel form of transposed convolutions: ConvTranspose(stride s) = Conv + DepthToSpace(s), exactly.

Why: ONNX Runtime has no INT8 ConvTranspose kernel, so in a Q/DQ model MIRNet's stride-2
ConvTransposes stay float; as a Conv followed by DepthToSpace they quantize like any conv
(QLinearConv on CPU), and TensorRT runs both ops. The cost: more multiply-accumulates (MIRNet's
3x3/s2: 16 instead of 9 per input pixel and channel pair), since each phase convolves with
zeros where the transposed kernel has no tap.

The identity, per spatial axis (stride s, kernel K, pads p_begin/p_end, output_padding q,
dilation 1): y[o] = sum of w[k] x[i] over o = s*i - p_begin + k. Writing o = s*m + a (phase
a in [0, s)) and i = m + t (tap t) gives k = a + p_begin - s*t: phase a is a plain
correlation of x around m over taps t in [ceil((p_begin - K + 1) / s), floor((s - 1 + p_begin) / s)],
reading w[a + p_begin - s*t] (zero where that is outside [0, K)), with x zero outside
[0, H): the Conv's zero padding. The s*s phases become s*s*C_out channels ordered
c*s*s + a*s + b, the order DepthToSpace(mode CRD) interleaves back. The phases cover the
whole output iff its length s*(H - 1) + K - p_begin - p_end + q is s*H, i.e.
K - p_begin - p_end + q = s. MIRNet's ConvTranspose2d(3, stride 2, padding 1, output_padding 1)
becomes a 2x2 Conv padded by one at the bottom and right.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from .onnx_file import set_metadata

#: Metadata recorded on a model whose transposed convolutions were rewritten.
METADATA = {"upsample": "subpixel"}


@dataclass(frozen=True)
class _Axis:
    """One spatial axis of a ConvTranspose that has an exact sub-pixel form."""

    stride: int
    kernel: int
    pad_begin: int

    @property
    def taps(self) -> range:
        """Offsets t such that an output phase at input position m reads x[m + t]."""
        first = -((self.kernel - 1 - self.pad_begin) // self.stride)  # ceil((p_begin - K + 1) / s)
        last = (self.stride - 1 + self.pad_begin) // self.stride
        return range(first, last + 1)

    @property
    def conv_pads(self) -> tuple[int, int]:
        """Zero padding (before, after) that gives the Conv the taps outside the image."""
        return -self.taps.start, self.taps.stop - 1

    def selection(self) -> np.ndarray:
        """S[a, i, k] = 1 where phase a reads weight index k at the i-th tap, else 0."""
        taps = self.taps
        selection = np.zeros((self.stride, len(taps), self.kernel))
        for phase in range(self.stride):
            for i, tap in enumerate(taps):
                k = phase + self.pad_begin - self.stride * tap
                if 0 <= k < self.kernel:
                    selection[phase, i, k] = 1
        return selection


def rewrite_transposed_convs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace every ConvTranspose with an exact sub-pixel form; return the new model and how many.

    The others stay as they are, each with a warning naming the node and the reason. FP32 and
    FP16 graphs both work (the new kernel keeps the weight's type; its values are copies of
    the weights and zeros). Weights must be initializers, so rewrite before quantizing (a Q/DQ
    weight comes from DequantizeLinear). Only the main graph is searched. The result is
    sorted topologically and passes the ONNX checker; `model` is not modified.
    """
    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    rewritten = 0
    transposed = [node for node in graph if node.op_type == "ConvTranspose" and node.domain == ""]
    for node in transposed:
        axes = _sub_pixel_axes(node)
        if isinstance(axes, str):
            warnings.warn(f"ConvTranspose {node.name!r} left as it is: {axes}.", stacklevel=2)
            continue
        _replace(graph, node, axes)
        rewritten += 1
    RemoveUnusedNodesPass()(ir_model)  # the replaced weights
    TopologicalSortPass()(ir_model)
    result = ir.to_proto(ir_model)
    if rewritten:
        set_metadata(result, METADATA)
    onnx.checker.check_model(result, full_check=True)
    return result, rewritten


def _sub_pixel_axes(node: ir.Node) -> tuple[_Axis, _Axis] | str:
    """The (height, width) axes of `node`'s sub-pixel form, or why it has none this module makes."""
    _, weight, bias = (*node.inputs, None)[:3]
    if not all(_is_constant(value) for value in (weight, bias) if value is not None):
        return "its weight or bias is computed at run time, not an initializer"
    shape = weight.const_value.shape
    if len(shape) != 4:
        return f"it is {len(shape) - 2}-D, not 2-D"
    attributes = node.attributes
    kernels = tuple(shape[2:])
    strides = tuple(attributes.get_ints("strides", (1, 1)))
    pads = tuple(attributes.get_ints("pads", (0, 0, 0, 0)))
    output_padding = tuple(attributes.get_ints("output_padding", (0, 0)))
    group, dilations = attributes.get_int("group", 1), tuple(attributes.get_ints("dilations", (1, 1)))
    auto_pad = attributes.get_string("auto_pad", "NOTSET")
    stride_times_input = all(
        kernel - pads[axis] - pads[axis + 2] + output_padding[axis] == strides[axis]
        and 0 <= output_padding[axis] < strides[axis]
        for axis, kernel in enumerate(kernels)
    )
    checks = [
        (group != 1, f"group {group}"),
        (dilations != (1, 1), f"dilations {dilations}"),
        (auto_pad != "NOTSET", f"auto_pad {auto_pad}"),
        ("output_shape" in attributes, "an explicit output_shape"),
        (strides[0] != strides[1] or strides[0] < 2, f"strides {strides} (DepthToSpace takes one, >= 2)"),
        (
            not stride_times_input,
            f"kernel {kernels}, pads {pads}, output_padding {output_padding} "
            "(the output size is not stride x input)",
        ),
    ]
    problems = [message for failed, message in checks if failed]
    if problems:
        return ", ".join(problems)
    return _Axis(strides[0], kernels[0], pads[0]), _Axis(strides[1], kernels[1], pads[1])


def _is_constant(value: ir.Value) -> bool:
    return value.is_initializer() and not value.is_graph_input() and value.const_value is not None


def _replace(graph: ir.Graph, node: ir.Node, axes: tuple[_Axis, _Axis]) -> None:
    """Put Conv(`<name>/subpixel_conv`) + DepthToSpace(`<name>/depth_to_space`) in `node`'s place."""
    rows, cols = axes
    x, weight, bias = (*node.inputs, None)[:3]
    output = node.outputs[0]
    w = weight.const_value.numpy()  # (C_in, C_out, K_h, K_w)
    block = rows.stride
    kernel = np.einsum("iohw,ath,buw->oabitu", w, rows.selection(), cols.selection()).astype(w.dtype)
    inputs = [x, _initializer(graph, f"{output.name}/subpixel_weight", kernel.reshape(-1, *kernel.shape[3:]))]
    if bias is not None:
        phase_bias = np.repeat(bias.const_value.numpy(), block**2)
        inputs.append(_initializer(graph, f"{output.name}/subpixel_bias", phase_bias))
    (top, bottom), (left, right) = rows.conv_pads, cols.conv_pads
    conv = ir.node(
        "Conv",
        inputs,
        {"kernel_shape": [len(rows.taps), len(cols.taps)], "pads": [top, left, bottom, right]},
        name=f"{node.name}/subpixel_conv",
    )
    conv.outputs[0].name = f"{output.name}/subpixel_phases"
    depth_to_space = ir.node(
        "DepthToSpace", conv.outputs, {"blocksize": block, "mode": "CRD"}, name=f"{node.name}/depth_to_space"
    )
    ir.convenience.replace_nodes_and_values(
        graph, node, [node], [conv, depth_to_space], [output], depth_to_space.outputs
    )


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value
