"""`make gpu-check`: its refusal on this CPU machine, its plan, and how it runs steps and reports them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engines.probe import probe_cuda
from mirnet_ref.images import write_image
from mirnet_ref.weights import default_weights
from pipeline.gpu_check import (
    CPP_RUNNER_TARGET,
    GpuCheck,
    Step,
    StepFailed,
    failure_excerpt,
    gpu_check,
    plan,
    run_step,
    write_summary,
)

CUDA = probe_cuda()
PRECISIONS = ("fp32", "fp16", "int8")


def check_in(folder: Path) -> GpuCheck:
    folder.mkdir(parents=True, exist_ok=True)
    return GpuCheck("denoise", default_weights("denoise"), folder, folder / "artifacts")


def python_step(name: str, code: str, *args: str, **options) -> Step:
    return Step(name, "test step", (sys.executable, "-c", code, *args), **options)


@pytest.mark.skipif(CUDA.available, reason="a CUDA device answers here: gpu-check would run")
def test_prints_its_plan_then_stops_at_once_without_a_gpu(tmp_path):
    report = tmp_path / "report"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.gpu_check", "--report", str(report)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert time.perf_counter() - started < 30  # the probe, not a build: ~2 s here
    assert " 1. pytest-gpu [needs cuda]: every gpu-marked test" in done.stdout
    assert "cpp-configure [needs cuda]" in done.stdout
    (error,) = done.stderr.strip().splitlines()  # one reason, no traceback
    assert error.startswith("Error: gpu-check runs its steps on a CUDA GPU, and this machine has none: ")
    assert CUDA.reason in error
    assert "Nothing was run" in error
    assert not report.exists()


def test_dry_run_lists_every_step_without_a_gpu(tmp_path):
    report = tmp_path / "report"
    out = CliRunner().invoke(gpu_check, ["--dry-run", "--report", str(report)])
    assert out.exit_code == 0, out.output
    assert "-m pytest -m gpu" in out.output
    assert "audit-fp16 --task denoise" in out.output
    assert "--backend torch --res 720p,1080p,4k" in out.output
    for precision in PRECISIONS:
        assert f"--precision {precision} --backend tensorrt --res 720p,1080p" in out.output
        assert f"{CPP_RUNNER_TARGET} --engine {{engine_{precision}}}" in out.output
    assert "--backend tensorrt --precision fp32,fp16,int8 --res 720p,1080p,4k" in out.output
    assert "-DMIRNET_REQUIRE_TRT=ON" in out.output
    assert not report.exists()


def test_plan_order_dependencies_and_executables(tmp_path):
    steps = plan(check_in(tmp_path))
    names = [step.name for step in steps]
    assert names == ["pytest-gpu", "fp16-audit", "torch-cuda-parity", "torch-cuda-latency", "engine-fp32",
                     "engine-fp16", "engine-int8", "latency", "cpp-core-configure", "cpp-core-build",
                     "cpp-ctest", "cpp-configure", "cpp-build", "input-image", "cpp-run-fp32", "cpp-run-fp16",
                     "cpp-run-int8"]
    for step in steps:
        assert all(names.index(need) < names.index(step.name) for need in step.needs)
        if step.command and step.command[0].startswith("/"):
            assert Path(step.command[0]).is_file(), step.command[0]  # python, mirnet, mirnet-bench
    by_name = {step.name: step for step in steps}
    assert by_name["cpp-run-int8"].needs == ("engine-int8", "cpp-build", "input-image")
    build = by_name["cpp-build"].command
    assert build[build.index("--target") + 1] == CPP_RUNNER_TARGET
    # the core C++ tests depend on nothing TensorRT: never skipped because TensorRT is missing
    for name in ("cpp-core-configure", "cpp-core-build", "cpp-ctest"):
        assert by_name[name].requires is None
        assert "-DMIRNET_REQUIRE_TRT=ON" not in by_name[name].command
    assert "-DMIRNET_REQUIRE_TRT=ON" in by_name["cpp-configure"].command
    needing_tensorrt = {s.name for s in steps if s.requires == "tensorrt"}
    assert needing_tensorrt == {"engine-fp32", "engine-fp16", "engine-int8", "latency"}


def test_without_tensorrt_its_steps_are_skipped_with_the_reason(tmp_path):
    check = check_in(tmp_path)
    check.missing = {"tensorrt": "the `tensorrt` package is not installed"}
    skipped = run_step(check, python_step("engine-fp32", "pass", requires="tensorrt"))
    assert skipped.status == "skipped"
    assert skipped.note == "needs tensorrt: the `tensorrt` package is not installed"
    assert run_step(check, python_step("torch", "pass", requires="cuda")).status == "passed"


def test_a_failed_cmake_configure_is_reported_with_cmakes_message(tmp_path):
    """Defect 4: a configure that cannot find TensorRT must fail the step quoting CMake, not pass silently."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(demo NONE)\n"
        "option(MIRNET_REQUIRE_TRT \"\" OFF)\n"
        "if(MIRNET_REQUIRE_TRT)\n  message(FATAL_ERROR \"TensorRT was not found: set TENSORRT_ROOT\")\n"
        "endif()\n")
    check = check_in(tmp_path)
    step = Step("cpp-configure", "test", ("cmake", "-S", str(project), "-B", str(tmp_path / "b"),
                                          "-DMIRNET_REQUIRE_TRT=ON"))
    outcome = run_step(check, step)
    assert outcome.status == "failed"
    assert "CMake Error at" in outcome.note
    assert "TensorRT was not found: set TENSORRT_ROOT" in outcome.note
    assert outcome.note.endswith("see cpp-configure.log")


