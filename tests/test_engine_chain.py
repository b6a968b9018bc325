"""`mirnet build --task` / `make engine`: the chain from the denoise demo weights on this CPU machine.

The tests share one artifact folder (the FP32 export is made once, as the chain itself would
reuse it); `built_fp16` runs first and makes the FP16 chain every other test starts from.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_manifest import REQUEST, manifest_for

from calibration.dataset import build_calibration_set
from engines.build import EngineSettings
from engines.cache import describe_onnx
from engines.manifest import Profile, load_manifest
from engines.probe import probe_tensorrt
from engines.tensorrt_build import profiles_from_resolutions
from mirnet_deploy.cli import main
from mirnet_deploy.hashing import file_sha256
from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.weights import default_weights
from pipeline import chain
from pipeline.chain import ChainRequest, ChainResult, parity_resolutions, run_chain

TENSORRT = probe_tensorrt()
ALL_BUILT = {"export": "built", "fp16": "built", "build": "built", "parity": "built"}
ALL_REUSED = {"export": "reused", "fp16": "reused", "build": "reused", "parity": "reused"}


def request_for(artifacts: Path, precision: str = "fp16", **changes) -> ChainRequest:
    settings = EngineSettings(engine_dir=artifacts / "engines", threads=1, progress=False)
    request = ChainRequest(task="denoise", checkpoint=default_weights("denoise"), precision=precision,
                           backend="ort", artifacts=artifacts, engine=settings)
    return dataclasses.replace(request, **changes)


def statuses(result: ChainResult) -> dict[str, str]:
    return {step.name: step.status for step in result.steps}


def build_cli(*args: str):
    return CliRunner().invoke(main, ["build", *args])


@pytest.fixture(scope="module")
def built_fp16(tmp_path_factory) -> tuple[Path, ChainResult]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    return artifacts, run_chain(request_for(artifacts))


def test_fp16_chain_builds_an_ort_engine_with_parity(built_fp16):
    artifacts, result = built_fp16
    assert statuses(result) == ALL_BUILT
    sha = file_sha256(default_weights("denoise"))
    assert result.onnx == artifacts / "onnx" / f"denoise-{sha[:12]}.fp16.onnx"
    assert describe_onnx(result.onnx).metadata["precision"] == "fp16"
    assert result.engine.name.endswith(".ort.onnx")
    assert result.engine.is_file()
    manifest = load_manifest(result.engine)
    assert (manifest.backend, manifest.precision, manifest.onnx_sha256) == (
        "onnxruntime", "fp16", file_sha256(result.onnx))
    parity = manifest.parity
    assert parity == result.manifest.parity
    assert parity["passed"]
    assert (parity["resolutions"], parity["images"]) == (["256x256"], 2)
    row = parity["results"][0]
    assert row["psnr_vs_reference_db"] > 60  # measured 79.6 dB: FP16 rounding, nothing broken
    assert row["max_abs_error"] < 5e-3
    assert abs(row["task_drop_db"]) < 0.01


def test_second_run_reuses_every_step(built_fp16):
    artifacts, first = built_fp16
    out = build_cli("--task", "denoise", "--precision", "fp16", "--backend", "ort", "--threads", "1",
                    "--artifacts", str(artifacts), "--json")
    assert out.exit_code == 0, out.output
    again = json.loads(out.output)
    assert {s["name"]: s["status"] for s in again["steps"]} == ALL_REUSED
    assert again["engine"] == str(first.engine)
    assert again["manifest"]["built_at"] == first.manifest.built_at
    assert again["manifest"]["parity"]["measured_at"] == first.manifest.parity["measured_at"]
    # A reused step still reports what it found when it was built (kept in its record).
    assert again["steps"][0]["details"]["max_abs_error_vs_pytorch"] < 1e-4


def test_text_output_says_reused_per_step(built_fp16):
    artifacts, _ = built_fp16
    out = build_cli("--task", "denoise", "--precision", "fp16", "--backend", "ort",
                    "--artifacts", str(artifacts))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    for step in ALL_REUSED:
        assert any(line.split()[:2] == [step, "reused"] for line in lines), step
    assert "256x256: PSNR vs reference" in out.output
    assert out.output.rstrip().endswith(": pass")


def test_several_precisions_run_in_one_process(built_fp16, monkeypatch):
    """`--precision fp32,fp16` (as `make demo` runs it): each precision's chain in turn, sharing the
    network (loaded once, for FP32's parity; FP16's chain is all reused), one JSON list."""
    import export.network

    artifacts, first = built_fp16
    loads = []
    load_network = export.network.load_network
    monkeypatch.setattr(export.network, "load_network",
                        lambda *args: loads.append(args) or load_network(*args))
    out = build_cli("--task", "denoise", "--precision", "fp32,fp16", "--backend", "ort", "--threads", "1",
                    "--artifacts", str(artifacts), "--json")
    assert out.exit_code == 0, out.output
    chains = json.loads(out.output)
    assert [chain["manifest"]["precision"] for chain in chains] == ["fp32", "fp16"]
    assert [{s["name"]: s["status"] for s in chain["steps"]}["parity"] for chain in chains] == ["built",
                                                                                               "reused"]
    assert all(chain["manifest"]["parity"]["passed"] for chain in chains)
    assert chains[1]["engine"] == str(first.engine)
    assert len(loads) == 1
    refused = build_cli("--task", "denoise", "--precision", "fp32,fp8")
    assert refused.exit_code != 0
    assert "--precision 'fp32,fp8': choose from" in refused.output


def test_a_file_changed_behind_the_cache_is_made_again(built_fp16):
    artifacts, first = built_fp16
    fp32 = next(step.path for step in first.steps if step.name == "export")
    original = first.onnx.read_bytes()
    first.onnx.write_bytes(fp32.read_bytes())  # an FP32 model where the FP16 one was
    again = run_chain(request_for(artifacts))
    assert statuses(again) == {**ALL_REUSED, "fp16": "built"}  # same bytes again, so the engine is reused
    assert first.onnx.read_bytes() == original


def test_another_checkpoint_rebuilds_every_step(built_fp16, tmp_path):
    artifacts, first = built_fp16
    model = load_model(default_weights("denoise"))
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    other = tmp_path / "other.pth"
    save_checkpoint(model, other)
    result = run_chain(request_for(artifacts, checkpoint=other))
    assert statuses(result) == ALL_BUILT
    assert result.onnx.name == f"denoise-{file_sha256(other)[:12]}.fp16.onnx"
    assert result.engine != first.engine
    assert result.manifest.parity["checkpoint_sha256"] == file_sha256(other)
    assert result.parity_passed


@pytest.fixture(scope="module")
def built_int8(built_fp16, tmp_path_factory) -> tuple[ChainRequest, ChainResult]:
    artifacts, _ = built_fp16
    calibration = tmp_path_factory.mktemp("calibration") / "tiny.npz"
    build_calibration_set("denoise", calibration, count=2, crop=64)
    # A budget this wide accepts all-INT8 at once: no per-layer search (minutes), which
    # tests/test_calibration.py covers; here the chain's wiring and caching are under test.
    request = request_for(artifacts, "int8", calibration=calibration, budget_db=10.0)
    return request, run_chain(request)


def test_int8_chain_quantizes_for_the_cpu(built_int8):
    _, result = built_int8
    assert statuses(result) == {"export": "reused", "int8-cpu": "built", "build": "built", "parity": "built"}
    quantized = result.steps[1].details
    assert (quantized["target"], quantized["kept_high_precision"]) == ("cpu", [])
    assert quantized["quantized_layers"] > 50
    assert quantized["drop_db"] == quantized["full_int8_drop_db"]
    assert describe_onnx(result.onnx).metadata["precision"] == "int8-cpu"
    assert result.manifest.precision == "int8-cpu"
    assert result.parity_passed
    assert result.manifest.parity["results"][0]["psnr_vs_reference_db"] > 35  # 48.8 dB with the default set


def test_int8_chain_reuses_and_requantizes_on_another_budget(built_int8, monkeypatch):
    request, first = built_int8
    again = run_chain(request)
    assert set(statuses(again).values()) == {"reused"}
    assert again.steps[1].details == first.steps[1].details
    # Another budget re-runs the quantization; the same Q/DQ model comes out, so its engine is reused.
    other_budget = run_chain(dataclasses.replace(request, budget_db=5.0))
    assert statuses(other_budget) == {"export": "reused", "int8-cpu": "built", "build": "reused",
                                      "parity": "reused"}
    # Changed quantization code (a new search) re-runs it too: no model of the old code is reused.
    monkeypatch.setattr(chain, "quantization_code_sha256", lambda: "0" * 64)
    new_code = run_chain(dataclasses.replace(request, budget_db=5.0))
    assert statuses(new_code) == {"export": "reused", "int8-cpu": "built", "build": "reused",
                                  "parity": "reused"}


@pytest.mark.slow
def test_openvino_int8_weighs_both_cpu_forms_and_records_the_choice(built_int8):
    """`--backend openvino --precision int8`: the cpu and cpu-symmetric Q/DQ models (the second seeded
    with the first's kept layers), both built and parity-checked on OpenVINO, the faster passing one
    chosen, the measurement in its manifest."""
    request, _ = built_int8
    run_chain(request)  # the fixture's int8-cpu step again (an earlier test re-makes it for another budget)
    result = run_chain(dataclasses.replace(request, backend="openvino"))
    assert statuses(result) == {"export": "reused", "int8-cpu": "reused", "int8-cpu-symmetric": "built",
                                "choose": "built", "build": "reused", "parity": "reused"}
    selection = load_manifest(result.engine).selection
    timed = {c["form"]: c for c in selection["candidates"]}
    assert set(timed) == {"int8-cpu", "int8-cpu-symmetric"}
    assert {c["backend"] for c in timed.values()} == {"openvino"}
    assert all(c["parity_passed"] for c in timed.values())
    assert selection["chosen_form"] == min(timed, key=lambda form: timed[form]["p50_ms"])
    assert describe_onnx(result.onnx).metadata["precision"] == selection["chosen_form"]
    assert result.parity_passed


@pytest.mark.skipif(TENSORRT.available, reason="TensorRT is usable here, so the chain builds instead")
def test_tensorrt_without_tensorrt_names_the_ready_onnx(built_fp16):
    artifacts, first = built_fp16
    out = build_cli("--task", "denoise", "--precision", "fp16", "--backend", "tensorrt",
                    "--artifacts", str(artifacts))
    assert out.exit_code == 1
    assert f"The ONNX model {first.onnx} is ready" in out.output
    assert "pip install tensorrt" in out.output
    assert TENSORRT.reason in out.output
    assert "Traceback" not in out.output
    assert not list((artifacts / "engines").glob("*.engine"))


def test_nothing_or_both_to_build_is_a_clear_error(built_fp16):
    _, first = built_fp16
    nothing = build_cli()
    assert nothing.exit_code == 1
    assert "Nothing to build: pass MODEL.onnx, or --task" in nothing.output
    both = build_cli(str(first.onnx), "--task", "denoise")
    assert both.exit_code == 1
    assert "is already an ONNX model" in both.output


def test_parity_resolutions_fit_the_engine_profiles():
    trt = manifest_for(REQUEST, profiles=[p.to_dict() for p in profiles_from_resolutions(["720p", "1080p"])])
    # 256x256 is below both profiles' minimum width (320, 480): only the deployment sizes.
    assert parity_resolutions(trt, [(1280, 720), (1920, 1080)]) == ["1280x720", "1920x1080"]
    up_to_512 = Profile((1, 3, 64, 64), (1, 3, 512, 512), (1, 3, 512, 512))
    small = dataclasses.replace(trt, profiles=[up_to_512.to_dict()])
    assert parity_resolutions(small, [(512, 512), (1280, 720)]) == ["256x256", "512x512"]
    ort = dataclasses.replace(trt, backend="onnxruntime", profiles=[])
    assert parity_resolutions(ort, [(1920, 1080)]) == ["256x256"]


@pytest.mark.gpu
@pytest.mark.skipif(not TENSORRT.available, reason=f"needs a CUDA GPU and TensorRT: {TENSORRT.reason}")
def test_tensorrt_chain_rebuilds_only_the_engine_for_new_resolutions(tmp_path):
    request = dataclasses.replace(request_for(tmp_path), backend="tensorrt")
    first = run_chain(dataclasses.replace(request, engine=dataclasses.replace(
        request.engine, resolutions=((512, 512),))))
    assert statuses(first) == ALL_BUILT
    assert first.manifest.parity["resolutions"] == ["256x256", "512x512"]
    assert first.parity_passed
    wider = run_chain(dataclasses.replace(request, engine=dataclasses.replace(
        request.engine, resolutions=((512, 512), (1280, 720)))))
    assert statuses(wider) == {"export": "reused", "fp16": "reused", "build": "built", "parity": "built"}
    assert wider.engine != first.engine
    assert len(wider.manifest.profiles) == 2
