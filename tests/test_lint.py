"""The TensorRT-acceptability lint on hand-built ONNX graphs and on an exported small MIRNet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from export.lint import Finding, LintReport, lint_onnx, load_support_table
from mirnet_deploy.cli import main

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


def make_model(
    nodes: list[onnx.NodeProto],
    initializers: dict[str, np.ndarray],
    *,
    opset: int = 18,
    input_type: int = FLOAT,
    output_type: int = FLOAT,
) -> onnx.ModelProto:
    """A checked single-input, single-output NCHW model: `input` -> nodes -> `output`."""
    graph = helper.make_graph(
        nodes,
        "lint-test",
        [helper.make_tensor_value_info("input", input_type, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output", output_type, ["n", "c", "oh", "ow"])],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def conv_weights(dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {
        "W": np.full((8, 3, 3, 3), 0.1, dtype),
        "B": np.zeros(8, dtype),
        "slope": np.full((8, 1, 1), 0.25, dtype),
    }


def clean_model(opset: int = 18) -> onnx.ModelProto:
    """Conv + PRelu + Resize (constant scales) + Pad (reflect, constant pads)."""
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["conv", "slope"], ["act"], name="prelu"),
        helper.make_node(
            "Resize",
            ["act", "", "scales"],
            ["up"],
            name="up",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Pad", ["up", "pads"], ["output"], name="pad", mode="reflect"),
    ]
    initializers = {
        **conv_weights(),
        "scales": np.array([1, 1, 2, 2], np.float32),
        "pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64),
    }
    return make_model(nodes, initializers, opset=opset)


def dynamic_scales_model() -> onnx.ModelProto:
    """Resize to about 64x64 whatever the input size: scales computed from Shape at runtime."""
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], name="shape", start=2),
        helper.make_node("Div", ["target", "shape"], ["factor_int"], name="factor"),
        helper.make_node("Cast", ["factor_int"], ["factor"], name="to_float", to=FLOAT),
        helper.make_node("Concat", ["ones", "factor"], ["scales"], name="scales", axis=0),
        helper.make_node(
            "Resize", ["input", "", "scales"], ["output"], name="up_to_64", mode="linear"
        ),
    ]
    initializers = {"target": np.array([64, 64], np.int64), "ones": np.ones(2, np.float32)}
    return make_model(nodes, initializers)


def qdq_model(zero_point: np.ndarray) -> onnx.ModelProto:
    """Activation Q/DQ in front of a float Conv, with the given zero point."""
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "act_scale", "act_zp"], ["q"], name="act_q"),
        helper.make_node("DequantizeLinear", ["q", "act_scale", "act_zp"], ["dq"], name="act_dq"),
        helper.make_node("Conv", ["dq", "W", "B"], ["output"], name="conv"),
    ]
    initializers = {
        **conv_weights(),
        "act_scale": np.array(0.02, np.float32),
        "act_zp": zero_point,
    }
    return make_model(nodes, initializers, opset=19)


def fp16_model() -> onnx.ModelProto:
    """float32 I/O, FP16 inside: Cast -> Conv/PRelu in float16 -> Cast back."""
    nodes = [
        helper.make_node("Cast", ["input"], ["input16"], name="to_fp16", to=FLOAT16),
        helper.make_node("Conv", ["input16", "W", "B"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["conv", "slope"], ["act"], name="prelu"),
        helper.make_node("Cast", ["act"], ["output"], name="to_fp32", to=FLOAT),
    ]
    return make_model(nodes, conv_weights(np.float16), opset=17)


#: Ops that CNN exports (MIRNet, its FP16 and QDQ variants) and common exporters produce.
CNN_OPS = {
    "layers": ["Conv", "ConvTranspose", "MatMul", "Gemm", "Pad", "Resize", "DepthToSpace"],
    "activations": ["PRelu", "Relu", "LeakyRelu", "Sigmoid", "Softmax", "Tanh", "Erf", "Clip"],
    "pooling": ["GlobalAveragePool", "MaxPool", "AveragePool", "ReduceMean", "ReduceMax"],
    "math": ["Mul", "Add", "Sub", "Div", "Mod", "Floor", "Ceil", "Min", "Max", "Pow", "Sqrt"],
    "more math": ["Exp", "Neg", "Abs", "ReduceSum", "Einsum", "SpaceToDepth"],
    "shapes": ["Concat", "Reshape", "Transpose", "Slice", "Gather", "Shape", "Split", "Tile"],
    "more shapes": ["Unsqueeze", "Squeeze", "Expand", "Range", "ConstantOfShape", "Constant"],
    "logic": ["Where", "Equal", "Greater", "Less", "Not", "And", "Or", "If", "Loop"],
    "types": ["Cast", "CastLike", "Identity", "QuantizeLinear", "DequantizeLinear"],
}


def findings_of(report: LintReport, rule: str) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule]


@pytest.mark.parametrize("opset", [17, 18, 19])
def test_clean_conv_prelu_resize_pad_passes(opset: int) -> None:
    report = lint_onnx(clean_model(opset))
    assert report.ok
    assert report.findings == ()
    assert report.node_count == 4


def test_computed_resize_scales_fail_naming_the_node() -> None:
    report = lint_onnx(dynamic_scales_model())
    assert not report.ok
    [finding] = report.errors
    assert (finding.rule, finding.node, finding.op_type) == (
        "resize-dynamic-scales",
        "up_to_64",
        "Resize",
    )
    assert "'up_to_64'" in finding.message
    assert "sizes" in finding.message  # says what to use instead


def test_resize_scales_through_cast_of_a_constant_count_as_constant() -> None:
    model = clean_model()
    model.graph.node.insert(0, helper.make_node("Cast", ["scales"], ["scales_cast"], to=FLOAT))
    model.graph.node[3].input[2] = "scales_cast"
    assert lint_onnx(model).ok


def test_unsupported_resize_and_pad_modes_are_errors() -> None:
    model = clean_model()
    resize, pad = model.graph.node[2], model.graph.node[3]
    resize.attribute[0].s = b"tf_crop_and_resize"  # coordinate_transformation_mode
    pad.attribute[0].s = b"symmetric"
    report = lint_onnx(model)
    assert {(f.rule, f.node) for f in report.errors} == {("resize-mode", "up"), ("pad-mode", "pad")}


@pytest.mark.parametrize(
    ("zero_point", "rules"),
    [
        (np.array(0, np.int8), set()),
        (np.array(3, np.int8), {"qdq-zero-point"}),
        (np.array(128, np.uint8), {"qdq-type", "qdq-zero-point"}),
    ],
)
def test_qdq_zero_points(zero_point: np.ndarray, rules: set[str]) -> None:
    report = lint_onnx(qdq_model(zero_point))
    assert {f.rule for f in report.errors} == rules
    assert report.ok == (not rules)
    for finding in report.errors:
        assert finding.node in ("act_q", "act_dq")
        assert finding.node in finding.message
        assert "'act_zp'" in finding.message


def test_qdq_scale_must_be_positive() -> None:
    model = qdq_model(np.array(0, np.int8))
    model.graph.initializer[-2].CopyFrom(
        numpy_helper.from_array(np.array(-1.0, np.float32), "act_scale")
    )
    assert {(f.rule, f.node) for f in lint_onnx(model).errors} == {
        ("qdq-scale", "act_q"),
        ("qdq-scale", "act_dq"),
    }


def test_qlinearconv_is_unsupported() -> None:
    u8 = np.array(0, np.uint8)
    scale = np.array(0.1, np.float32)
    node = helper.make_node(
        "QLinearConv",
        ["x_q", "s", "zp", "w_q", "s", "zp", "s", "zp"],
        ["y_q"],
        name="cpu_qconv",
    )
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "zp"], ["x_q"], name="q"),
        node,
        helper.make_node("DequantizeLinear", ["y_q", "s", "zp"], ["output"], name="dq"),
    ]
    initializers = {"s": scale, "zp": u8, "w_q": np.ones((8, 3, 3, 3), np.uint8)}
    report = lint_onnx(make_model(nodes, initializers, opset=17))
    [unsupported] = findings_of(report, "op-unsupported")
    assert (unsupported.node, unsupported.severity) == ("cpu_qconv", "error")
    assert "QuantizeLinear/DequantizeLinear" in unsupported.message


def test_custom_domain_op_is_an_error_naming_the_node() -> None:
    graph = helper.make_graph(
        [helper.make_node("FancyBlur", ["input"], ["output"], name="blur", domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("input", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    [finding] = lint_onnx(model).errors
    assert (finding.rule, finding.node) == ("op-custom-domain", "blur")
    assert "com.example::FancyBlur" in finding.message


def test_fp16_graph_with_casts_and_float32_io_passes() -> None:
    report = lint_onnx(fp16_model())
    assert report.ok
    assert report.findings == ()


def test_float16_graph_io_is_a_warning() -> None:
    nodes = [helper.make_node("Relu", ["input"], ["output"], name="relu")]
    report = lint_onnx(make_model(nodes, {}, input_type=FLOAT16, output_type=FLOAT16))
    assert report.ok
    assert [f.rule for f in report.warnings] == ["io-dtype", "io-dtype"]


@pytest.mark.parametrize(("opset", "severity"), [(8, "error"), (21, "warning")])
def test_opset_range(opset: int, severity: str) -> None:
    nodes = [helper.make_node("Relu", ["input"], ["output"], name="relu")]
    [finding] = lint_onnx(make_model(nodes, {}, opset=opset)).findings
    assert (finding.rule, finding.severity) == ("opset", severity)


def test_computed_axes() -> None:
    """ReduceMean needs constant axes (error); Pad accepts computed axes from TensorRT 10.4."""
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], name="shape", start=2),
        helper.make_node("Sub", ["shape", "shape"], ["zeros"], name="zeros"),
        helper.make_node("Add", ["zeros", "two_three"], ["axes"], name="axes"),
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], name="gap"),
        helper.make_node("Pad", ["mean", "pads", "", "axes"], ["output"], name="pad"),
    ]
    initializers = {
        "two_three": np.array([2, 3], np.int64),
        "pads": np.array([0, 0, 1, 1], np.int64),
    }
    findings = lint_onnx(make_model(nodes, initializers)).findings
    assert {(f.rule, f.severity, f.node) for f in findings} == {
        ("constant-input", "error", "gap"),
        ("pad-dynamic-axes", "warning", "pad"),
    }


def test_dropout_is_a_training_leftover_warning() -> None:
    nodes = [helper.make_node("Dropout", ["input"], ["output"], name="drop")]
    [finding] = lint_onnx(make_model(nodes, {})).findings
    assert (finding.rule, finding.severity, finding.node) == (
        "training-leftover",
        "warning",
        "drop",
    )


def test_support_table_covers_the_ops_cnn_exports_produce() -> None:
    table = load_support_table()
    cnn_ops = [op for group in CNN_OPS.values() for op in group]
    assert [op for op in cnn_ops if not table["operators"][op]["supported"]] == []
    for op in (
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    ):
        assert table["operators"][op]["supported"] is False
    used = {s for entry in table["operators"].values() for s in entry["source"].split("; ")}
    assert used <= set(table["sources"])


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    clean, broken = tmp_path / "clean.onnx", tmp_path / "broken.onnx"
    onnx.save(clean_model(), clean)
    onnx.save(dynamic_scales_model(), broken)
    runner = CliRunner()

    result = runner.invoke(main, ["lint", str(clean)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output

    result = runner.invoke(main, ["lint", str(broken)])
    assert result.exit_code == 1
    assert "resize-dynamic-scales" in result.output
    assert "up_to_64" in result.output

    result = runner.invoke(main, ["lint", str(broken), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert report["error_count"] == 1
    assert report["findings"][0]["node"] == "up_to_64"

    result = runner.invoke(main, ["lint", str(clean), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["findings"] == []


def test_cli_missing_file_is_a_clear_user_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 1
    assert "no such file" in result.output


@pytest.mark.filterwarnings("ignore")  # torch exporter chatter, not ours
def test_exported_small_mirnet(tmp_path: Path) -> None:
    """The real legacy export (opset 17, dynamic N/H/W): bilinear upsampling comes out as
    Resize with constant scales, the blur-downsample reflect Pads get computed pads (allowed).
    Lint finds nothing; if the export changes, this says exactly what TensorRT would reject."""
    torch = pytest.importorskip("torch")
    from mirnet_ref.presets import build_preset

    path = tmp_path / "small.onnx"
    dynamic = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(
        build_preset("small").eval(),
        torch.rand(1, 3, 32, 32),
        path,
        input_names=["input"],
        output_names=["output"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"input": dynamic, "output": dynamic},
    )
    report = lint_onnx(path)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"Resize", "Pad", "PRelu", "ConvTranspose", "Softmax"} <= ops
    assert report.findings == (), report.format_table()
