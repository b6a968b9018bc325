"""`mirnet train` end to end on a tiny generated folder: runs, resumes exactly, writes official files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_ref.checkpoint import load_model
from mirnet_ref.images import write_image
from mirnet_ref.train import TrainConfig, charbonnier, lr_factor


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for i in range(2):
        smooth = np.cumsum(np.cumsum(rng.random((40, 40, 3)), axis=0), axis=1)
        write_image(folder / f"img{i}.png", smooth / smooth.max())
    return folder


def _train(folder, output, iterations: int, *extra: str):
    args = ["train", "--task", "denoise", "--data", str(folder), "--val-data", str(folder),
            "--n-feat", "8", "--iterations", str(iterations), "--patch-size", "16", "--batch-size", "2",
            "--warmup", "2", "--val-every", "2", "--output", str(output), "--quiet", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def test_train_resume_is_exact_and_checkpoints_are_official(tiny_folder, tmp_path):
    _train(tiny_folder, tmp_path / "straight", 4)
    _train(tiny_folder, tmp_path / "split", 2)
    resumed = _train(tiny_folder, tmp_path / "split", 4, "--resume")
    assert "Resuming at iteration 2" in resumed.output

    straight = load_model(tmp_path / "straight" / "model_latest.pth")
    split = load_model(tmp_path / "split" / "model_latest.pth")
    assert straight.config.n_feat == 8
    for (key, a), b in zip(straight.state_dict().items(), split.state_dict().values(), strict=True):
        assert torch.equal(a, b), key

    payload = torch.load(tmp_path / "split" / "model_latest.pth", weights_only=True)
    assert payload["iteration"] == 4
    assert list(payload["state_dict"]) == list(straight.state_dict())
    log = [json.loads(line) for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log if "val_psnr" in r] == [2, 4]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert (tmp_path / "split" / "model_best.pth").is_file()


def test_resume_refuses_a_different_model(tiny_folder, tmp_path):
    _train(tiny_folder, tmp_path / "run", 2)
    args = ["train", "--task", "denoise", "--data", str(tiny_folder), "--val-data", str(tiny_folder),
            "--n-feat", "12", "--iterations", "4", "--patch-size", "16", "--batch-size", "2",
            "--output", str(tmp_path / "run"), "--resume", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "was trained with" in result.output


def test_schedule_warms_up_then_anneals_to_lr_min():
    config = TrainConfig(task="denoise", iterations=100, warmup=10, lr=2e-4, lr_min=1e-6)
    factors = [lr_factor(i, config) for i in range(101)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[100] * config.lr == pytest.approx(1e-6)


def test_charbonnier_clamps_the_output():
    target = torch.full((1, 3, 2, 2), 1.0)
    over = torch.full((1, 3, 2, 2), 1.7)
    assert charbonnier(over, target).item() == pytest.approx(1e-3)
