"""The FP16 variant: FP16 convolutions, FP32 islands for reductions and softmax, FP32 I/O.

Types are read from ONNX shape inference, so the assertions are about what each node
computes in, not only about initializers. ONNX Runtime CPU runs the graph as typed; its
closeness to FP32 bounds the rounding, not TensorRT's kernels (DEPLOY_STACK.md §7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from export.lint import lint_onnx
from export.network import load_network
from export.onnx_export import export_onnx
from export.precision import DEFAULT_FP32_OPS, convert_to_fp16, drop_duplicate_nodes
from export.verify import verify_onnx
from mirnet_deploy.errors import UserError
from mirnet_ref.checkpoint import save_checkpoint
from mirnet_ref.presets import build_preset

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
#: Uniform noise through a random-weight network; ORT CPU measured about 75 dB.
MIN_PSNR_DB = 40.0


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_preset("small"), tmp_path_factory.mktemp("ckpt") / "small.pth")
    return load_network(checkpoint, "denoise")


@pytest.fixture(scope="module")
def fp32_onnx(small, tmp_path_factory) -> Path:
    network, spec = small
    return export_onnx(network, spec, tmp_path_factory.mktemp("onnx") / "small.fp32.onnx")


@pytest.fixture(scope="module")
def fp16_onnx(fp32_onnx) -> Path:
    return convert_to_fp16(fp32_onnx, fp32_onnx.with_name("small.fp16.onnx"))


@pytest.fixture(scope="module")
def fp16_model(fp16_onnx) -> onnx.ModelProto:
    return onnx.load(fp16_onnx)


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> ONNX element type, for every tensor of the graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {tensor.name: tensor.data_type for tensor in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        types[value.name] = value.type.tensor_type.elem_type
    return types


def nodes_of(model: onnx.ModelProto, *op_types: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type in op_types]


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_convolutions_compute_in_fp16(fp16_model):
    types = element_types(fp16_model)
    convolutions = nodes_of(fp16_model, "Conv", "ConvTranspose")
    assert len(convolutions) > 100
    initializers = {tensor.name for tensor in fp16_model.graph.initializer}
    for node in convolutions:
        assert node.input[1] in initializers, node.name
        assert types[node.input[1]] == FLOAT16, node.name
        assert types[node.input[0]] == types[node.output[0]] == FLOAT16, node.name


def test_reductions_and_softmax_stay_fp32(fp16_model):
    types = element_types(fp16_model)
    kept = nodes_of(fp16_model, *DEFAULT_FP32_OPS)
    assert {node.op_type for node in kept} == {"GlobalAveragePool", "ReduceMean", "ReduceSum", "Softmax"}
    for node in kept:
        assert types[node.input[0]] == types[node.output[0]] == FLOAT, node.name


def test_io_stays_fp32(fp16_model):
    for value in [*fp16_model.graph.input, *fp16_model.graph.output]:
        assert value.type.tensor_type.elem_type == FLOAT


def cast_chains(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(first, second) names of Casts feeding Casts, e.g. fp32 -> fp16 -> fp32 round trips."""
    producer = {output: node for node in model.graph.node for output in node.output}
    return [
        (producer[node.input[0]].name, node.name)
        for node in nodes_of(model, "Cast")
        if node.input[0] in producer and producer[node.input[0]].op_type == "Cast"
    ]


def test_no_cast_round_trips(fp16_model):
    """A Cast(->fp16) feeding a Cast(->fp32) would only round a value meant to stay FP32."""
    assert cast_chains(fp16_model) == []


def test_metadata(fp16_model, fp32_onnx):
    fp32 = {prop.key: prop.value for prop in onnx.load(fp32_onnx).metadata_props}
    fp16 = {prop.key: prop.value for prop in fp16_model.metadata_props}
    assert fp16 == {
        **fp32,
        "precision": "fp16",
        "fp32_op_types": '["GlobalAveragePool", "ReduceMean", "ReduceSum", "Softmax"]',
        "fp32_nodes": "[]",
    }


def test_lint_passes(fp16_model):
    report = lint_onnx(fp16_model)
    assert report.ok
    assert not report.findings


