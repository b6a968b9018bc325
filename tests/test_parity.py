"""Parity core: polygraphy runs both sides, metrics and thresholds decide pass/fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.parity import ParityCase, compare, format_table, rows_to_dict, run_parity
from engines.runners import TorchRunner, as_polygraphy_runner


class AddNoise(torch.nn.Module):
    """A stand-in 'artifact' that deviates from the identity reference by a known amount."""

    def __init__(self, amplitude: float, nan: bool = False):
        super().__init__()
        self.amplitude, self.nan = amplitude, nan

    def forward(self, x):
        y = x + self.amplitude * torch.sin(torch.arange(x.numel()).reshape(x.shape).float())
        if self.nan:
            y[0, 0, 0, 0] = float("nan")
        return y


def _runner(module: torch.nn.Module, name: str):
    return as_polygraphy_runner(TorchRunner(module, name=name))


@pytest.fixture
def cases():
    rng = np.random.default_rng(0)
    out = []
    for res in ("16x16", "24x20"):
        w, h = map(int, res.split("x"))
        clean = rng.random((h, w, 3)).astype(np.float32) * 0.8 + 0.1
        noisy = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)
        out.append(ParityCase("img", res, noisy.transpose(2, 0, 1)[None].copy(), clean))
    return out


def test_identical_artifact_passes_fp32(cases):
    rows = run_parity(_runner(torch.nn.Identity(), "ref"), _runner(AddNoise(0.0), "art"), cases, "fp32")
    assert [r.resolution for r in rows] == ["16x16", "24x20"]
    assert all(r.passed and r.polygraphy_passed for r in rows)
    assert rows[0].max_abs_error == 0.0
    assert rows_to_dict(rows)[0]["psnr_vs_reference_db"] is None  # identical: infinite PSNR


def test_known_error_is_measured_and_judged(cases):
    rows = run_parity(_runner(torch.nn.Identity(), "ref"), _runner(AddNoise(1e-3), "art"), cases, "fp32")
    row = rows[0]
    assert row.max_abs_error == pytest.approx(1e-3, rel=1e-3)
    # sin over many samples has RMS 1/sqrt(2): PSNR = -20 log10(1e-3 / sqrt(2)).
    assert row.psnr_vs_reference_db == pytest.approx(-20 * np.log10(1e-3 / np.sqrt(2)), abs=0.2)
    assert not row.passed
    assert not row.polygraphy_passed
    assert any("max |error|" in failure for failure in row.failures)
    fp16_rows = run_parity(_runner(torch.nn.Identity(), "ref"), _runner(AddNoise(1e-3), "art"), cases, "fp16")
    assert fp16_rows[0].passed
    assert "pass" in format_table(fp16_rows, "fp16")


def test_nan_fails_whatever_the_precision(cases):
    reference = [c.input for c in cases[:1]]
    artifact = [c.input.copy() for c in cases[:1]]
    artifact[0][0, 0, 0, 0] = np.nan
    row = compare(reference, artifact, cases[:1], polygraphy_passed=True, precision="int8")
    assert row.nonfinite == 1
    assert not row.passed
    assert "NaN/Inf" in row.failures[0]
