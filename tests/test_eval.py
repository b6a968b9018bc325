"""`mirnet eval`: per-image and mean table as JSON, on a small paired folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_ref.checkpoint import save_checkpoint
from mirnet_ref.images import write_image
from mirnet_ref.metrics import psnr
from mirnet_ref.presets import build_preset


def test_eval_paired_folder_json(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("input", "groundtruth"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    expected = []
    for i in range(2):
        clean = rng.random((24, 28, 3)).astype(np.float32)
        noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
        write_image(tmp_path / "data" / "groundtruth" / f"{i}.png", clean, bit_depth=16)
        write_image(tmp_path / "data" / "input" / f"{i}.png", noisy, bit_depth=16)
        expected.append(psnr(np.round(noisy * 65535) / 65535, np.round(clean * 65535) / 65535))
    checkpoint = save_checkpoint(build_preset("small"), tmp_path / "small.pth")
    result = CliRunner().invoke(main, ["eval", "--task", "denoise", "--checkpoint", str(checkpoint),
                                       "--data", str(tmp_path / "data"), "--layout", "paired", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [row["name"] for row in report["images"]] == ["0", "1"]
    assert [row["size"] for row in report["images"]] == ["28x24", "28x24"]
    for row, value in zip(report["images"], expected, strict=True):
        assert row["psnr"]["input"] == pytest.approx(value, abs=1e-3)
        assert set(row["psnr"]) == {"input", "mirnet", "nl-means"}
    assert report["mean"]["psnr"]["input"] == pytest.approx(np.mean(expected), abs=1e-3)


def test_eval_without_weights_or_checkpoint_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["eval", "--task", "denoise", "--checkpoint", str(tmp_path / "x.pth")])
    assert result.exit_code != 0