def test_runs_on_ort_close_to_fp32(fp32_onnx, fp16_onnx, small):
    for shape in [(1, 3, 64, 64), (2, 3, 45, 71)]:
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        fp16_out, fp32_out = run(fp16_onnx, x), run(fp32_onnx, x)
        assert fp16_out.dtype == np.float32
        assert np.isfinite(fp16_out).all()
        psnr = 10 * math.log10(1 / float(np.mean((fp16_out - fp32_out) ** 2)))
        print(f"FP16 vs FP32 on ORT CPU, {shape}: PSNR {psnr:.1f} dB")
        assert psnr > MIN_PSNR_DB
    network, spec = small
    assert verify_onnx(fp16_onnx, network, spec, shapes=((1, 33, 30),)).ok


def test_chosen_nodes_stay_fp32(fp32_onnx, tmp_path):
    """Node names from an audit keep FP32 too; two neighbours need no Cast between them."""
    model = onnx.load(fp32_onnx)
    consumers = {name: node for node in model.graph.node for name in node.input}
    conv = next(node for node in nodes_of(model, "Conv") if consumers[node.output[0]].op_type == "PRelu")
    prelu = consumers[conv.output[0]]
    path = convert_to_fp16(fp32_onnx, tmp_path / "audited.onnx", fp32_nodes=[conv.name, prelu.name])
    converted = onnx.load(path)
    types = element_types(converted)
    by_name = {node.name: node for node in converted.graph.node}
    for name in (conv.name, prelu.name):
        node = by_name[name]
        assert types[node.input[0]] == types[node.input[1]] == types[node.output[0]] == FLOAT, name
    assert by_name[prelu.name].input[0] == by_name[conv.name].output[0]
    assert cast_chains(converted) == []
    metadata = {prop.key: prop.value for prop in converted.metadata_props}
    assert json.loads(metadata["fp32_nodes"]) == sorted([conv.name, prelu.name])


def test_rejects_unknown_nodes_and_fp16_sources(fp32_onnx, fp16_onnx, tmp_path):
    with pytest.raises(UserError, match="not in the model: /no/such/Conv"):
        convert_to_fp16(fp32_onnx, tmp_path / "x.onnx", fp32_nodes=["/no/such/Conv"])
    with pytest.raises(UserError, match="not fp32"):
        convert_to_fp16(fp16_onnx, tmp_path / "y.onnx")
    assert not list(tmp_path.iterdir())


def _cast_graph(*casts: onnx.NodeProto) -> onnx.ModelProto:
    """x -> Relu -> h; h cast to FP16 by `casts`; y = Identity(h16)."""
    relu = onnx.helper.make_node("Relu", ["x"], ["h"], name="relu")
    out = onnx.helper.make_node("Identity", ["h16"], ["y"], name="out")
    graph = onnx.helper.make_graph(
        [relu, *casts, out], "g",
        [onnx.helper.make_tensor_value_info("x", FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", FLOAT16, [2])])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_duplicate_casts_of_older_converters_are_dropped():
    """onnxruntime 1.30's converter wrote one Cast twice (seen on the GPU machine's image);
    the copy is dropped, the graph is valid and runs."""
    cast = onnx.helper.make_node("Cast", ["h"], ["h16"], name="cast", to=FLOAT16)
    model = drop_duplicate_nodes(_cast_graph(cast, cast))
    assert [node.op_type for node in model.graph.node] == ["Relu", "Cast", "Identity"]
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.array([-1.0, 2.5], np.float32)})[0]
    np.testing.assert_array_equal(y, np.array([0.0, 2.5], np.float16))


def test_two_different_writers_of_one_tensor_are_refused():
    first = onnx.helper.make_node("Cast", ["h"], ["h16"], name="cast", to=FLOAT16)
    other = onnx.helper.make_node("Cast", ["x"], ["h16"], name="cast_x", to=FLOAT16)
    with pytest.raises(UserError, match="two different nodes that both write 'h16'"):
        drop_duplicate_nodes(_cast_graph(first, other))
