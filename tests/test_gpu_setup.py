"""The GPU setup (`make setup GPU=1`, engines/nvidia.py) and the CUDA probe's diagnosis of a driver/bindings
mismatch, on this CPU machine: the refusal for real, the rest against given drivers."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from engines import probe
from engines.nvidia import Driver, SetupRefused, find_driver, jetson_release, setup_commands

REPO = Path(__file__).resolve().parents[1]
NO_DRIVER = find_driver() is None


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver: make setup GPU=1 would install")
def test_make_setup_gpu_stops_at_once_without_a_driver(tmp_path):
    started = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "setup", "GPU=1", f"VENV={tmp_path / 'venv'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert time.perf_counter() - started < 20
    assert "make setup GPU=1 needs an NVIDIA GPU driver, and this machine has none" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "venv").exists()


def test_the_gpu_setup_matches_the_driver_cuda_major():
    cu12 = setup_commands(Driver((12, 4), "test"), None, venv="v", python="python3",
                          torch_spec="torch==2.13.0")
    assert ["python3", "-m", "venv", "v"] in cu12
    assert ["v/bin/python", "-m", "pip", "install", "--index-url", "https://download.pytorch.org/whl/cu126",
            "torch==2.13.0"] in cu12
    assert ["v/bin/python", "-m", "pip", "install", "--extra-index-url", "https://pypi.nvidia.com",
            "tensorrt-cu12"] in cu12
    assert cu12[-1] == ["v/bin/python", "-m", "pip", "install", "-e", ".[dev,cuda12]"]
    cu13 = setup_commands(Driver((13, 0), "test"), None, venv="v", python="python3", torch_spec="torch")
    assert "https://download.pytorch.org/whl/cu130" in cu13[2]
    assert cu13[3][-1] == "tensorrt-cu13"
    assert cu13[-1][-1] == ".[dev,cuda13]"


def test_on_jetson_the_venv_uses_jetpacks_tensorrt_and_pytorch(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    jetson = jetson_release(release)
    assert jetson.startswith("L4T R36.4.3, JetPack 6 (TensorRT 10.3")
    commands = setup_commands(Driver((12, 6), "test"), jetson, venv="v", python="python3", torch_spec="torch")
    assert commands[0] == ["python3", "-m", "venv", "--system-site-packages", "v"]
    flat = " ".join(" ".join(command) for command in commands)
    assert "torch" not in flat  # JetPack's own, never pip's
    assert "tensorrt" not in flat
    assert commands[-1][-1] == ".[dev,cuda12]"
    assert jetson_release(tmp_path / "absent") is None


@pytest.mark.parametrize(("driver", "message"), [
    (None, "needs an NVIDIA GPU driver"),
    (Driver((11, 8), "nvidia-smi"), "runs CUDA 11.8 (read from nvidia-smi)"),
])
def test_the_gpu_setup_refuses_what_it_cannot_match(driver, message):
    with pytest.raises(SetupRefused, match=re.escape(message)):
        setup_commands(driver, None, venv="v", python="python3", torch_spec="torch")


def test_cuda_extras_pin_the_bindings_to_one_cuda_major():
    """`cuda-python>=12.2` resolved to cuda-bindings 13.x, which a CUDA 12 driver cannot run (defect 1)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for major in (12, 13):
        (requirement,) = map(Requirement, extras[f"cuda{major}"])
        assert requirement.name == "cuda-bindings"
        assert requirement.specifier.contains(f"{major}.9.0")
        assert not requirement.specifier.contains(f"{major + 1}.0.0")
        assert not requirement.specifier.contains(f"{major - 1}.9.0")
    assert not any("cuda-python" in r or "cuda-bindings" in r
                   for name, reqs in extras.items() if not name.startswith("cuda") for r in reqs)


class InsufficientDriverRuntime:
    """cuda-bindings 13.x on a CUDA 12 driver: the driver answers its version, every device call fails."""

    @staticmethod
    def cudaDriverGetVersion():
        return 0, 12040

    @staticmethod
    def cudaGetDeviceCount():
        return probe.CUDA_ERROR_INSUFFICIENT_DRIVER, None

    @staticmethod
    def cudaGetErrorString(error):
        return 0, b"CUDA driver version is insufficient for CUDA runtime version"


@pytest.mark.parametrize("driver", [Driver((12, 4), "libcuda.so.1 cuDriverGetVersion"), None])
def test_probe_says_cuda_python_is_too_new_for_the_driver(monkeypatch, driver):
    monkeypatch.setattr(probe, "import_cudart", lambda: InsufficientDriverRuntime)
    monkeypatch.setattr(probe, "find_driver", lambda: driver)
    monkeypatch.setattr(probe, "cuda_bindings_version", lambda: "13.5.0")
    probe.probe_cuda.cache_clear()
    try:
        found = probe.probe_cuda()
    finally:
        probe.probe_cuda.cache_clear()
    assert not found.available
    if driver is None:  # no driver at all: the runtime's own words
        assert found.reason.startswith("no CUDA device found: cudaGetDeviceCount failed with")
        return
    assert found.reason.startswith("cuda-python too new for this driver: cuda-bindings 13.5.0")
    assert "driver's CUDA 12.4" in found.reason
    assert "pip install -e '.[cuda12]'" in found.reason


def test_nvidia_module_runs_on_the_standard_library_alone():
    """`make setup GPU=1` runs it with the system Python, before any dependency is installed."""
    done = subprocess.run([sys.executable, "-S", "-c", "import engines.nvidia"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
