"""Sub-pixel upsampling: ConvTranspose -> Conv + DepthToSpace computes the same function.

Transposed convs come from PyTorch's exporter with random weights; the original and the
rewritten graph both run on ONNX Runtime CPU at odd and even sizes down to 1x1, batch 2.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper
from torch import nn

from export.lint import lint_onnx
from export.network import load_network
from export.onnx_export import export_onnx
from export.onnx_file import op_counts, read_metadata
from export.precision import convert_to_fp16
from export.subpixel import rewrite_transposed_convs
from mirnet_deploy.cli import main
from mirnet_ref.weights import default_weights

#: Max |rewritten - original| on ONNX Runtime CPU, FP32 (measured: about 1e-7).
TOLERANCE = 1e-5
#: (height, width) of the inputs: 1x1, odd, even, mixed.
SIZES = [(1, 1), (2, 3), (4, 6), (5, 7)]


def exported(layer: nn.Module, in_channels: int) -> onnx.ModelProto:
    """`layer` (eval mode) as an ONNX model `x` -> `y` with dynamic batch, height and width."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(
            layer.eval(),
            (torch.rand(1, in_channels, 4, 4),),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
        )
    return onnx.load_from_string(buffer.getvalue())


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def max_error(original: onnx.ModelProto, rewritten: onnx.ModelProto, in_channels: int) -> float:
    """Largest |difference| of the two models' outputs over SIZES at batch 2 (shapes must agree)."""
    rng = np.random.default_rng(0)
    errors = []
    for height, width in SIZES:
        x = rng.standard_normal((2, in_channels, height, width), dtype=np.float32)
        expected, actual = run(original, x), run(rewritten, x)
        assert actual.shape == expected.shape
        errors.append(float(np.abs(actual - expected).max()))
    return max(errors)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding"),
    [
        (3, 2, 1, 1),  # MIRNet's ResidualUpSample
        (2, 2, 0, 0),
        (4, 2, 1, 0),  # the usual GAN / U-Net upsampler
        (5, 2, 2, 1),
        (3, 3, 1, 2),
        ((3, 2), 2, (1, 0), (1, 0)),  # a different geometry per axis
    ],
)
@pytest.mark.parametrize("bias", [False, True])
def test_rewrite_computes_the_same(kernel, stride, padding, output_padding, bias):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 5, kernel, stride, padding, output_padding, bias=bias)
    original = exported(layer, 3)
    rewritten, count = rewrite_transposed_convs(original)
    assert count == 1
    assert op_counts(rewritten) == {"Conv": 1, "DepthToSpace": 1}
    assert max_error(original, rewritten, 3) <= TOLERANCE


def test_rewrite_names_nodes_after_the_transposed_conv_and_records_metadata():
    original = exported(nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), 4)
    (name,) = (node.name for node in original.graph.node)
    rewritten, _ = rewrite_transposed_convs(original)
    assert [node.name for node in rewritten.graph.node] == [f"{name}/subpixel_conv", f"{name}/depth_to_space"]
    assert [output.name for output in rewritten.graph.output] == ["y"]
    assert {tensor.name for tensor in rewritten.graph.initializer} == {"y/subpixel_weight", "y/subpixel_bias"}
    assert read_metadata(rewritten) == {"upsample": "subpixel"}
    assert op_counts(original) == {"ConvTranspose": 1}, "the input model must not change"


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (nn.ConvTranspose2d(4, 4, 3, stride=1, padding=1), "strides"),
        (nn.ConvTranspose2d(4, 4, 3, stride=(2, 1), padding=1, output_padding=(1, 0)), "strides"),
        (nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1), "output size is not stride x input"),  # 2H - 1
        (nn.ConvTranspose2d(4, 4, 3, stride=2, padding=2, output_padding=1, dilation=2), "dilations"),
        (nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2), "group 2"),
    ],
)
def test_other_transposed_convs_are_left_untouched(layer, reason):
    original = exported(layer, 4)
    with pytest.warns(UserWarning, match=reason):
        rewritten, count = rewrite_transposed_convs(original)
    assert count == 0
    assert op_counts(rewritten) == {"ConvTranspose": 1}
    assert "upsample" not in read_metadata(rewritten)
    assert max_error(original, rewritten, 4) == 0


def test_a_weight_computed_at_run_time_is_left_untouched():
    """The weight is a graph input here, as behind a DequantizeLinear: no kernel to rearrange."""
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
    )
    graph = helper.make_graph(
        [node],
        "runtime_weight",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2, 3, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.warns(UserWarning, match="computed at run time"):
        rewritten, count = rewrite_transposed_convs(model)
    assert count == 0
    assert op_counts(rewritten) == {"ConvTranspose": 1}


def test_fp16_graph_is_rewritten_in_fp16(tmp_path):
    """The FP16 converter's output (Casts appended, unsorted) is rewritten and stays FP16 inside."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1, bias=True)
    fp16 = onnx.load(convert_to_fp16(exported(layer, 3), tmp_path / "layer.fp16.onnx"))
    rewritten, count = rewrite_transposed_convs(fp16)
    assert count == 1
    assert {tensor.data_type for tensor in rewritten.graph.initializer} == {TensorProto.FLOAT16}
    # Same FP16 weights, other summation order: a few FP16 ulps of outputs of magnitude ~1.
    assert max_error(fp16, rewritten, 3) <= 1e-2


@pytest.fixture(scope="module")
def mirnet_small(tmp_path_factory) -> tuple[onnx.ModelProto, onnx.ModelProto, int]:
    """The `small` denoise demo model exported to FP32 ONNX: (original, rewritten, count)."""
    network, spec = load_network(default_weights("denoise"), "denoise")
    path = export_onnx(network, spec, tmp_path_factory.mktemp("onnx") / "small.fp32.onnx")
    original = onnx.load(path)
    rewritten, count = rewrite_transposed_convs(original)
    return original, rewritten, count


def test_mirnet_has_no_transposed_conv_left(mirnet_small):
    original, rewritten, count = mirnet_small
    transposed = op_counts(original)["ConvTranspose"]
    assert transposed > 0
    assert count == transposed
    assert "ConvTranspose" not in op_counts(rewritten)
    assert op_counts(rewritten)["DepthToSpace"] == transposed
    assert read_metadata(rewritten)["upsample"] == "subpixel"
    assert read_metadata(rewritten)["task"] == "denoise", "the export's metadata is kept"


def test_mirnet_rewrite_computes_the_same(mirnet_small):
    original, rewritten, _ = mirnet_small
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    assert float(np.abs(run(rewritten, x) - run(original, x)).max()) <= TOLERANCE


def test_mirnet_rewrite_passes_the_tensorrt_lint(mirnet_small):
    report = lint_onnx(mirnet_small[1])
    assert report.ok, report.format_table()
    assert not [finding for finding in report.findings if finding.op_type in ("Conv", "DepthToSpace")]


def test_cli_export_with_subpixel_upsample(tmp_path):
    output = tmp_path / "denoise.subpixel.onnx"
    arguments = ["export", "--task", "denoise", "--subpixel-upsample", "-o", str(output)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "Rewrote 14 ConvTranspose node(s)" in result.output
    model = onnx.load(output)
    assert read_metadata(model)["upsample"] == "subpixel"
    assert "ConvTranspose" not in op_counts(model)
