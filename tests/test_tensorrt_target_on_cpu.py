"""TensorRT-target INT8 graphs on ONNX Runtime's CPU provider: computed with the Q/DQ pairs unfused.

MPRNet's tensorrt-target graph slices a quantized feature map into patches and concatenates them
before a convolution; ONNX Runtime moves the DequantizeLinear past the Slices and fuses
DQ -> Concat -> Q into a QLinearConcat that has no FP16 scales, so the session refused the graph and
neither `mirnet parity` nor the INT8 report could judge an MPRNet for TensorRT on a CPU. The toy
below is that pattern in four convolutions (the default suite); the slow test runs MPRNet itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from calibration.dataset import CalibrationSet, build_calibration_set
from calibration.ort_cpu import DISABLE_QDQ_FUSION, cpu_session, session_config
from calibration.quantize import quantize_onnx
from engines.ort_build import build_ort_engine
from engines.runners import OrtRunner

X = np.random.default_rng(0).random((1, 3, 40, 48), dtype=np.float32)


def _concat_of_quantized_slices(path: Path) -> Path:
    """MPRNet's patch merge in four convolutions: a = conv(x) carries a Q/DQ pair (conv(a) reads it),
    its two channel halves are sliced and concatenated in swapped order, and a convolution reads the
    Concat (a second Q/DQ pair). ONNX Runtime moves the first DequantizeLinear past the Slices and
    fuses DQ -> Concat -> Q into a QLinearConcat."""
    rng = np.random.default_rng(1)
    shapes = {"wa": (8, 3, 3, 3), "wb": (8, 8, 3, 3), "wc": (3, 8, 3, 3), "wd": (3, 8, 3, 3)}
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)
               for name, shape in shapes.items()]
    weights += [numpy_helper.from_array(np.array(values, np.int64), name)
                for name, values in (("zero", [0]), ("half", [4]), ("all", [8]), ("channels", [1]))]
    conv = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["input", "wa"], ["a"], name="conv_a", **conv),
             helper.make_node("Conv", ["a", "wb"], ["b"], name="conv_b", **conv),
             helper.make_node("Conv", ["b", "wc"], ["c"], name="conv_c", **conv),
             helper.make_node("Slice", ["a", "zero", "half", "channels"], ["low"], name="slice_low"),
             helper.make_node("Slice", ["a", "half", "all", "channels"], ["high"], name="slice_high"),
             helper.make_node("Concat", ["high", "low"], ["swapped"], name="concat", axis=1),
             helper.make_node("Conv", ["swapped", "wd"], ["d"], name="conv_d", **conv),
             helper.make_node("Add", ["c", "d"], ["output"], name="add")]
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, "H", "W"])
          for name in ("input", "output")]
    model = helper.make_model(helper.make_graph(nodes, "concat_of_quantized_slices", io[:1], io[1:], weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def _quantized(fp32: Path, folder: Path, calibration: Path) -> dict[str, Path]:
    return {"fp32": fp32, **{target: Path(quantize_onnx(fp32, folder / f"{fp32.stem}.int8-{target}.onnx",
                                                        target=target, calibration=calibration,
                                                        cache_dir=folder / "cache").output)
                             for target in ("tensorrt", "cpu")}}


@pytest.fixture(scope="module")
def toy_int8(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("toy")
    build_calibration_set("denoise", folder / "denoise.npz", count=2, crop=32, seed=1)
    return _quantized(_concat_of_quantized_slices(folder / "toy.onnx"), folder, folder / "denoise.npz")


def _close_to_fp32(models: dict[str, Path], min_psnr_db: float, x: np.ndarray = X) -> np.ndarray:
    """The tensorrt-target output on the CPU for `x`, after checking it against the FP32 graph's."""
    with OrtRunner(models["fp32"], providers="cpu") as fp32, \
            OrtRunner(models["tensorrt"], providers="cpu") as runner:
        reference, output = fp32.run(x), runner.run(x)
    assert output.shape == reference.shape
    assert np.isfinite(output).all()
    peak_signal_to_error = float(np.abs(reference).max()) ** 2 / float(np.mean((output - reference) ** 2))
    assert 10 * np.log10(peak_signal_to_error) > min_psnr_db  # INT8 noise, not a wrong graph
    return output


def test_only_the_tensorrt_target_is_computed_unfused():
    assert session_config("int8-tensorrt") == {DISABLE_QDQ_FUSION: "1"}
    assert session_config("int8-cpu") == session_config("fp32") == session_config(None) == {}
    assert session_config("int8-tensorrt", qdq_fusion=True) == {}


def test_a_concat_of_quantized_slices_loads_and_computes_on_the_cpu(toy_int8, tmp_path):
    output = _close_to_fp32(toy_int8, min_psnr_db=30.0)
    # the same numbers through the calibration stage's session and through an ORT "engine" built from it
    session = cpu_session(toy_int8["tensorrt"])
    np.testing.assert_allclose(session.run(None, {"input": X})[0], output, atol=1e-5)
    engine = build_ort_engine(toy_int8["tensorrt"], tmp_path / "toy.int8-tensorrt.ort.onnx")
    assert engine.build_options["session_config"] == {DISABLE_QDQ_FUSION: "1"}
    with OrtRunner(tmp_path / "toy.int8-tensorrt.ort.onnx", providers="cpu") as built:
        np.testing.assert_allclose(built.run(X), output, atol=1e-5)


def test_the_cpu_target_keeps_onnx_runtimes_int8_kernels(toy_int8, tmp_path):
    """The cpu target is made for ONNX Runtime's fusions: its optimized graph holds QLinearConv."""
    build_ort_engine(toy_int8["cpu"], tmp_path / "cpu.ort.onnx", optimization_level="extended")
    assert any(node.op_type == "QLinearConv" for node in onnx.load(tmp_path / "cpu.ort.onnx").graph.node)
    build_ort_engine(toy_int8["tensorrt"], tmp_path / "trt.ort.onnx", optimization_level="extended")
    ops = {node.op_type for node in onnx.load(tmp_path / "trt.ort.onnx").graph.node}
    assert "DequantizeLinear" in ops
    assert not any(op.startswith("QLinear") for op in ops)


@pytest.mark.slow
def test_mprnet_tensorrt_target_loads_and_computes_close_to_fp32_on_the_cpu(tmp_path):
    from export.network import spec_of
    from export.onnx_export import export_onnx
    from mirnet_ref.registry import FAMILIES, inference_module

    torch.manual_seed(0)
    family = FAMILIES["mprnet"]
    model = family.build(family.preset("small")).eval()
    fp32 = export_onnx(inference_module(model), spec_of(model.config, "deblur"), tmp_path / "mprnet.onnx")
    build_calibration_set("deblur", tmp_path / "deblur.npz", count=2, crop=32, seed=1)
    with CalibrationSet(tmp_path / "deblur.npz") as calibration:
        blurred = np.ascontiguousarray(calibration.sample(0)[0].transpose(2, 0, 1)[None])
    # a random 3-stage network on two calibration crops: INT8 noise is larger (26.7 dB on uniform noise
    # input), a graph computed wrongly is far below
    _close_to_fp32(_quantized(fp32, tmp_path, tmp_path / "deblur.npz"), min_psnr_db=20.0, x=blurred)
