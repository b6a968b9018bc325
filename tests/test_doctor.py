"""`mirnet doctor`: the CPU-only picture of this machine for real, and the install commands it gives for
machines with a driver (a CUDA 12 x86 machine, a Jetson), probes replaced by the facts of those machines."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engines import environment
from engines.nvidia import Driver
from engines.probe import CudaProbe, GpuInfo, TensorRTProbe, probe_cuda
from mirnet_deploy.cli import main

NO_GPU = not probe_cuda().available


def rows_by_component(rows) -> dict:
    return {row.component: row for row in rows}


@pytest.mark.skipif(not NO_GPU, reason="a CUDA device answers here")
def test_doctor_prints_the_cpu_only_picture_with_install_commands():
    out = CliRunner().invoke(main, ["doctor", "--json"])
    assert out.exit_code == 0, out.output
    rows = {row["component"]: row for row in json.loads(out.output)}
    assert list(rows) == ["machine", "CPU", "NVIDIA driver", "cuda-python", "GPU", "PyTorch", "TensorRT",
                          "ONNX Runtime"]
    assert rows["CPU"]["ok"]
    assert rows["ONNX Runtime"]["ok"]
    assert "CPUExecutionProvider" in rows["ONNX Runtime"]["detail"]
    assert rows["PyTorch"]["ok"]  # the CPU build is the right one without a GPU
    for missing in ("GPU", "TensorRT"):
        assert not rows[missing]["ok"]
        assert rows[missing]["fix"]
    assert "make setup GPU=1" in rows["TensorRT"]["fix"]
    assert "tensorrt-cu12" in rows["TensorRT"]["fix"]
    text = CliRunner().invoke(main, ["doctor"]).output
    assert "to install:" in text
    assert "Traceback" not in text


def test_cpu_features_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni amx_tile\n")
    assert environment.cpu_features(cpuinfo) == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"]
    assert environment.cpu_features(tmp_path / "absent") == []


@pytest.fixture
def gpu_machine(monkeypatch):
    """A CUDA 12.4 driver with one GPU, no cuda-python usable for TensorRT, no TensorRT."""
    monkeypatch.setattr(environment, "find_driver", lambda: Driver((12, 4), "nvidia-smi"))
    monkeypatch.setattr(environment, "probe_cuda", lambda: CudaProbe(
        True, 1, (GpuInfo("RTX A4000", "8.6", 16376),), "12.4", "1 CUDA device(s): RTX A4000"))
    monkeypatch.setattr(environment, "cuda_bindings_version", lambda: "12.9.10")
    monkeypatch.setattr(environment, "probe_tensorrt", lambda cuda: TensorRTProbe(
        False, None, "the `tensorrt` package is not installed"))
    monkeypatch.setattr(environment, "jetson_release", lambda: None)


def test_doctor_names_the_packages_of_the_drivers_cuda_major(gpu_machine):
    rows = rows_by_component(environment.findings())
    assert rows["NVIDIA driver"].detail == "CUDA 12.4 (from nvidia-smi)"
    assert rows["GPU"].ok
    assert rows["TensorRT"].fix == "`pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12`"
    assert not rows["PyTorch"].ok  # the CPU build cannot use the GPU that is there
    assert rows["PyTorch"].fix == ("`pip install --index-url https://download.pytorch.org/whl/cu126 "
                                   "torch==2.13.0`")
    assert not rows["ONNX Runtime"].ok
    assert "onnxruntime-gpu" in rows["ONNX Runtime"].fix


def test_on_jetson_doctor_points_to_jetpacks_packages(gpu_machine, monkeypatch):
    monkeypatch.setattr(environment, "jetson_release", lambda: "L4T R36.4.3, JetPack 6")
    rows = rows_by_component(environment.findings())
    assert "Jetson L4T R36.4.3" in rows["machine"].detail
    assert rows["TensorRT"].fix.startswith("`sudo apt install nvidia-jetpack`")
    assert "NVIDIA's PyTorch wheel for this JetPack" in rows["PyTorch"].fix
