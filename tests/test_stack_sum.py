"""Sums over a stacked axis as Adds (`calibration.stack_sum`): the same numbers, only where the form matches.

SKFF (MIRNet's with three branches and PReLU, MIRNet-v2's with two and LeakyReLU) is exported by
PyTorch with random weights; the original and the rewritten graph run on ONNX Runtime CPU at odd
sizes and batch 2, and must agree bit for bit (one addition per pair of branches either way).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from test_subpixel import exported, run
from torch import nn

from calibration.quantize import prepare
from calibration.stack_sum import rewrite_stacked_sums
from export.onnx_file import op_counts
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
