"""Sums over a stacked axis as Adds (`export.stack_sum`): the same numbers, only where the form matches.

SKFF (MIRNet's with three branches and PReLU, MIRNet-v2's with two and LeakyReLU) is exported by
PyTorch with random weights; the original and the rewritten graph run on ONNX Runtime CPU at odd
sizes and batch 2, and must agree bit for bit (one addition per pair of branches either way). The
CPU engines (`engines.cpu_graph`) compile the rewritten FP32 graph and say so in their manifests.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from test_engines import toy_onnx
from test_subpixel import exported, run
from torch import nn

from calibration.quantize import prepare
from engines.cpu_graph import cache_option
from engines.manifest import manifest_path
from engines.openvino_build import build_openvino_cached
from engines.ort_build import build_ort_cached
from engines.runners import OpenVinoRunner, OrtRunner
from export.onnx_file import op_counts, set_metadata
from export.stack_sum import rewrite_stacked_sums
from mirnet_ref.model import SKFF


class Branches(nn.Module):
    """`height` convolutions of one input, fused by `fusion` (the graph SKFF sees inside a network)."""

    def __init__(self, fusion: nn.Module, height: int, channels: int = 8):
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(height)])
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion([branch(x) for branch in self.branches])


class OtherSums(nn.Module):
    """Sums the rewrite must leave alone: keepdims, a channel sum, a weight broadcast along the stack."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([x, 2 * x], dim=1)
        broadcast_weight = (stacked * x[:, None]).sum(1)
        return stacked.sum(dim=1, keepdim=True)[:, 0] + x.sum(dim=1, keepdim=True) + broadcast_weight


def outputs(model, channels: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [run(model, rng.standard_normal((2, channels, height, width), dtype=np.float32))
            for height, width in ((5, 7), (16, 9), (1, 1))]


@pytest.mark.parametrize(("height", "act"), [(2, nn.LeakyReLU(0.2)), (3, None)], ids=["mirnetv2", "mirnet"])
def test_skff_sums_become_adds_with_the_same_numbers(height, act):
    torch.manual_seed(0)
    original = exported(Branches(SKFF(8, height, reduction=2, act=act), height), 8)
    assert op_counts(original)["ReduceSum"] == 2
    rewritten, count = rewrite_stacked_sums(original)
    assert count == 2
    counts = op_counts(rewritten)
    assert "ReduceSum" not in counts
    assert counts["Gather"] == height  # one attention slice per branch
    assert counts["Mul"] == height
    assert counts["Add"] == 2 * (height - 1)
    for before, after in zip(outputs(original, 8), outputs(rewritten, 8), strict=True):
        np.testing.assert_array_equal(after, before)


def test_other_sums_are_left_alone():
    original = exported(OtherSums(), 4)
    rewritten, count = rewrite_stacked_sums(original)
    assert count == 0
    assert [node.op_type for node in rewritten.graph.node] == [node.op_type for node in original.graph.node]


def test_only_the_cpu_targets_rewrite_stacked_sums():
    original = exported(Branches(SKFF(8, 2, reduction=2, act=nn.LeakyReLU(0.2)), 2), 8)
    for target in ("cpu", "cpu-symmetric"):
        model, rewrites = prepare(original, target, subpixel=False)
        assert rewrites["stacked_sum_to_adds"] == 2
        assert "ReduceSum" not in op_counts(model)
    model, rewrites = prepare(original, "tensorrt", subpixel=False)
    assert "stacked_sum_to_adds" not in rewrites
    assert op_counts(model)["ReduceSum"] == 2


def test_unnamed_sums_get_tensors_of_their_own():
    """Exporters may leave node names empty: the new tensors are named after each sum's output."""
    original = exported(Branches(SKFF(8, 2, reduction=2, act=nn.LeakyReLU(0.2)), 2), 8)
    for node in original.graph.node:
        node.name = ""
    rewritten, count = rewrite_stacked_sums(original)
    assert count == 2
    onnx.checker.check_model(rewritten, full_check=True)
    for before, after in zip(outputs(original, 8), outputs(rewritten, 8), strict=True):
        np.testing.assert_array_equal(after, before)


def test_cpu_engines_compile_the_rewritten_fp32_graph_and_say_so(tmp_path):
    original = exported(Branches(SKFF(8, 3, reduction=2, act=None), 3), 8)
    set_metadata(original, {"precision": "fp32"})
    onnx_path = tmp_path / "skff.fp32.onnx"
    onnx.save(original, onnx_path)
    engines = tmp_path / "engines"
    ort_engine = build_ort_cached(onnx_path, engines, threads=1).path
    openvino_engine = build_openvino_cached(onnx_path, engines).path
    for engine in (ort_engine, openvino_engine):
        manifest = json.loads(manifest_path(engine).read_text())
        assert manifest["build_options"]["graph_rewrites"] == {"stacked_sum_to_adds": 2}
    assert "ReduceSum" not in op_counts(onnx.load(ort_engine))  # ONNX Runtime's optimized graph
    x = np.random.default_rng(0).standard_normal((2, 8, 13, 11), dtype=np.float32)
    plain = run(original, x)
    with OrtRunner(ort_engine, providers="cpu") as runner:
        np.testing.assert_allclose(runner.run(x), plain, rtol=0, atol=1e-6)
    with OpenVinoRunner(openvino_engine) as engine, OpenVinoRunner(onnx_path) as exported_graph:
        np.testing.assert_allclose(engine.run(x), exported_graph.run(x), rtol=0, atol=1e-6)


def test_engines_of_the_plain_graph_are_not_reused_and_int8_keys_stay(tmp_path, monkeypatch):
    """An engine cached before the rewrite (its key without the rewrite) is rebuilt, not taken as
    rewritten; INT8 graphs are rewritten before quantizing or not at all, so their keys do not change."""
    onnx_path = toy_onnx(tmp_path / "toy.onnx")
    monkeypatch.setattr("engines.ort_build.cache_option", lambda precision: {})  # the key before the rewrite
    before = build_ort_cached(onnx_path, tmp_path / "engines")
    monkeypatch.undo()
    after = build_ort_cached(onnx_path, tmp_path / "engines")
    assert not after.reused
    assert after.path != before.path
    assert after.manifest.build_options["graph_rewrites"] == {"stacked_sum_to_adds": 0}  # no SKFF in the toy
    for precision in ("fp16", "int8-cpu", "int8-tensorrt"):
        assert cache_option(precision) == {}


def test_the_benchmark_runs_the_export_itself_where_the_cpu_rewrite_changes_nothing(tmp_path):
    """MPRNet has no SKFF sums: no `.fp32-cpu-` copy of its export (80 MB for `deblur`) is made; its ort and
    openvino FP32 rows run the export, which is the file their jobs (and the rows' `artifact`) name."""
    from bench.models import Artifacts, resolve_model

    artifacts = Artifacts(resolve_model("small", "deblur", "mprnet"), tmp_path, log=lambda _: None)
    export = artifacts.onnx_variant("fp32")
    assert artifacts.for_run("ort", "fp32", (32, 32), 1) == export
    assert artifacts.for_run("openvino", "fp32", (32, 32), 1) == export
    assert sorted(p.suffix for p in tmp_path.iterdir() if not p.name.startswith(".")) == [".onnx", ".pth"]
