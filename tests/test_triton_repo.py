"""`mirnet triton-repo`: every written config.pbtxt parses with Triton's real ModelConfig schema.

No Triton server loads these repositories here (its onnxruntime, tensorrt and openvino backends are
not installable on this machine): these tests prove schema conformance and our own load-time rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from engines.build import EngineSettings, build_engine
from engines.cache import describe_onnx
from engines.manifest import EngineManifest, Profile, manifest_path, write_manifest
from mirnet_deploy.cli import main
from mirnet_deploy.errors import UserError

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (`make setup` installs it)")
text_format = pytest.importorskip("google.protobuf.text_format")

from serving.triton_config import validate_config_text  # noqa: E402
from serving.triton_repo import RepoOptions, write_repository  # noqa: E402


def tiny_onnx(path: Path, *, precision: str = "fp32", batch: int | str = "N") -> Path:
    """A 3->3 channel 1x1 convolution with our I/O contract: input/output, FP32, NCHW, dynamic H and W."""
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "weight"], ["output"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3, "H", "W"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"precision": precision})
    onnx.save(model, path)
    return path


def fp16_plan(folder: Path, profiles: list[Profile]) -> Path:
    """A dummy plan file with a manifest written as engines/manifest.py defines it (no TensorRT here)."""
    onnx_path = tiny_onnx(folder / "denoise.fp16.onnx", precision="fp16")
    engine = folder / "denoise.fp16.tensorrt10.3.0.26.nvidia-rtx-a4000-sm86.1280x720.0123456789ab.engine"
    engine.write_bytes(b"not a real TensorRT plan")
    write_manifest(EngineManifest(
        engine_file=engine.name, backend="tensorrt", backend_version="10.3.0.26", precision="fp16",
        onnx_path=str(onnx_path), onnx_sha256=describe_onnx(onnx_path).sha256,
        profiles=[p.to_dict() for p in profiles], build_options={"optimization_level": 3}, build_seconds=1.0,
        built_at="2026-11-27T00:00:00+00:00", cache_key="0" * 64, gpu_name="NVIDIA RTX A4000",
        compute_capability="8.6"), engine)
    return engine


def parsed(path: Path):
    """The config as Triton's loader reads it: text_format into the real ModelConfig message."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


PROFILES = [Profile((1, 3, 180, 320), (4, 3, 720, 1280), (4, 3, 720, 1280)),
            Profile((1, 3, 270, 480), (2, 3, 1080, 1920), (2, 3, 1080, 1920))]


