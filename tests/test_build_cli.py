"""`mirnet build`: an ONNX Runtime engine with manifest here, reused when unchanged; TensorRT refused."""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_engines import toy_onnx

from mirnet_deploy.cli import main


def _build(*args: str):
    return CliRunner().invoke(main, ["build", *args])


def test_build_then_reuse(tmp_path):
    onnx_path = toy_onnx(tmp_path / "toy.onnx", "fp16")
    cache = str(tmp_path / "engines")
    first = _build(str(onnx_path), "--backend", "ort", "--cache-dir", cache, "--json")
    assert first.exit_code == 0, first.output
    built = json.loads(first.output)
    assert built["backend"] == "ort"
    assert not built["reused"]
    assert built["manifest"]["precision"] == "fp16"
    second = _build(str(onnx_path), "--backend", "ort", "--cache-dir", cache)
    assert second.exit_code == 0, second.output
    assert f"reused cached engine: {built['engine']}" in second.output
    again = _build(str(onnx_path), "--backend", "ort", "--cache-dir", cache, "--json")
    other_threads = json.loads(again.output)
    assert other_threads["engine"] == built["engine"]


def test_tensorrt_without_a_gpu_is_one_clear_paragraph(tmp_path):
    onnx_path = toy_onnx(tmp_path / "toy.onnx")
    result = _build(str(onnx_path), "--backend", "tensorrt", "--cache-dir", str(tmp_path / "e"))
    assert result.exit_code != 0
    assert "pip install tensorrt" in result.output
    assert f"The ONNX model {onnx_path} is ready" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
