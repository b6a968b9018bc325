"""Engine manifests, their checks, the engine cache and atomic engine publishing (CPU only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import engines.manifest
from engines.cache import (
    EngineRequest,
    build_or_reuse,
    cache_key,
    cached_engine,
    describe_onnx,
    engine_filename,
)
from engines.manifest import (
    EngineManifest,
    Profile,
    check_manifest,
    load_manifest,
    manifest_path,
    publish_engine,
    update_parity,
    write_manifest,
)
from mirnet_deploy.errors import UserError

PROFILES = (Profile((1, 3, 180, 320), (1, 3, 720, 1280), (1, 3, 720, 1280)),)
REQUEST = EngineRequest(onnx_sha256="a" * 64, onnx_stem="denoise.fp16", precision="fp16", backend="tensorrt",
                        backend_version="10.3.0.30", device="NVIDIA RTX A4000", compute_capability="8.6",
                        profiles=PROFILES, options={"workspace_mb": None, "optimization_level": 3})


def manifest_for(request: EngineRequest, engine_file: str = "model.engine", **changes) -> EngineManifest:
    manifest = EngineManifest(
        engine_file=engine_file, backend=request.backend, backend_version=request.backend_version,
        precision=request.precision, onnx_path="build/onnx/denoise.fp16.onnx",
        onnx_sha256=request.onnx_sha256,
        profiles=[p.to_dict() for p in request.profiles], build_options=dict(request.options),
        build_seconds=12.5, built_at="2026-11-24T10:00:00+00:00", cache_key=cache_key(request),
        gpu_name=request.device, compute_capability=request.compute_capability, cuda_driver="12.4",
        layer_precisions={"Half": 40, "Float": 6})
    return dataclasses.replace(manifest, **changes)


def fake_engine(path: Path, request: EngineRequest = REQUEST) -> Path:
    return publish_engine(path, manifest_for(request, path.name), lambda tmp: tmp.write_bytes(b"plan"))


# --- the manifest file -----------------------------------------------------------------------------


def test_round_trip(tmp_path):
    engine = tmp_path / "model.engine"
    manifest = manifest_for(REQUEST)
    assert write_manifest(manifest, engine) == manifest_path(engine) == tmp_path / "model.engine.json"
    loaded = load_manifest(engine)
    assert loaded == manifest
    assert loaded.profile_list() == list(PROFILES)
    assert json.loads(manifest_path(engine).read_text())["gpu_name"] == "NVIDIA RTX A4000"
    assert update_parity(engine, {"720p": {"psnr_db": 48.1}}).parity == {"720p": {"psnr_db": 48.1}}
    assert load_manifest(engine).parity == {"720p": {"psnr_db": 48.1}}


@pytest.mark.parametrize(("content", "message"), [
    (None, "has no manifest"),
    ("{not json", "cannot be read"),
    ("[1, 2]", "not a JSON object"),
    ('{"format": 99}', "newer than this toolkit"),
    ('{"format": 1, "backend": "tensorrt"}', "lacks backend_version"),
])
def test_missing_or_corrupt_manifest(tmp_path, content, message):
    engine = tmp_path / "model.engine"
    if content is not None:
        manifest_path(engine).write_text(content)
    with pytest.raises(UserError, match=message) as info:
        load_manifest(engine)
    assert "mirnet build" in str(info.value)


# --- checking a manifest against this machine ------------------------------------------------------


def test_matching_manifest_passes():
    check_manifest(manifest_for(REQUEST), onnx_sha256="a" * 64, backend="tensorrt",
                   backend_version="10.3.0.30", gpu_name="NVIDIA RTX A4000", compute_capability="8.6")


@pytest.mark.parametrize(("here", "named"), [
    ({"gpu_name": "NVIDIA RTX A5000"}, "built for the GPU NVIDIA RTX A4000"),
    ({"compute_capability": "8.9"}, "compute capability 8.6) but this GPU is of compute capability 8.9"),
    ({"backend_version": "10.4.0.26"}, "built with TensorRT 10.3.0.30 but this machine has 10.4.0.26"),
    ({"onnx_sha256": "b" * 64}, "another ONNX model"),
    ({"backend": "onnxruntime"}, "is a TensorRT engine, not one for ONNX Runtime"),
])
def test_each_mismatch_is_named(here, named):
    with pytest.raises(UserError) as info:
        check_manifest(manifest_for(REQUEST), **here)
    message = str(info.value)
    assert named in message
    assert message.startswith("Engine model.engine cannot be used here")
    assert "Rebuild it on this machine" in message


def test_compatibility_flags_widen_what_matches():
    ampere_plus = manifest_for(REQUEST, build_options={"hardware_compatibility": "ampere_plus"})
    check_manifest(ampere_plus, gpu_name="NVIDIA H100", compute_capability="9.0")
    with pytest.raises(UserError, match="Ampere and newer"):
        check_manifest(ampere_plus, gpu_name="Tesla T4", compute_capability="7.5")
    same_sm = manifest_for(REQUEST, build_options={"hardware_compatibility": "same_compute_capability"})
    check_manifest(same_sm, gpu_name="NVIDIA RTX A5000", compute_capability="8.6")
    with pytest.raises(UserError, match="compute capability"):
        check_manifest(same_sm, gpu_name="NVIDIA L4", compute_capability="8.9")
    versioned = manifest_for(REQUEST, build_options={"version_compatible": True})
    check_manifest(versioned, backend_version="10.8.0.43")
    check_manifest(versioned, backend_version="11.4.0.106")
    with pytest.raises(UserError, match=r"10\.3\.0\.30 but this machine has 10\.2\.0\.19"):
        check_manifest(versioned, backend_version="10.2.0.19")


def test_cpu_manifest_checks_the_cpu():
    ort_request = dataclasses.replace(REQUEST, backend="onnxruntime", backend_version="1.32.0",
                                      device="AMD EPYC", compute_capability=None, profiles=())
    manifest = manifest_for(ort_request, gpu_name=None, compute_capability=None, cpu_model="AMD EPYC 9554")
    check_manifest(manifest, backend_version="1.32.0", cpu_model="AMD EPYC 9554", gpu_name="ignored")
    with pytest.raises(UserError, match="optimized for the CPU 'AMD EPYC 9554'"):
        check_manifest(manifest, cpu_model="Intel Xeon")


# --- the cache -------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "c" * 64},
    {"precision": "int8-tensorrt"},
    {"profiles": (Profile((1, 3, 180, 320), (1, 3, 540, 960), (1, 3, 720, 1280)),)},
    {"profiles": (*PROFILES, Profile((1, 3, 272, 480), (1, 3, 1080, 1920), (1, 3, 1080, 1920)))},
    {"options": {"workspace_mb": 2048, "optimization_level": 3}},
    {"options": {"workspace_mb": None, "optimization_level": 5}},
    {"backend_version": "10.3.0.31"},
    {"backend": "onnxruntime"},
    {"device": "NVIDIA RTX A5000"},
    {"compute_capability": "8.7"},
])
def test_cache_key_changes_with_what_changes_the_engine(change):
    changed = dataclasses.replace(REQUEST, **change)
    assert cache_key(changed) != cache_key(REQUEST)
    assert engine_filename(changed) != engine_filename(REQUEST)


def test_cache_key_ignores_what_does_not():
    reordered = {"optimization_level": 3, "workspace_mb": None}
    same = dataclasses.replace(REQUEST, onnx_stem="renamed", options=reordered)
    assert cache_key(same) == cache_key(REQUEST)
    assert engine_filename(REQUEST) == (
        f"denoise.fp16.tensorrt10.3.0.30.nvidia-rtx-a4000-sm86.1280x720.{cache_key(REQUEST)[:12]}.engine")


def test_unchanged_request_hits_changed_request_misses(tmp_path):
    builds = []

    def build(path: Path) -> EngineManifest:
        builds.append(path)
        fake_engine(path)
        return load_manifest(path)

    first = build_or_reuse(REQUEST, tmp_path, build)
    assert not first.reused
    assert first.path.parent == tmp_path
    assert builds == [first.path]
    assert cached_engine(REQUEST, tmp_path) == first.path
    second = build_or_reuse(REQUEST, tmp_path, build)
    assert second.reused
    assert second.path == first.path
    assert len(builds) == 1
    assert cached_engine(dataclasses.replace(REQUEST, precision="fp32"), tmp_path) is None


def test_engine_without_its_manifest_or_with_another_key_is_not_reused(tmp_path):
    path = tmp_path / engine_filename(REQUEST)
    path.write_bytes(b"plan")
    assert cached_engine(REQUEST, tmp_path) is None  # no manifest
    write_manifest(manifest_for(REQUEST, path.name, cache_key="0" * 64), path)
    assert cached_engine(REQUEST, tmp_path) is None  # a manifest for something else


def tiny_onnx(path: Path, weight: float, external: bool = False) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "w"], ["output"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [numpy_helper.from_array(np.full((1, 3, 1, 1), weight, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"precision": "fp32"})
    onnx.save(model, path, save_as_external_data=external, location=f"{path.name}.data", size_threshold=0)
    return path


def test_onnx_identity_covers_external_weights(tmp_path):
    inline = describe_onnx(tiny_onnx(tmp_path / "a.onnx", 1.0))
    assert (inline.input_name, inline.output_name, inline.input_shape) == ("input", "output", (-1, 3, -1, -1))
    assert inline.metadata == {"precision": "fp32"}
    assert describe_onnx(tiny_onnx(tmp_path / "b.onnx", 2.0)).sha256 != inline.sha256
    external = tiny_onnx(tmp_path / "c.onnx", 1.0, external=True)
    before = describe_onnx(external).sha256
    tiny_onnx(tmp_path / "d.onnx", 3.0, external=True)
    (tmp_path / "c.onnx.data").write_bytes((tmp_path / "d.onnx.data").read_bytes())  # new weights, same graph
    assert describe_onnx(external).sha256 != before
    with pytest.raises(UserError, match="does not exist"):
        describe_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 16)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        describe_onnx(tmp_path / "junk.onnx")


# --- atomic publishing -----------------------------------------------------------------------------


def test_interrupted_engine_write_leaves_nothing(tmp_path):
    engine = tmp_path / "model.engine"

    def interrupted(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"half a pl")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_engine(engine, manifest_for(REQUEST), interrupted)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_manifest_write_leaves_nothing(tmp_path, monkeypatch):
    engine = fake_engine(tmp_path / "model.engine")  # an older build is there

    def failing_write(manifest, engine_path):
        raise OSError("disk full")

    monkeypatch.setattr(engines.manifest, "write_manifest", failing_write)
    with pytest.raises(OSError, match="disk full"):
        publish_engine(engine, manifest_for(REQUEST), lambda tmp: tmp.write_bytes(b"new plan"))
    assert list(tmp_path.iterdir()) == []  # neither the new engine nor the old pair: nothing to trust


def test_publish_replaces_the_pair(tmp_path):
    engine = fake_engine(tmp_path / "model.engine")
    publish_engine(engine, manifest_for(REQUEST, precision="fp32"), lambda tmp: tmp.write_bytes(b"new plan"))
    assert engine.read_bytes() == b"new plan"
    assert load_manifest(engine).precision == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.engine", "model.engine.json"]


def _identity_onnx(path: Path, metadata: dict[str, str]) -> Path:
    """A 6-channel identity graph carrying `metadata` (as `mirnet export` writes its metadata_props)."""
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 6, "height", "width"])
          for name in ("input", "output")]
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id",
                                                io[:1], io[1:]), opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def test_a_build_records_the_onnx_metadata_that_runners_without_the_onnx_need(tmp_path):
    """libmirnet never opens the ONNX: the manifest carries its task, size multiple and scale."""
    from engines.ort_build import build_ort_engine

    onnx_path = _identity_onnx(tmp_path / "m.onnx", {"task": "defocus", "size_multiple": "8", "scale": "2"})
    build_ort_engine(onnx_path, tmp_path / "m.ort.onnx")
    manifest = load_manifest(tmp_path / "m.ort.onnx")
    assert (manifest.task, manifest.size_multiple, manifest.scale) == ("defocus", 8, 2)
    plain = _identity_onnx(tmp_path / "plain.onnx", {})  # a graph from elsewhere: no padding, no scale known
    build_ort_engine(plain, tmp_path / "plain.ort.onnx")
    manifest = load_manifest(tmp_path / "plain.ort.onnx")
    assert (manifest.task, manifest.size_multiple, manifest.scale) == (None, 1, 1)
    bad = _identity_onnx(tmp_path / "bad.onnx", {"size_multiple": "eight"})
    with pytest.raises(UserError, match="says size_multiple='eight', not a positive integer"):
        build_ort_engine(bad, tmp_path / "bad.ort.onnx")
    assert not (tmp_path / "bad.ort.onnx").exists()
