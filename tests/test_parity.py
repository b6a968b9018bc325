"""Parity core: polygraphy runs both sides, metrics and thresholds decide pass/fail."""

from __future__ import annotations

import json
from dataclasses import replace

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


class CountingIdentity(torch.nn.Module):
    """The identity, counting its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def test_a_remembered_reference_runs_once_per_input(cases):
    """The chain compares every candidate engine against one PyTorch run per held-out image."""
    identity = CountingIdentity()
    reference = as_polygraphy_runner(TorchRunner(identity, name="ref"), remember_outputs=True)
    exact = run_parity(reference, _runner(AddNoise(0.0), "exact"), cases, "fp32")
    noisy = run_parity(reference, _runner(AddNoise(1e-3), "noisy"), cases, "fp32")
    assert identity.calls == len(cases)
    assert exact[0].max_abs_error == 0.0
    assert noisy[0].max_abs_error == pytest.approx(1e-3, rel=1e-3)  # against the remembered output
    shifted = [replace(case, input=case.input + 0.01) for case in cases]  # other inputs: computed, not reused
    again = run_parity(reference, _runner(AddNoise(0.0), "exact"), shifted, "fp32")
    assert identity.calls == 2 * len(cases)
    assert again[0].max_abs_error == 0.0


def test_nan_fails_whatever_the_precision(cases):
    reference = [c.input for c in cases[:1]]
    artifact = [c.input.copy() for c in cases[:1]]
    artifact[0][0, 0, 0, 0] = np.nan
    row = compare(reference, artifact, cases[:1], polygraphy_passed=True, precision="int8")
    assert row.nonfinite == 1
    assert not row.passed
    assert "1 NaN and 0 Inf values in the int8 output at" in row.failures[0]


def test_parity_cli_json_on_an_export(tmp_path):
    """`mirnet parity` on a real FP32 export: the JSON report's structure and numbers."""
    from click.testing import CliRunner

    from mirnet_deploy.cli import main
    from mirnet_ref.checkpoint import save_checkpoint
    from mirnet_ref.presets import build_preset

    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_preset("small"), tmp_path / "small.pth")
    onnx_path = tmp_path / "small.onnx"
    runner = CliRunner()
    exported = runner.invoke(main, ["export", "--checkpoint", str(checkpoint), "--output", str(onnx_path)])
    assert exported.exit_code == 0, exported.output
    result = runner.invoke(main, ["parity", "--onnx", str(onnx_path), "--checkpoint", str(checkpoint),
                                  "--res", "32,45x71", "--images", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["precision"] == "fp32"
    assert report["passed"] is True
    assert [r["resolution"] for r in report["results"]] == ["32x32", "45x71"]
    for row in report["results"]:
        assert set(row) >= {"psnr_vs_reference_db", "ssim_vs_reference", "max_abs_error", "nonfinite",
                            "task_psnr_reference_db", "task_psnr_artifact_db", "task_drop_db", "passed"}
        assert row["max_abs_error"] <= 1e-4
        assert row["nonfinite"] == 0
        assert row["images"] == 1

    other = save_checkpoint(build_preset("small"), tmp_path / "other.pth")
    mismatch = runner.invoke(main, ["parity", "--onnx", str(onnx_path), "--checkpoint", str(other)])
    assert mismatch.exit_code != 0
    assert "was exported from a checkpoint" in mismatch.output

    # An engine is judged by the metadata of the ONNX its manifest names (the plan is opaque): the
    # same checkpoint check fires before TensorRT would be needed, and a vanished ONNX is explained.
    from engines.manifest import EngineManifest, write_manifest

    engine = tmp_path / "small.engine"
    engine.write_bytes(b"a serialized plan")
    write_manifest(EngineManifest(engine.name, "tensorrt", "10.3.0", "fp32", str(onnx_path), "0" * 64, [], {},
                                  1.0, "2026-01-01T00:00:00+00:00", "k"), engine)
    on_engine = runner.invoke(main, ["parity", "--onnx", str(engine), "--checkpoint", str(other)])
    assert on_engine.exit_code != 0
    assert "was exported from a checkpoint" in on_engine.output
    onnx_path.unlink()
    orphan = runner.invoke(main, ["parity", "--onnx", str(engine), "--checkpoint", str(checkpoint)])
    assert orphan.exit_code != 0
    assert "the ONNX model its manifest names is gone" in orphan.output
