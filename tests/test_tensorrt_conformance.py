"""TensorRT and cuda-python API conformance, on a machine without a GPU or TensorRT.

The project's real TensorRT code paths (`mirnet build --backend tensorrt` on FP32/FP16/INT8 ONNX,
the runner on dynamic shapes, the precision check, the timing cache, the CUDA probe) run, in one
subprocess per version, against doubles generated from the real Python bindings of TensorRT
10.3.0 (JetPack 6), 10.16.1.11 and 11.4.0.106 with cuda-bindings 12.x / 13.x: every name, argument
count, keyword and enum member the code touches must exist in that version (tests/conformance/).
This proves the code speaks those versions' API; it does not prove that TensorRT builds or runs the
engines: only a GPU shows that (`make gpu-check`, tests/test_tensorrt_paths.py).

The wheels are downloaded into build/conformance once (a few MB); without a reachable package
index the tests skip and say so.
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
from conformance.bindings import REPO, VERSIONS, ApiVersion, Prepared, Unavailable, prepare
from onnx import TensorProto, helper, numpy_helper
from test_engines import toy_onnx

SCRIPT = Path(__file__).parent / "conformance" / "run_paths.py"
CHECKS = ["double_has_this_versions_api", "cli_build_fp32_fp16_int8", "runner_on_dynamic_shapes",
          "unclosed_runner_is_finalized", "failed_constructor_leaks_nothing",
          "failed_allocation_keeps_buffers",
          "refused_address_is_reported", "precision_check_refuses_fp32_as_fp16",
          "corrupt_timing_cache_is_replaced", "concurrent_builds_merge_timing_caches",
          "cuda_probe_and_memory_sampler"]


def toy_int8_onnx(path: Path) -> Path:
    """The toy net with Q/DQ (symmetric, zero point 0) on its input and weights, as TensorRT builds INT8."""
    rng = np.random.default_rng(0)
    weights = (rng.standard_normal((3, 3, 3, 3)) * 40).astype(np.int8)
    initializers = [numpy_helper.from_array(np.array(1 / 127, np.float32), "scale"),
                    numpy_helper.from_array(np.array(0, np.int8), "zero"),
                    numpy_helper.from_array(weights, "w_int8"),
                    numpy_helper.from_array(np.array(0.002, np.float32), "w_scale"),
                    numpy_helper.from_array(np.zeros(3, np.float32), "bias")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["x"]),
             helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "zero"], ["w"]),
             helper.make_node("Conv", ["x", "w", "bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["input", "c"], ["output"])]
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, "H", "W"])
          for name in ("input", "output")]
    model = helper.make_model(helper.make_graph(nodes, "toy_int8", io[:1], io[1:], initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"precision": "int8", "size_multiple": "1"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def prepared() -> dict[ApiVersion, Prepared]:
    try:
        return {p.version: p for p in prepare()}
    except Unavailable as reason:
        pytest.skip(str(reason))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for precision in ("fp32", "fp16"):
        toy_onnx(folder / f"toy.{precision}.onnx", precision)
    toy_onnx(folder / "toy.undeclared.onnx", "fp32", declare=False)
    toy_int8_onnx(folder / "toy.int8.onnx")
    return folder


def run_paths(bindings: Prepared, models: Path, work: Path) -> tuple[int, dict]:
    """run_paths.py in a subprocess with this version's bindings; (exit status, its report)."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(bindings.library_path),
           "PYTHONPATH": os.pathsep.join(map(str, [REPO, *bindings.python_path]))}
    done = subprocess.run([sys.executable, str(SCRIPT), str(models), str(work)], env=env, cwd=work,
                          capture_output=True, text=True, timeout=300, check=False)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{bindings.version.label}: run_paths.py printed no report (exit status "
                    f"{done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.mark.parametrize("version", VERSIONS, ids=[v.tensorrt_version for v in VERSIONS])
def test_tensorrt_paths_speak_this_version(prepared, models, version, tmp_path):
    code, report = run_paths(prepared[version], models, tmp_path)
    failed = [f"{c['name']}: {c['note']}" for c in report["checks"] if not c["passed"]]
    assert not report["mismatches"], f"{version.label}: calls this version lacks: {report['mismatches']}"
    assert not failed, f"{version.label}: " + "\n".join(failed)
    assert code == 0
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert report["tensorrt"] == f"TensorRT {version.tensorrt_version}"