def test_failure_excerpt_quotes_the_last_line_without_a_cmake_error():
    log = "$ cmd\nbuilding\nerror: no target mirnet_run\n\n"
    assert failure_excerpt(log) == "error: no target mirnet_run"
    assert failure_excerpt("$ cmd\n") == "no output"


def test_a_failed_step_is_logged_and_its_dependents_skipped(tmp_path):
    check = check_in(tmp_path)
    failing = python_step("broken", "import sys; print('boom', file=sys.stderr); sys.exit(3)")
    check.outcomes["broken"] = outcome = run_step(check, failing)
    assert (outcome.status, outcome.note) == ("failed", "exit status 3: boom; see broken.log")
    assert "boom" in (tmp_path / "broken.log").read_text()
    dependent = run_step(check, python_step("after", "pass", needs=("broken",)))
    assert (dependent.status, dependent.note) == ("skipped", "needs broken")


def test_engine_paths_flow_from_json_into_later_commands(tmp_path):
    check = check_in(tmp_path)
    engine = str(tmp_path / "denoise.fp16.engine")
    printing = python_step("engine-fp16", "import json; print(json.dumps({'engine': " + repr(engine) + "}))",
                           json_stdout=True)
    check.outcomes["engine-fp16"] = produced = run_step(check, printing)
    assert produced.status == "passed"
    assert json.loads((tmp_path / "engine-fp16.json").read_text()) == {"engine": engine}
    assert check.engines() == {"engine_fp16": engine}
    user = python_step("user", "import sys; print('got', sys.argv[1])", "{engine_fp16}",
                       needs=("engine-fp16",))
    assert run_step(check, user).status == "passed"
    assert f"got {engine}" in (tmp_path / "user.log").read_text()


def test_summary_says_what_passed_and_failed(tmp_path):
    check = check_in(tmp_path)
    for step in (python_step("good", "pass"), python_step("bad", "raise SystemExit(2)")):
        check.outcomes[step.name] = run_step(check, step)
    summary = write_summary(check, "a test machine", started=datetime(2026, 11, 24))
    text = summary.read_text()
    assert "**1 of 2 steps passed**" in text
    assert "| good | passed |" in text
    assert "| bad | failed |" in text
    report = json.loads((tmp_path / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("good", "passed"), ("bad", "failed")]


@pytest.mark.slow
def test_cpp_output_is_judged_against_pytorch(tmp_path):
    """The check behind cpp-run-<prec>, fed images in place of mirnet_run's: 20 s (PyTorch at 720p)."""
    check = check_in(tmp_path)
    steps = {step.name: step for step in plan(check)}
    assert run_step(check, steps["input-image"]).status == "passed"
    reference = check.reference_output
    write_image(check.report / "mirnet_run-fp32.png", reference, bit_depth=16)
    noise = np.random.default_rng(0).normal(0, 0.02, reference.shape)
    write_image(check.report / "mirnet_run-fp16.png", np.clip(reference + noise, 0, 1), bit_depth=16)
    note = steps["cpp-run-fp32"].check(check, {})
    assert note.startswith("PSNR vs PyTorch FP32 1")  # 16-bit rounding only: ~100 dB, threshold 80
    with pytest.raises(StepFailed, match=r"FP32 3\d\.\d dB, below the fp16 threshold 40.0 dB"):
        steps["cpp-run-fp16"].check(check, {})


@pytest.mark.parametrize(("tests", "status", "note"), [
    ("import pytest\n@pytest.mark.skip(reason='needs TensorRT')\ndef test_a(): pass\n",
     "skipped", "all 1 tests skipped: needs TensorRT"),
    ("import pytest\n@pytest.mark.skip(reason='needs TensorRT')\ndef test_a(): pass\ndef test_b(): pass\n",
     "passed", "1 ran and passed, 1 skipped"),
])
def test_a_pytest_step_whose_every_test_skipped_is_no_pass(tmp_path, tests, status, note):
    """On the H100 without TensorRT every gpu test skipped and the step said 'passed' (2026-11-27)."""
    check = check_in(tmp_path / "report")
    (tmp_path / "test_x.py").write_text(tests)
    judge = {step.name: step for step in plan(check)}["pytest-gpu"].check
    junit = f"--junitxml={check.report / 'pytest-gpu.xml'}"
    step = Step("pytest-gpu", "test", (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       str(tmp_path / "test_x.py"), junit), check=judge)
    outcome = run_step(check, step)
    assert (outcome.status, outcome.note) == (status, note)
