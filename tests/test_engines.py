"""Runners, backend selection, the polygraphy adapter, ONNX Runtime engines, engine precision checks (CPU)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from engines.manifest import EngineManifest, Profile, load_manifest, publish_engine
from engines.ort_build import build_ort_cached, build_ort_engine
from engines.runners import (
    OrtRunner,
    TensorRTRunner,
    TensorSpec,
    TorchRunner,
    as_polygraphy_runner,
    open_runner,
    select_backend,
)
from engines.tensorrt_build import (
    check_engine_precision,
    layer_precision_counts,
    profiles_from_resolutions,
    static_profile,
)
from mirnet_deploy.errors import UserError
from mirnet_ref.presets import build_preset


def toy_onnx(path: Path, precision: str = "fp32", declare: bool = True) -> Path:
    """A 2-conv residual net as ONNX, float32 I/O, dynamic N/H/W; `fp16` computes in half inside.

    Written with onnx.helper so that an FP16-typed graph (what TensorRT builds FP16 from)
    needs no half-precision PyTorch on the CPU.
    """
    rng = np.random.default_rng(0)
    inner = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    dtype = np.float16 if precision == "fp16" else np.float32
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(dtype), name)
               for name, shape in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (3, 8, 3, 3)), ("b2", (3,)))]
    nodes = [helper.make_node("Cast", ["input"], ["x"], to=inner),
             helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["x", "c2"], ["y"]),
             helper.make_node("Cast", ["y"], ["output"], to=TensorProto.FLOAT)]
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, "H", "W"])
          for name in ("input", "output")]
    model = helper.make_model(helper.make_graph(nodes, "toy", io[:1], io[1:], weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if declare:
        helper.set_model_props(model, {"precision": precision, "size_multiple": "1"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def small_mirnet(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """The `small` MIRNet preset and its ONNX export (legacy exporter, opset 17, dynamic N/H/W)."""
    torch.manual_seed(0)
    model = build_preset("small").eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(1, 3, 32, 32), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={name: {0: "N", 2: "H", 3: "W"} for name in ("input", "output")})
    return model, path


@pytest.fixture
def toy(tmp_path) -> Path:
    return toy_onnx(tmp_path / "toy.onnx")


# --- runners ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 24, 40)])
def test_torch_and_ort_runners_agree(small_mirnet, shape):
    model, path = small_mirnet
    batch = np.random.default_rng(1).random(shape, dtype=np.float32)
    with TorchRunner(model) as reference, OrtRunner(path, providers="cpu", threads=1) as artifact:
        expected, got = reference.run(batch), artifact.run(torch.from_numpy(batch))
    assert got.shape == expected.shape == shape
    assert np.abs(got - expected).max() < 1e-4


def test_specs_report_dynamic_dims(small_mirnet):
    model, path = small_mirnet
    with OrtRunner(path, providers="cpu") as runner:
        assert runner.input_spec == TensorSpec("input", "float32", (-1, 3, -1, -1))
        assert runner.output_spec == TensorSpec("output", "float32", (-1, 3, -1, -1))
        assert runner.providers == ["CPUExecutionProvider"]
    assert TorchRunner(model).input_spec == TensorSpec("input", "float32", (-1, 3, -1, -1))


def test_close_and_bad_input(toy):
    runner = OrtRunner(toy, providers="cpu")
    with pytest.raises(UserError, match=r"NCHW batch"):
        runner.run(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(UserError, match=r"shape \(-1, 3, -1, -1\)"):
        runner.run(np.zeros((1, 4, 8, 8), np.float32))
    with runner:
        assert runner.run(np.zeros((1, 3, 8, 8), np.float64)).dtype == np.float32
    assert runner.closed
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(np.zeros((1, 3, 8, 8), np.float32))
    runner.close()  # twice is fine


def test_gpu_providers_need_onnxruntime_gpu(toy):
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        OrtRunner(toy, providers="cuda")
    with pytest.raises(UserError, match="Unknown ONNX Runtime provider"):
        OrtRunner(toy, providers="rocm")


def test_open_runner_by_suffix(toy, tmp_path):
    with open_runner(toy, providers="cpu") as runner:
        assert isinstance(runner, OrtRunner)
    with pytest.raises(UserError, match="expected a TensorRT"):
        open_runner(tmp_path / "model.pth")


# --- backend selection -----------------------------------------------------------------------------


def test_auto_leaves_the_cpu_runtime_to_measurement_without_a_gpu():
    name, reason = select_backend("auto")
    assert name == "cpu"  # engines.cpu_choice measures ONNX Runtime against OpenVINO
    assert "no CUDA device found" in reason
    assert "TensorRT" in reason


def test_tensorrt_request_names_what_to_install(toy):
    with pytest.raises(UserError) as info:
        select_backend("tensorrt", onnx_path=toy)
    message = str(info.value)
    for needed in ("pip install tensorrt", "cuda-python", str(toy), "--backend ort"):
        assert needed in message
    assert select_backend("torch")[0] == "torch"
    assert select_backend("ort")[0] == "ort"
    with pytest.raises(UserError, match="Unknown backend"):
        select_backend("tflite")


def test_tensorrt_runner_refuses_before_touching_tensorrt(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a plan")
    with pytest.raises(UserError, match="no manifest"):
        TensorRTRunner(engine)
    manifest = EngineManifest(engine.name, "tensorrt", "10.3.0", "fp16", "model.onnx", "0" * 64, [], {}, 1.0,
                              "2026-01-01T00:00:00+00:00", "k", gpu_name="NVIDIA A100",
                              compute_capability="8.0")
    publish_engine(engine, manifest, lambda tmp: tmp.write_bytes(b"not a plan"))
    with pytest.raises(UserError, match="pip install tensorrt"):
        TensorRTRunner(engine)
    assert "tensorrt" not in sys.modules


# --- polygraphy ------------------------------------------------------------------------------------


def test_polygraphy_comparator_runs_our_runners(small_mirnet):
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    model, path = small_mirnet
    feeds = [{"input": np.random.default_rng(2).random((1, 3, 24, 28), dtype=np.float32)}]
    with TorchRunner(model) as reference, OrtRunner(path, providers="cpu") as artifact:
        runners = [as_polygraphy_runner(reference), as_polygraphy_runner(artifact)]
        results = Comparator.run(runners, data_loader=feeds)
        assert not reference.closed  # polygraphy's activate/deactivate leave the runner open
    assert bool(Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=1e-4)))
    assert results[runners[1].name][0]["output"].shape == (1, 3, 24, 28)


# --- ONNX Runtime engines --------------------------------------------------------------------------


def test_ort_engine_build_then_reuse(toy, tmp_path):
    cache = tmp_path / "engines"
    first = build_ort_cached(toy, cache, threads=1)
    assert not first.reused
    assert first.path.name.endswith(".ort.onnx")
    assert first.path.is_file()
    assert Path(f"{first.path}.json").is_file()
    manifest = load_manifest(first.path)
    assert manifest.backend == "onnxruntime"
    assert manifest.precision == "fp32"
    assert manifest.cpu_model
    assert manifest.gpu_name is None
    assert manifest.build_options["providers"] == ["CPUExecutionProvider"]
    assert manifest.profiles == []
    assert manifest.build_seconds > 0
    built_at = first.path.stat().st_mtime_ns

    again = build_ort_cached(toy, cache, threads=1)
    assert again.reused
    assert again.path == first.path
    assert again.path.stat().st_mtime_ns == built_at
    other = build_ort_cached(toy, cache, optimization_level="basic")
    assert not other.reused
    assert other.path != first.path

    batch = np.random.default_rng(3).random((1, 3, 16, 12), dtype=np.float32)
    with OrtRunner(toy, providers="cpu") as plain, OrtRunner(first.path, providers="cpu") as optimized:
        assert np.abs(plain.run(batch) - optimized.run(batch)).max() < 1e-5


def test_ort_engine_for_another_cpu_is_refused(toy, tmp_path, monkeypatch):
    engine = tmp_path / "toy.ort.onnx"
    build_ort_engine(toy, engine)
    monkeypatch.setattr("engines.runners.ort_runner.cpu_model", lambda: "Another CPU 9000")
    with pytest.raises(UserError, match="Another CPU 9000"):
        OrtRunner(engine, providers="cpu")


def test_precision_contradicting_the_onnx_is_refused(toy, tmp_path):
    with pytest.raises(UserError, match="Precision lives in the ONNX graph"):
        build_ort_engine(toy, tmp_path / "x.ort.onnx", precision="fp16")
    assert not list(tmp_path.glob("x.*"))


# --- TensorRT helpers that need no GPU -------------------------------------------------------------


def test_profiles_from_resolution_buckets():
    assert profiles_from_resolutions(["720p", "1080p"], batch=1, size_multiple=4) == [
        Profile((1, 3, 180, 320), (1, 3, 720, 1280), (1, 3, 720, 1280)),
        Profile((1, 3, 272, 480), (1, 3, 1080, 1920), (1, 3, 1080, 1920)),
    ]
    (batched,) = profiles_from_resolutions([(10, 6)], batch=4)
    assert batched == Profile((1, 3, 4, 4), (4, 3, 6, 10), (4, 3, 6, 10))
    assert batched.contains((2, 3, 5, 9))
    assert not batched.contains((1, 3, 8, 8))
    assert static_profile((1, 3, 720, 1280)) == Profile(*[(1, 3, 720, 1280)] * 3)


def _layer(layer_type: str, *types: str, key: str = "Format/Datatype") -> dict:
    tensors = [{"Name": f"t{i}", "Location": "Device", "Dimensions": [1, 8, 64, 64], key: t}
               for i, t in enumerate(types)]
    return {"Name": f"{layer_type} layer", "LayerType": layer_type, "Inputs": tensors[:1],
            "Outputs": tensors[1:],             "TacticValue": "0x0000000000000000"}


FP16_ENGINE = {"Layers": [
    _layer("Reformat", "Row major linear FP32", "Channel major FP16 format where channel % 8 == 0"),
    _layer("CaskConvolution", "Channel major FP16 format where channel % 8 == 0",
           "Channel major FP16 format where channel % 8 == 0"),
    _layer("CaskConvolution", "Channel major FP16 format where channel % 8 == 0", "Row major linear FP32"),
], "Bindings": ["input", "output"]}
FP32_ENGINE = {"Layers": [_layer("CaskConvolution", "Row major linear FP32", "Row major linear FP32")] * 2,
               "Bindings": ["input", "output"]}
INT8_ENGINE = {"Layers": [
    _layer("CaskConvolution", "Thirty-two wide channel vectorized row major Int8 format",
           "Thirty-two wide channel vectorized row major Int8 format"),
    _layer("PointWiseV2", "Row major linear FP16 format", "Row major linear FP32"),
], "Bindings": ["input", "output"]}


def test_engine_precision_check_on_inspector_json():
    assert check_engine_precision(FP16_ENGINE, "fp16") == []
    assert check_engine_precision(json.dumps(FP16_ENGINE), "fp16") == []  # the string TensorRT returns
    assert layer_precision_counts(FP16_ENGINE) == {"Float": 1, "Half": 2}  # the Reformat layer is not counted
    (problem,) = check_engine_precision(FP32_ENGINE, "fp16")
    assert "no FP16 layer" in problem
    assert "2 Float" in problem
    assert check_engine_precision(INT8_ENGINE, "int8-tensorrt") == []
    assert "no INT8 layer" in check_engine_precision(FP16_ENGINE, "int8")[0]
    assert check_engine_precision(FP32_ENGINE, "fp32") == []
    assert "not FP32" in check_engine_precision(FP16_ENGINE, "fp32")[0]


def test_engine_precision_check_reads_tensorrt_11_keys_and_reports_missing_detail():
    trt11 = {"Layers": [_layer("CaskConvolution", "Half", "Half", key="Datatype")]}
    assert check_engine_precision(trt11, "fp16") == []
    names_only = {"Layers": ["conv1 + relu1", "conv2"], "Bindings": ["input", "output"]}
    assert "ProfilingVerbosity.DETAILED" in check_engine_precision(names_only, "fp16")[0]
    unknown = "N/A due to dynamic shapes"
    dynamic = {"Layers": [_layer("CaskConvolution", unknown, unknown)]}
    assert "execution context" in check_engine_precision(dynamic, "fp16")[0]



@pytest.mark.parametrize("key", ["DataType", "datatype", "DATATYPE", "Format/DataType"])
def test_engine_precision_check_reads_data_type_keys_in_any_case(key):
    """TensorRT 11's documents spell the key `DataType` as well as `Datatype` (defect 8)."""
    engine = {"Layers": [_layer("CaskConvolution", "Half", "Half", key=key)]}
    assert layer_precision_counts(engine) == {"Half": 1}
    assert check_engine_precision(engine, "fp16") == []


def test_unrecognised_data_types_read_as_unknown_not_as_fp32():
    """Types this parser does not know must not become "no FP16 layer" (a wrong verdict), but unknown."""
    engine = {"Layers": [_layer("CaskConvolution", "Kf16x2 packed", "Kf16x2 packed", key="DataType")]}
    assert layer_precision_counts(engine) == {"unknown": 1}
    (problem,) = check_engine_precision(engine, "fp16")
    assert "precision is unknown" in problem
    assert "no FP16 layer" not in problem
