"""TensorRT build and run paths, for real: needs a CUDA GPU, TensorRT and cuda-python (`pytest -m gpu`).

Everything here is skipped, with the probe's reason, where `probe_cuda()` finds no device or
TensorRT is not usable; the probes themselves never touch TensorRT without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_engines import toy_onnx

from engines.manifest import load_manifest, manifest_path, write_manifest
from engines.probe import probe_cuda, probe_tensorrt
from engines.runners import OrtRunner, TensorRTRunner, as_polygraphy_runner
from engines.tensorrt_build import build_tensorrt_cached, build_tensorrt_engine, profiles_from_resolutions
from mirnet_deploy.errors import UserError

CUDA = probe_cuda()
TENSORRT = probe_tensorrt(CUDA)
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not TENSORRT.available, reason=f"needs a CUDA GPU and TensorRT: {TENSORRT.reason}"),
]

#: Two resolution buckets, batch up to 2: (1,3,12,16)..(2,3,48,64) and (1,3,32,40)..(2,3,120,160).
PROFILES = profiles_from_resolutions(["64x48", "160x120"], batch=2, size_multiple=4)
TOLERANCE = {"fp32": 5e-3, "fp16": 3e-2}  # fp32 engines may use TF32 tensor cores


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """An FP32 and an FP16 engine of the toy net (FP16 typed in its ONNX), sharing one timing cache."""
    folder = tmp_path_factory.mktemp("tensorrt")
    engines = {}
    for precision in ("fp32", "fp16"):
        onnx_path = toy_onnx(folder / f"toy.{precision}.onnx", precision)
        engines[precision] = folder / f"toy.{precision}.engine"
        build_tensorrt_engine(onnx_path, engines[precision], profiles=PROFILES, workspace_mb=512,
                              timing_cache_path=folder / "timing.cache", progress=False)
    return engines


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", [(1, 3, 48, 64), (2, 3, 100, 160), (1, 3, 13, 17)])
def test_engine_matches_onnxruntime(built, precision, shape):
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    reference_onnx = built["fp32"].with_name("toy.fp32.onnx")
    with TensorRTRunner(built[precision]) as engine, OrtRunner(reference_onnx, providers="cpu") as reference:
        got, expected = engine.run(batch), reference.run(batch)
    assert got.shape == expected.shape == shape
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < TOLERANCE[precision]


def test_manifest_records_the_build(built):
    for precision, engine in built.items():
        manifest = load_manifest(engine)
        assert (manifest.backend, manifest.backend_version, manifest.precision) == (
            "tensorrt", TENSORRT.version, precision)
        assert (manifest.gpu_name, manifest.compute_capability) == (
            CUDA.devices[0].name, CUDA.devices[0].compute_capability)
        assert manifest.profile_list() == PROFILES
        assert manifest.build_options["strongly_typed"] is True
    assert load_manifest(built["fp16"]).layer_precisions.get("Half", 0) > 0
    assert load_manifest(built["fp32"]).layer_precisions.get("Half", 0) == 0


def test_runner_picks_profiles_and_regrows_buffers(built):
    with TensorRTRunner(built["fp32"]) as runner:
        assert runner.profiles == PROFILES
        assert runner.input_spec.shape == (-1, 3, -1, -1)
        outputs = [runner.run(np.full(shape, 0.5, np.float32)) for shape in
                   [(1, 3, 16, 16), (2, 3, 120, 160), (1, 3, 16, 16)]]  # profile 0, 1, back to 0
        assert [o.shape for o in outputs] == [(1, 3, 16, 16), (2, 3, 120, 160), (1, 3, 16, 16)]
        np.testing.assert_array_equal(outputs[0], outputs[2])
        with pytest.raises(UserError, match="outside every optimization profile"):
            runner.run(np.zeros((1, 3, 240, 320), np.float32))


def test_polygraphy_compares_tensorrt_with_onnxruntime(built):
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    feeds = [{"input": np.random.default_rng(1).random((1, 3, 40, 56), dtype=np.float32)}]
    with TensorRTRunner(built["fp16"]) as engine, \
            OrtRunner(built["fp32"].with_name("toy.fp32.onnx"), providers="cpu") as reference:
        results = Comparator.run([as_polygraphy_runner(reference), as_polygraphy_runner(engine)],
                                 data_loader=feeds)
    assert bool(Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=TOLERANCE["fp16"])))


@pytest.mark.parametrize(("change", "named"), [
    ({"gpu_name": "Some Other GPU"}, "built for the GPU Some Other GPU"),
    ({"backend_version": "10.0.0.1"}, "built with TensorRT 10.0.0.1"),
])
def test_mismatched_manifest_is_refused_before_deserializing(built, tmp_path, change, named):
    engine = tmp_path / built["fp32"].name
    shutil.copy(built["fp32"], engine)
    manifest = dataclasses.replace(load_manifest(built["fp32"]), **change)
    write_manifest(manifest, engine)
    with pytest.raises(UserError, match=named):
        TensorRTRunner(engine)
    with pytest.raises(UserError, match="another ONNX model"):
        TensorRTRunner(built["fp32"], onnx_sha256="0" * 64)


def test_fp32_graph_cannot_pass_as_an_fp16_engine(tmp_path):
    onnx_path = toy_onnx(tmp_path / "toy.onnx", "fp32", declare=False)  # no precision metadata to object
    with pytest.raises(UserError, match="no FP16 layer"):
        build_tensorrt_engine(onnx_path, tmp_path / "toy.engine", precision="fp16", profiles=PROFILES[:1],
                              progress=False)
    assert not (tmp_path / "toy.engine").exists()
    assert not manifest_path(tmp_path / "toy.engine").exists()


def test_parse_errors_name_the_node(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["input"], ["output"], name="mystery", domain="com.example")], "bad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(UserError, match=r"node 0 'mystery' \(NoSuchOp\)"):
        build_tensorrt_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine", profiles=PROFILES[:1],
                              progress=False)


def test_engine_cache_and_timing_cache_are_reused(tmp_path):
    onnx_path = toy_onnx(tmp_path / "toy.fp32.onnx")
    cache = tmp_path / "engines"
    first = build_tensorrt_cached(onnx_path, cache, profiles=PROFILES[:1], progress=True)
    (timing,) = cache.glob("timing.*.cache")
    size = timing.stat().st_size
    assert not first.reused
    assert size > 0
    again = build_tensorrt_cached(onnx_path, cache, profiles=PROFILES[:1])
    assert again.reused
    assert again.path == first.path
    other = build_tensorrt_cached(onnx_path, cache, profiles=PROFILES, optimization_level=2, progress=False)
    assert not other.reused
    assert other.path != first.path
    assert timing.stat().st_size >= size  # the second build read the cache and added its own timings
    assert json.loads(manifest_path(other.path).read_text())["build_options"]["optimization_level"] == 2


def test_torch_cuda_tensors_run_in_place(built):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA")
    batch = np.random.default_rng(2).random((1, 3, 48, 64), dtype=np.float32)
    with TensorRTRunner(built["fp16"]) as runner:
        on_gpu = runner.run(torch.from_numpy(batch).cuda())
        assert on_gpu.is_cuda
        np.testing.assert_allclose(on_gpu.cpu().numpy(), runner.run(batch), atol=1e-6)
