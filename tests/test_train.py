"""`mirnet train` end to end on a tiny generated folder: runs, resumes exactly, writes official files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_deploy.errors import UserError
from mirnet_ref.checkpoint import load_model
from mirnet_ref.images import write_image
from mirnet_ref.train import TrainConfig, charbonnier, lr_factor
from mirnet_ref.train_log import TornLogWarning, append_record, read_records


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
    log = read_records(tmp_path / "split" / "train_log.jsonl")
    assert [r["iteration"] for r in log if "val_psnr" in r] == [2, 4]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert (tmp_path / "split" / "model_best.pth").is_file()

    # Resuming a finished run trains nothing, says so, and can still publish its best weights.
    published = tmp_path / "published.pth"
    again = _train(tiny_folder, tmp_path / "split", 4, "--resume", "--publish", str(published))
    assert "Nothing left to train: the run is at iteration 4 of 4" in again.output
    assert "nan" not in again.output
    best, shipped = load_model(tmp_path / "split" / "model_best.pth"), load_model(published)
    for (key, a), b in zip(best.state_dict().items(), shipped.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_resume_from_a_damaged_latest_checkpoint_is_one_clear_error(tiny_folder, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model_latest.pth").write_bytes(b"\x80\x04junk" * 100)
    args = ["train", "--task", "denoise", "--data", str(tiny_folder), "--val-data", str(tiny_folder),
            "--n-feat", "8", "--iterations", "2", "--patch-size", "16", "--batch-size", "2",
            "--output", str(tmp_path / "run"), "--resume", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "model_latest.pth could not be read" in result.output
    assert "Traceback" not in result.output


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


def test_train_and_eval_any_family_through_the_registry(tiny_folder, tmp_path):
    """MPRNet deblur: trained on all three stage outputs, published, scored with its family's
    column beside the deconvolution baselines given the true kernel."""
    _train_args = ["--model", "mprnet", "--task", "deblur", "--data", str(tiny_folder), "--val-data",
                   str(tiny_folder), "--n-feat", "8", "--iterations", "2", "--patch-size", "16",
                   "--batch-size", "2", "--warmup", "1", "--val-every", "2", "--quiet"]
    published = tmp_path / "mprnet.pth"
    result = CliRunner().invoke(main, ["train", *_train_args, "--output", str(tmp_path / "run"),
                                       "--publish", str(published)])
    assert result.exit_code == 0, result.output
    model = load_model(published, "mprnet")
    assert (model.config.n_feat, model.config.num_cab) == (8, 2)  # the `small` preset, n_feat overridden
    saved = json.loads(torch.load(published, weights_only=True)["train_config"])
    assert (saved["family"], saved["edge_loss_weight"]) == ("mprnet", 0.05)

    result = CliRunner().invoke(main, ["eval", "--task", "deblur", "--checkpoint", str(published),
                                       "--data", str(tiny_folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["degradation"]["kind"] == "motion-blur"
    columns = {"input", "mprnet", "wiener", "richardson-lucy", "wiener-mean-kernel"}
    assert set(report["mean"]["psnr"]) == columns
    assert all(np.isfinite(v) for v in report["mean"]["psnr"].values())


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "mprnet", "--task", "enhance"], "does not do 'enhance'"),
    (["--model", "mirnetv2", "--task", "denoise", "--n-msrb", "2"], "Unknown MIRNet-v2 arguments"),
    (["--model", "mirnetv2", "--task", "denoise", "--preset", "tiny"], "Unknown MIRNet-v2 preset"),
])
def test_train_refuses_what_the_family_lacks(tiny_folder, tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", *args, "--data", str(tiny_folder), "--output",
                                       str(tmp_path / "run"), "--quiet"])
    assert result.exit_code != 0
    assert message in result.output


def test_a_torn_last_log_line_is_skipped_with_a_warning_and_cut_before_the_next_record(tmp_path):
    """What a run killed in the middle of a buffered write left (the writer before this one): whole lines,
    then part of one. The reader skips it with a warning; the next append cuts it off first."""
    log = tmp_path / "train_log.jsonl"
    append_record(log, {"iteration": 2, "val_psnr": 30.5})
    with open(log, "ab") as handle:
        handle.write(b'{"iteration": 4, "val_ps')
    with pytest.warns(TornLogWarning, match="line 2 is torn"):
        assert read_records(log) == [{"iteration": 2, "val_psnr": 30.5}]
    with pytest.warns(TornLogWarning, match="24 bytes"):
        append_record(log, {"iteration": 4, "val_psnr": 31.0})
    assert log.read_bytes().count(b"\n") == 2
    assert [r["iteration"] for r in read_records(log)] == [2, 4]
    log.write_bytes(b'{"iteration": 2}\nnot json\n{"iteration": 4}\n')
    with pytest.raises(UserError, match="line 2 is not a JSON record"):
        read_records(log)