def test_tensorrt_plan_config(tmp_path):
    engine = fp16_plan(tmp_path, PROFILES)
    result = write_repository(engine, tmp_path / "repo", RepoOptions(name="denoise"))
    config = parsed(result.config_path)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 2  # the second profile takes 2 images at most
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("input", model_config_pb2.TYPE_FP32, [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("output", [3, -1, -1])]
    group = config.instance_group[0]
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(group.profile) == ["0", "1"]
    assert list(config.dynamic_batching.preferred_batch_size) == [2]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert result.version_dir == tmp_path / "repo" / "denoise" / "1"
    assert (result.version_dir / "model.plan").read_bytes() == engine.read_bytes()
    copied = json.loads((result.version_dir / "model.plan.json").read_text())
    assert copied == json.loads(manifest_path(engine).read_text())


def test_single_fixed_profile_fixes_dims(tmp_path):
    engine = fp16_plan(tmp_path, [Profile((1, 3, 256, 256), (8, 3, 256, 256), (8, 3, 256, 256))])
    config = parsed(write_repository(engine, tmp_path / "repo", RepoOptions()).config_path)
    assert list(config.input[0].dims) == [3, 256, 256]
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert not config.instance_group[0].profile  # one profile: Triton's default, profile 0


def test_batch_one_plan_says_it_cannot_batch(tmp_path):
    engine = fp16_plan(tmp_path, [Profile((1, 3, 180, 320), (1, 3, 720, 1280), (1, 3, 720, 1280))])
    result = write_repository(engine, tmp_path / "repo", RepoOptions())
    assert parsed(result.config_path).max_batch_size == 1
    assert any("--batch N" in note for note in result.notes)


def test_onnxruntime_gpu_config_from_exported_model(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "denoise.fp32.onnx")
    result = write_repository(onnx_path, tmp_path / "repo", RepoOptions(
        device="gpu", name="denoise", preferred_batch_sizes=(2, 4), max_queue_delay_us=500))
    config = parsed(result.config_path)
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 4
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (result.version_dir / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert any("FP16" in note for note in result.notes)


def test_onnxruntime_cpu_and_openvino_configs(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "denoise.fp32.onnx")
    cpu = parsed(write_repository(onnx_path, tmp_path / "repo", RepoOptions(name="ort")).config_path)
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert not cpu.HasField("optimization")
    result = write_repository(onnx_path, tmp_path / "repo", RepoOptions(platform="openvino", name="ov"))
    openvino = parsed(result.config_path)
    assert (openvino.backend, openvino.platform) == ("openvino", "")
    assert openvino.default_model_filename == "model.onnx"
    assert openvino.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert openvino.parameters["ENABLE_BATCH_PADDING"].string_value == "YES"
    assert any("BF16" in note for note in result.notes)  # said plainly: the backend has no f32 hint


def test_onnxruntime_engine_with_its_manifest(tmp_path):
    """An ONNX Runtime engine of `mirnet build` (optimized model + manifest) goes in as model.onnx."""
    onnx_path = tiny_onnx(tmp_path / "denoise.fp32.onnx")
    engine = build_engine(onnx_path, "onnxruntime", EngineSettings(engine_dir=tmp_path / "engines",
                                                                  progress=False)).path
    result = write_repository(manifest_path(engine), tmp_path / "repo", RepoOptions(name="ort"))
    config = parsed(result.config_path)
    assert config.platform == "onnxruntime_onnx"
    assert [t.name for t in config.input] == ["input"]
    assert (result.version_dir / "model.onnx").read_bytes() == engine.read_bytes()
    assert json.loads((result.version_dir / "model.onnx.json").read_text())["backend"] == "onnxruntime"
    for refused, message in ((RepoOptions(device="gpu"), "optimized for a CPU"),
                             (RepoOptions(platform="openvino"), "ONNX Runtime's optimized model"),
                             (RepoOptions(platform="tensorrt"), "ONNX Runtime's optimized model")):
        with pytest.raises(UserError, match=message):
            write_repository(engine, tmp_path / "other", refused)
    assert not (tmp_path / "other").exists()


def test_versions_are_numbered_and_kept(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    first = write_repository(onnx_path, repo, RepoOptions(name="m"))
    second = write_repository(onnx_path, repo, RepoOptions(name="m"))
    assert [first.version_dir.name, second.version_dir.name] == ["1", "2"]
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["1", "2", "config.pbtxt"]


def test_existing_version_refused_unless_overwrite(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    write_repository(onnx_path, repo, RepoOptions(name="m", version=3))
    (repo / "m" / "3" / "marker").write_text("old")
    with pytest.raises(UserError, match="already exists"):
        write_repository(onnx_path, repo, RepoOptions(name="m", version=3))
    assert (repo / "m" / "3" / "marker").exists()  # nothing lost
    write_repository(onnx_path, repo, RepoOptions(name="m", version=3, overwrite=True))
    assert sorted(p.name for p in (repo / "m" / "3").iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["3", "config.pbtxt"]  # no staging left



def dead_writers_tag() -> str:
    """The writer tag (leftovers.py) of a process of this host that has ended."""
    code = "from mirnet_deploy.leftovers import writer_tag; print(writer_tag())"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ended.stdout.strip()


def test_a_version_a_killed_overwrite_moved_aside_is_restored_or_removed_by_the_next_run(tmp_path):
    """`kill -9` between _publish_version's renames leaves the old version aside and its place empty: the
    next run puts it back. Killed after the second rename, the aside copy is stale and goes away; a live
    writer's folders (the parent process's tag) stay."""
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    repo, dead = tmp_path / "repo", dead_writers_tag()
    write_repository(onnx_path, repo, RepoOptions(name="m", version=3))
    write_repository(onnx_path, repo, RepoOptions(name="m", version=5))
    model_dir = repo / "m"
    (model_dir / "3" / "marker").write_text("old")
    (model_dir / "3").rename(model_dir / f".replaced-{dead}-3")  # killed between the renames
    (model_dir / f".partial-{dead}-3").mkdir()
    (model_dir / f".replaced-{dead}-5").mkdir()  # killed after them: 5 is in place
    live = f".replaced-{dead.split('-')[0]}-{os.getppid()}-7"
    (model_dir / live).mkdir()

    result = write_repository(onnx_path, repo, RepoOptions(name="m"))
    assert result.version_dir.name == "6"
    assert (model_dir / "3" / "marker").read_text() == "old"
    assert sorted(p.name for p in model_dir.iterdir()) == [live, "3", "5", "6", "config.pbtxt"]


@pytest.mark.parametrize(("platform", "message"), [("onnxruntime", "is a TensorRT plan"),
                                                    ("openvino", "is a TensorRT plan")])
def test_plan_for_another_platform_refused(tmp_path, platform, message):
    engine = fp16_plan(tmp_path, PROFILES)
    with pytest.raises(UserError, match=message):
        write_repository(engine, tmp_path / "repo", RepoOptions(platform=platform))
    assert not (tmp_path / "repo").exists()


def test_an_openvino_engine_or_a_file_its_manifest_disagrees_with_is_refused(tmp_path):
    """Triton's OpenVINO backend loads no compiled .ovblob; a manifest saying `tensorrt` beside an .ovblob (or
    `openvino` beside a plan) is an edited or mixed-up pair, never written as a model of that platform."""
    plan = fp16_plan(tmp_path, PROFILES)
    manifest = json.loads(manifest_path(plan).read_text())
    blob = plan.with_name("denoise.fp16.openvino2026.4.1.cpu.0123456789ab.ovblob")
    blob.write_bytes(b"not a real compiled model")
    for engine, backend, message in ((blob, "openvino", "OpenVINO's compiled model"),
                                     (blob, "tensorrt", "whose engines end in .engine or .plan"),
                                     (plan, "openvino", "whose engines end in .ovblob")):
        manifest_path(engine).write_text(json.dumps({**manifest, "backend": backend}))
        with pytest.raises(UserError, match=message):
            write_repository(engine, tmp_path / "repo", RepoOptions())
    assert not (tmp_path / "repo").exists()


def test_bad_manifests_refused(tmp_path):
    engine = fp16_plan(tmp_path, PROFILES)
    manifest_path(engine).write_text("{ not json")
    with pytest.raises(UserError, match="cannot be read"):
        write_repository(engine, tmp_path / "repo", RepoOptions())
    manifest_path(engine).unlink()
    with pytest.raises(UserError, match="has no manifest"):
        write_repository(engine, tmp_path / "repo", RepoOptions())
    assert not (tmp_path / "repo").exists()


def test_plan_from_another_onnx_refused(tmp_path):
    engine = fp16_plan(tmp_path, PROFILES)
    other = tiny_onnx(tmp_path / "other.onnx", precision="fp32")
    with pytest.raises(UserError, match="not the ONNX model"):
        write_repository(engine, tmp_path / "repo", RepoOptions(onnx=other))


def test_corrupt_onnx_refused(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        write_repository(tmp_path / "m.onnx", tmp_path / "repo", RepoOptions())
    assert not (tmp_path / "repo").exists()


def test_onnx_is_not_a_plan(tmp_path):
    with pytest.raises(UserError, match="not a TensorRT plan"):
        write_repository(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "repo", RepoOptions(platform="tensorrt"))


def test_onnx_with_external_data_refused(tmp_path):
    model = onnx.load(tiny_onnx(tmp_path / "m.onnx"))
    onnx.save(model, tmp_path / "external.onnx", save_as_external_data=True, size_threshold=0,
              location="external.onnx.data")
    with pytest.raises(UserError, match="external data"):
        write_repository(tmp_path / "external.onnx", tmp_path / "repo", RepoOptions())
    assert not (tmp_path / "repo").exists()


def test_batch_bounds(tmp_path):
    engine = fp16_plan(tmp_path, PROFILES)
    with pytest.raises(UserError, match="exceeds"):
        write_repository(engine, tmp_path / "repo", RepoOptions(max_batch_size=4))
    fixed = tiny_onnx(tmp_path / "fixed.onnx", batch=1)
    config = parsed(write_repository(fixed, tmp_path / "repo", RepoOptions(name="fixed")).config_path)
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1, 3, -1, -1]  # the batch dimension stays in the dims
    assert not config.HasField("dynamic_batching")


def test_semantic_rules_the_schema_cannot_check(tmp_path):
    text = write_repository(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "repo",
                            RepoOptions(name="m")).config
    validate_config_text(text)
    too_big = text.replace("max_batch_size: 4", "max_batch_size: 2")
    with pytest.raises(UserError, match=r"preferred batch sizes \[4\]"):
        validate_config_text(too_big)
    with pytest.raises(UserError, match="does not parse"):
        validate_config_text(text.replace("max_batch_size", "max_batch"))
    cpu_plan = text.replace('platform: "onnxruntime_onnx"', 'platform: "tensorrt_plan"')
    with pytest.raises(UserError, match="KIND_GPU"):
        validate_config_text(cpu_plan)


def test_backend_parameters_the_backends_would_reject_or_ignore(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    gpu = write_repository(onnx_path, tmp_path / "repo", RepoOptions(name="gpu", device="gpu")).config
    with pytest.raises(UserError, match="rejects TensorRT accelerator parameters"):
        validate_config_text(gpu.replace('key: "trt_engine_cache_enable"', 'key: "trt_fp16_enable"'))
    with pytest.raises(UserError, match="not FP32/FP16/INT8"):
        validate_config_text(gpu.replace('value: "FP16"', 'value: "BF16"'))
    openvino = write_repository(onnx_path, tmp_path / "repo",
                                RepoOptions(name="ov", platform="openvino")).config
    precision_hint = openvino.replace('key: "ENABLE_BATCH_PADDING"', 'key: "INFERENCE_PRECISION_HINT"')
    with pytest.raises(UserError, match=r"ignores the parameters \['INFERENCE_PRECISION_HINT'\]"):
        validate_config_text(precision_hint)


def test_cli_refuses_without_traceback(tmp_path):
    engine = fp16_plan(tmp_path, PROFILES)
    runner = CliRunner()
    ok = runner.invoke(main, ["triton-repo", str(engine), "--repo", str(tmp_path / "repo"), "--name", "d"])
    assert ok.exit_code == 0, ok.output
    assert "valid against Triton's ModelConfig" in ok.output
    again = runner.invoke(main, ["triton-repo", str(engine), "--repo", str(tmp_path / "repo"), "--name", "d",
                                 "--version", "1"])
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "Traceback" not in again.output
    bad = runner.invoke(main, ["triton-repo", str(engine), "--platform", "openvino"])
    assert bad.exit_code == 1
    assert "is a TensorRT plan" in bad.output



def test_without_tritonclient_the_verb_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # import fails as if not installed
    runner = CliRunner()
    result = runner.invoke(main, ["triton-repo", str(tiny_onnx(tmp_path / "m.onnx")), "--repo",
                                  str(tmp_path / "repo")])
    assert result.exit_code == 1
    assert "pip install 'mirnet-deploy[serving]'" in result.output
    assert not (tmp_path / "repo").exists()
