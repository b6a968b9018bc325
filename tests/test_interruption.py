"""Fault injection: `kill -9` in the middle of build, quantize, calibrate and train leaves no corrupt
artifact and the next run rebuilds or resumes; two builds on one cache at once both succeed and
build each artifact once; a lock left by a killed holder does not block. Slow (real runs of the
verbs, tens of seconds each): `make test-slow`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from bad_inputs import SUBPROCESS_ENV, leftovers

from calibration.dataset import CalibrationSet, manifest_path
from mirnet_deploy.hashing import file_sha256
from mirnet_deploy.locks import lock_path
from mirnet_ref.checkpoint import read_state_dict
from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.images import write_image
from mirnet_ref.train_log import read_records
from mirnet_ref.weights import default_weights

pytestmark = pytest.mark.slow
MIRNET = str(Path(sys.executable).with_name("mirnet"))
BUILD = ["build", "--task", "denoise", "--precision", "fp32", "--backend", "ort"]


def mirnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    run = subprocess.run([MIRNET, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                         env=SUBPROCESS_ENV)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    return run


def kill_when(args: list[str], cwd: Path, ready: Callable[[], bool], after: float = 0.0) -> None:
    """Start `mirnet ARGS`, SIGKILL it `after` seconds once `ready()` holds; it must still be running."""
    process = subprocess.Popen([MIRNET, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=SUBPROCESS_ENV)
    deadline = time.monotonic() + 300
    while not ready():
        assert process.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(after)
    assert process.poll() is None, "the run ended before it was killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


def valid_onnx_files(folder: Path) -> list[Path]:
    """Every published .onnx under `folder` loads and passes onnx.checker (temporary files excepted)."""
    files = [p for p in folder.rglob("*.onnx") if not p.name.startswith(".")]
    for path in files:
        onnx.checker.check_model(onnx.load(path))
    return files


@pytest.mark.parametrize("moment", ["during export", "during parity"])
def test_kill_9_during_build_then_the_next_run_completes(tmp_path: Path, moment: str):
    artifacts = tmp_path / "artifacts"
    args = [*BUILD, "--artifacts", str(artifacts), "--cache-dir", str(artifacts / "engines")]
    if moment == "during export":
        kill_when(args, tmp_path, lambda: (artifacts / "onnx").is_dir(), after=1.0)
    else:
        kill_when(args, tmp_path, lambda: any((artifacts / "engines").glob("*.ort.onnx.json")), after=2.0)
    valid_onnx_files(artifacts)
    for record in artifacts.rglob("*.step.json"):  # a record vouches only for a complete file
        output = record.with_name(record.name.removesuffix(".step.json"))
        assert file_sha256(output) == json.loads(record.read_text())["sha256"]
    run = mirnet(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "parity        built" in run.stdout
    valid_onnx_files(artifacts)
    assert leftovers(artifacts) == []  # the killed run's temporaries went with the next run's writes


def test_kill_9_during_calibrate_leaves_no_partial_set_then_it_is_rebuilt(tmp_path: Path):
    output = tmp_path / "sets" / "set.npz"
    args = ["calibrate", "--task", "denoise", "--count", "160", "--crop", "128", "-o", str(output)]
    kill_when(args, tmp_path, lambda: any(output.parent.glob(".set.npz.*.tmp")), after=0.3)
    assert not output.exists()  # killed while the archive was being written: it was never published
    assert not manifest_path(output).exists()
    assert list(output.parent.glob(".set.npz.*.tmp"))  # the killed writer's temporary ...
    run = mirnet(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert not list(output.parent.glob(".set.npz.*.tmp"))  # ... removed by the next run
    with CalibrationSet(output) as calib:
        assert len(list(calib.inputs())) == 160
        assert calib.sha256 == file_sha256(output)


@pytest.fixture(scope="module")
def fp32_and_calibration(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("quantize-inputs")
    exported = mirnet("export", "--task", "denoise", "--output", str(folder / "d.fp32.onnx"), cwd=folder)
    assert exported.returncode == 0
    assert mirnet("calibrate", "--task", "denoise", "--count", "4", "--crop", "64", "-o",
                  str(folder / "set.npz"), cwd=folder).returncode == 0
    return folder / "d.fp32.onnx", folder / "set.npz"


def test_kill_9_during_quantize_then_the_next_run_completes(tmp_path: Path, fp32_and_calibration):
    fp32, calibration = fp32_and_calibration
    output = tmp_path / "d.int8.onnx"
    args = ["quantize", "--onnx", str(fp32), "--target", "cpu", "--calib", str(calibration), "--no-budget",
            "--cache-dir", str(tmp_path / "cache"), "-o", str(output)]
    kill_when(args, tmp_path, lambda: (tmp_path / "cache").is_dir() or output.exists(), after=0.0)
    assert not output.exists() or valid_onnx_files(tmp_path)
    run = mirnet(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert valid_onnx_files(tmp_path) == [output]


def test_kill_9_during_train_then_resume_finishes(tmp_path: Path):
    run_dir, validation = tmp_path / "run", tmp_path / "val"
    for index, (name, photo) in enumerate(builtin_images("heldout")):  # small, so validation is quick
        write_image(validation / f"{index}_{name}.png", image_at_resolution(photo, 48, 48))
    args = ["train", "--task", "denoise", "--preset", "small", "--iterations", "30", "--val-every", "10",
            "--batch-size", "2", "--patch-size", "32", "--val-data", str(validation),
            "--output", str(run_dir)]
    kill_when(args, tmp_path, lambda: (run_dir / "model_latest.pth").exists(), after=0.5)
    read_state_dict(run_dir / "model_latest.pth")  # the checkpoint on disk is whole
    run = mirnet(*args, "--resume", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    log = read_records(run_dir / "train_log.jsonl")  # whole records only: a torn one would warn
    assert log[-1]["iteration"] == 30


def test_two_builds_at_once_both_succeed_and_each_artifact_is_built_once(tmp_path: Path):
    artifacts = tmp_path / "artifacts"
    args = [MIRNET, *BUILD, "--artifacts", str(artifacts), "--cache-dir", str(artifacts / "engines")]
    runs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=SUBPROCESS_ENV) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for step in ("export", "build", "parity"):
        statuses = sorted(next(line.split()[1] for line in out.splitlines() if line.startswith(step + " "))
                          for out, _ in outputs)
        assert statuses == ["built", "reused"], (step, outputs)
    assert any("waiting for another run" in err for _, err in outputs)


def test_a_lock_held_by_a_killed_process_does_not_block(tmp_path: Path):
    artifacts = tmp_path / "artifacts"
    weights = file_sha256(default_weights("denoise"))[:12]
    fp32 = artifacts / "onnx" / f"denoise-{weights}.fp32.onnx"  # the export step's file
    fp32.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"FileLock({str(lock_path(fp32))!r}).acquire(); print('held', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(fp32).exists()  # the lock file stays behind; the flock on it died with its holder
    started = time.monotonic()
    run = mirnet(*BUILD, "--artifacts", str(artifacts), "--cache-dir", str(artifacts / "engines"),
                 cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "waiting for another run" not in run.stderr
    assert time.monotonic() - started < 300
