"""The FP16 audit: it really rounds, finds overflows where they happen, and changes nothing."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from export import fp16_audit
from export.fp16_audit import audit_at_resolutions, audit_fp16
from mirnet_ref.presets import build_preset


def _small_mirnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_preset("small")


def _conv1x1(weight: list[list[float]]) -> nn.Conv2d:
    """A bias-free 1x1 conv with the given [out][in] weights."""
    conv = nn.Conv2d(len(weight[0]), len(weight), 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight)[:, :, None, None])
    return conv


class AddConstant(nn.Module):
    def __init__(self, constant: float):
        super().__init__()
        self.constant = constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.constant


@pytest.fixture(scope="module")
def small_audit() -> dict:
    """One audit of a random small MIRNet at 64x64, with copies of what it must not change."""
    model = _small_mirnet()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "image": image.clone(),
        "training": model.training,
    }
    return {"model": model, "image": image, "before": before, "report": audit_fp16(model, [image])}


def test_random_small_mirnet_is_accurate_in_fp16(small_audit: dict) -> None:
    report = small_audit["report"]
    assert 30 < report.psnr_db < float("inf")
    assert report.overflows == 0
    assert report.output_nonfinite == 0
    assert report.flagged_layers == []
    assert report.resolution == "64x64"
    assert report.images == 1
    names = {row.name for row in report.layers}
    # Module outputs and the functional ops between modules are both audited.
    assert {"conv_in", "(model):add#0", "body.0.body.0.blocks.0.0.SA:mul#0"} <= names
    assert "body.0.body.0.selective_kernel.0:softmax#0" not in names  # nn.Softmax: a leaf module row
    pools = [row for row in report.layers if row.kind == "AdaptiveAvgPool2d"]
    assert pools
    assert all(row.kept_fp32 for row in pools)
    json.dumps(report.to_dict(), allow_nan=False)
    table = report.format_table(top=5)
    assert len(table.splitlines()) == 1 + 5 + 1
    assert "64x64: PSNR vs FP32" in table


def test_model_and_inputs_are_not_modified(small_audit: dict) -> None:
    model, before = small_audit["model"], small_audit["before"]
    assert model.training == before["training"]
    assert torch.equal(small_audit["image"], before["image"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before["state"][key]), key


def test_overflow_is_reported_where_it_happens_and_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 x 30000 x 1.0 = 90000 > 65504 in conv 0; conv 1 only inherits the inf."""
    monkeypatch.setattr(fp16_audit, "STATS_CHUNK", 50)  # counts add up over chunks
    model = nn.Sequential(_conv1x1([[3e4] * 3] * 3), _conv1x1([[1e-3] * 3] * 3))
    report = audit_fp16(model, [torch.ones(1, 3, 8, 8)])
    rows = {row.name: row for row in report.layers}
    assert rows["0"].overflows == 3 * 64
    assert rows["0"].max_abs == 9e4
    assert rows["0"].ratio > 1
    assert rows["1"].overflows == 0
    assert rows["1"].nonfinite == 3 * 64
    assert report.flagged_layers == ["0"]
    assert report.output_nonfinite == 3 * 64
    assert report.weight_overflows == []
    assert "FLAGGED" in report.format_table().splitlines()[1]


def test_weights_beyond_fp16_are_reported() -> None:
    report = audit_fp16(nn.Sequential(_conv1x1([[1e5]])), [torch.ones(1, 1, 4, 4)])
    assert report.weight_overflows == ["0.weight"]
    assert report.flagged_layers == ["0"]


def test_emulation_really_rounds_activations() -> None:
    """1 + 1e-4 is 1.0 in FP16 (spacing 2^-10): the emulated output loses exactly the 1e-4."""
    report = audit_fp16(AddConstant(1e-4), [torch.ones(1, 3, 4, 4)])
    assert report.max_abs_error == pytest.approx(1e-4, rel=1e-3)
    assert report.psnr_db == float("inf")  # both clamp to 1.0
    assert [row.name for row in report.layers] == ["(model)"]  # a leaf model: one row
    half = audit_fp16(AddConstant(1e-4), [torch.full((1, 3, 4, 4), 0.5)])
    assert half.psnr_db == pytest.approx(80.0, abs=0.01)  # MSE (1e-4)^2


def test_weights_are_rounded_unless_kept_fp32() -> None:
    """1.0004 rounds to 1.0 in FP16, so 1.0004 - 1.0 becomes 0 unless the conv keeps FP32 weights."""
    model = nn.Sequential(_conv1x1([[1.0004, -1.0]]))
    image = torch.ones(1, 2, 4, 4)
    assert audit_fp16(model, [image]).max_abs_error == pytest.approx(4e-4, rel=1e-3)
    assert audit_fp16(model, [image], keep_fp32={"0"}).max_abs_error < 1e-6


def test_fp16_pool_sum_overflows_unless_kept_fp32() -> None:
    """256x256 ones sum to 65536 > 65504: harmless kept in FP32, inf when summed in FP16."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1))
    image = torch.ones(1, 3, 256, 256)
    kept = audit_fp16(model, [image]).layers[0]
    assert kept.kept_fp32
    assert kept.overflows == 0
    assert not kept.flagged
    assert kept.reduction_size == 256 * 256
    assert kept.max_pre_sum == 65536
    assert "note: 1 average pools sum to more than 65504" in audit_fp16(model, [image]).format_table()
    fp16 = audit_fp16(model, [image], keep_fp32=())
    assert fp16.layers[0].overflows == 3
    assert fp16.flagged_layers == ["0"]
    assert fp16.output_nonfinite == 3


def test_pool_sum_grows_with_resolution_as_hw() -> None:
    model = _small_mirnet()
    name = "body.0.body.0.blocks.0.0.CA.avg_pool"
    pools = {}
    for side in (64, 128):
        report = audit_fp16(model, [torch.full((1, 3, side, side), 0.5)])
        pools[side] = next(row for row in report.layers if row.name == name)
    assert pools[64].reduction_size == 64 * 64
    assert pools[128].reduction_size == 128 * 128
    assert pools[128].max_pre_sum / pools[64].max_pre_sum == pytest.approx(4, rel=0.1)


def test_audit_at_resolutions_pads_real_images() -> None:
    reports = audit_at_resolutions(_small_mirnet(), [(30, 22)])
    assert list(reports) == ["30x22"]
    report = reports["30x22"]
    assert report.resolution == "32x24"
    assert report.images == 2
    assert 30 < report.psnr_db < float("inf")


def test_audit_command_prints_the_table(tmp_path):
    """`mirnet audit-fp16` on a saved small checkpoint: one table per resolution, JSON on request."""
    import json

    from click.testing import CliRunner

    from mirnet_deploy.cli import main
    from mirnet_ref.checkpoint import save_checkpoint
    from mirnet_ref.presets import build_preset

    checkpoint = save_checkpoint(build_preset("small"), tmp_path / "small.pth")
    result = CliRunner().invoke(main, ["audit-fp16", "--checkpoint", str(checkpoint), "--res", "32,20x24",
                                       "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)
    assert list(reports) == ["32x32", "20x24"]
    assert all(report["overflows"] == 0 for report in reports.values())
