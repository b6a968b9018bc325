"""ONNX Runtime's TensorRT execution provider gets its options (defect 5 of issue 13): engine and timing
caches, the profile of the shapes to run, precision from the graph. Without them every fresh benchmark
process rebuilds the engine and a benchmark measures build time. The session is the one thing faked here
(onnxruntime-gpu cannot be installed on this CPU machine); what the runner hands ONNX Runtime is real."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_engines import toy_onnx

from engines.manifest import Profile
from engines.runners import OrtRunner, ort_runner

CPU_SESSION = ort.InferenceSession


class RecordingSession:
    """Takes the providers as ONNX Runtime would and answers like a CPU session of the same model."""

    created: ClassVar[list[list]] = []

    def __init__(self, path, options, providers):
        RecordingSession.created.append(providers)
        self._cpu = CPU_SESSION(path, options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self._cpu, name)


@pytest.fixture
def tensorrt_provider(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", RecordingSession)
    RecordingSession.created.clear()
    return RecordingSession.created


@pytest.mark.parametrize(("precision", "fp16", "int8"), [("fp32", False, False), ("fp16", True, False)])
def test_tensorrt_provider_gets_caches_profile_and_precision(tensorrt_provider, tmp_path, precision, fp16,
                                                             int8):
    model = toy_onnx(tmp_path / f"toy.{precision}.onnx", precision)
    profile = Profile((1, 3, 12, 16), (2, 3, 48, 64), (2, 3, 48, 64))
    OrtRunner(model, providers="tensorrt", tensorrt_profile=profile).close()
    ((name, options), *rest) = tensorrt_provider[0]
    assert name == "TensorrtExecutionProvider"
    assert rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    cache = str(tmp_path / "ort-trt-cache")
    assert options == {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True, "trt_timing_cache_path": cache,
        "trt_fp16_enable": fp16, "trt_int8_enable": int8,
        "trt_profile_min_shapes": "input:1x3x12x16", "trt_profile_opt_shapes": "input:2x3x48x64",
        "trt_profile_max_shapes": "input:2x3x48x64"}


def test_int8_graphs_enable_int8_and_the_cache_folder_can_be_chosen(tmp_path):
    model = toy_onnx(tmp_path / "toy.onnx", "fp32", declare=False)
    graph = onnx.load(model)
    onnx.helper.set_model_props(graph, {"precision": "int8-tensorrt"})
    onnx.save(graph, model)
    options = ort_runner.tensorrt_provider_options(model, tmp_path / "cache")
    assert (options["trt_int8_enable"], options["trt_fp16_enable"]) == (True, False)
    assert options["trt_engine_cache_path"] == str(tmp_path / "cache")
    assert not any(key.startswith("trt_profile") for key in options)  # no profile given: none set


def test_cpu_and_cuda_providers_get_no_tensorrt_options(tmp_path):
    with OrtRunner(toy_onnx(tmp_path / "toy.onnx"), providers="cpu") as runner:
        assert runner.run(np.zeros((1, 3, 8, 8), np.float32)).shape == (1, 3, 8, 8)
        assert runner.providers == ["CPUExecutionProvider"]
