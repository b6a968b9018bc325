"""`calibration.ort_lookups`: ONNX Runtime's quantizer with indexed lookups gives what its scans give."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.onnx_model import ONNXModel

from calibration.ort_lookups import indexed_lookups, is_reviewed


def _edge_case_model() -> onnx.ModelProto:
    """`t` is read by three nodes (one of them reads it twice) and is also a graph output."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), name)
               for name in ("w1", "w2")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["t"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["t", "t"], ["doubled"], name="add"),
        helper.make_node("Conv", ["t", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["t", "c2"], ["y"], name="mul"),
    ]
    inputs, outputs = ([helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, 8, 8])
                        for name in names] for names in (["x"], ["t", "doubled", "y"]))
    graph = helper.make_graph(nodes, "edge", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class _Samples(CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self._samples = iter([{"x": rng.normal(size=(1, 4, 8, 8)).astype(np.float32)} for _ in range(2)])

    def get_next(self):
        return next(self._samples, None)


@pytest.mark.parametrize("options", [
    {"WeightSymmetric": True},
    {"ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True},
    {"DedicatedQDQPair": True},  # one Q/DQ pair per reader of `t`: edits through `replace_node_input`
], ids=["cpu", "tensorrt-like", "dedicated-pairs"])
def test_a_shared_tensor_that_is_also_a_graph_output_quantizes_to_the_same_bytes(options: dict,
                                                                                 tmp_path: Path):
    source = tmp_path / "edge.onnx"
    onnx.save(_edge_case_model(), source)
    outputs = {}
    for mode in ("scanned", "indexed"):
        outputs[mode] = tmp_path / f"{mode}.onnx"
        with indexed_lookups() if mode == "indexed" else _unchanged() as active:
            assert active == (mode == "indexed")
            quantize_static(source, outputs[mode], _Samples(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "Add", "Mul"], extra_options=options)
    assert outputs["indexed"].read_bytes() == outputs["scanned"].read_bytes()
    quantized = onnx.load(outputs["indexed"])
    producers = {output: node.op_type for node in quantized.graph.node for output in node.output}
    readers = [node for node in quantized.graph.node if node.name in ("add", "conv2", "mul")]
    read = [name for node in readers for name in node.input if name.startswith("t")]
    assert len(read) == 4  # add reads it twice
    assert {producers[name] for name in read} == {"DequantizeLinear"}  # every reader reads a dequantized `t`
    assert "t" in [output.name for output in quantized.graph.output]


def test_the_index_follows_nodes_added_removed_and_replaced_in_between(tmp_path: Path):
    """Node edits between replacements, as the quantizer makes them (append, remove, clear and refill,
    one node's input): each replacement edits the nodes a full scan edits."""
    def edit(model: ONNXModel) -> None:
        model.replace_input_of_all_nodes("t", "t_dq")
        model.add_node(helper.make_node("Relu", ["t_dq"], ["r"], name="relu"))
        model.remove_node(model.model.graph.node[1])  # `add`
        model.replace_input_of_all_nodes("t_dq", "t_dq2")
        nodes = list(model.model.graph.node)
        model.model.graph.ClearField("node")
        model.model.graph.node.extend(reversed(nodes))  # copies: the indexed messages are gone
        model.replace_input_of_all_nodes("t_dq2", "t_final")
        mul = next(node for node in model.model.graph.node if node.name == "mul")
        model.replace_node_input(mul, "c2", "c2_q")  # one node, edited in place
        model.replace_input_of_all_nodes("c2_q", "c2_dq")

    scanned, indexed = ONNXModel(_edge_case_model()), ONNXModel(_edge_case_model())
    edit(scanned)
    with indexed_lookups():
        edit(indexed)
    assert indexed.model.SerializeToString() == scanned.model.SerializeToString()
    assert sorted(node.name for node in indexed.model.graph.node if "t_final" in node.input) == [
        "conv2", "mul", "relu"]
    assert [node.name for node in indexed.model.graph.node if "c2_dq" in node.input] == ["mul"]


def test_the_originals_are_back_after_an_error():
    originals = (ONNXModel.replace_input_of_all_nodes, ONNXModel.get_initializer,
                 ONNXModel.__dict__["replace_node_input"])
    def fail_while_patched() -> None:
        with indexed_lookups() as active:
            assert active
            assert ONNXModel.replace_input_of_all_nodes is not originals[0]
            raise RuntimeError("in the middle of quantizing")

    with pytest.raises(RuntimeError, match="in the middle"):
        fail_while_patched()
    assert (ONNXModel.replace_input_of_all_nodes, ONNXModel.get_initializer,
            ONNXModel.__dict__["replace_node_input"]) == originals
    assert is_reviewed()


def _unchanged() -> contextlib.AbstractContextManager[bool]:
    """A block that patches nothing, yielding False like `indexed_lookups` on an unreviewed quantizer."""
    return contextlib.nullcontext(False)
