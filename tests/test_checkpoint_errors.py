"""Clear errors for files that are not MIRNet checkpoints, or that contradict explicit arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mirnet_deploy.errors import CheckpointError
from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.presets import build_preset


@pytest.fixture
def small_checkpoint(tmp_path) -> str:
    torch.manual_seed(0)
    return str(save_checkpoint(build_preset("small"), tmp_path / "small.pth"))


def _state(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_non_mirnet_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(CheckpointError, match=r"Not a MIRNet checkpoint.*conv1\.weight"):
        load_model(path)


def test_truncated_file(small_checkpoint, tmp_path):
    data = Path(small_checkpoint).read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"could not be read.*truncated"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth")


def test_aliased_key_that_disagrees(small_checkpoint, tmp_path):
    state = _state(small_checkpoint)
    key = "body.0.body.1.blocks.1.1.conv1x1.weight"
    state[key] = state[key] + 0.5
    path = tmp_path / "edited.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=rf"{key} disagrees with body\.0\.body\.1\.blocks\.1\.0"):
        load_model(path)


def test_blur_buffer_that_is_not_the_fixed_kernel(small_checkpoint, tmp_path):
    state = _state(small_checkpoint)
    key = next(k for k in state if k.endswith(".filt"))
    state[key] = torch.rand_like(state[key])
    path = tmp_path / "blur.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"Blur buffer {key}"):
        load_model(path)


def test_explicit_argument_contradicting_tensors(small_checkpoint):
    with pytest.raises(
        CheckpointError, match=r"Explicit n_feat=32 contradicts.*n_feat=16.*shape mismatches: conv_in\.weight"
    ):
        load_model(small_checkpoint, n_feat=32)
    with pytest.raises(CheckpointError, match=r"Explicit n_RRG=2 .* n_RRG=1.*missing keys: body\.1\."):
        load_model(small_checkpoint, n_RRG=2)


def test_explicit_argument_that_agrees_is_accepted(small_checkpoint):
    assert load_model(small_checkpoint, n_feat=16, n_RRG=1).config.n_feat == 16


def test_missing_parameter_is_named(small_checkpoint, tmp_path):
    state = _state(small_checkpoint)
    del state["body.0.body.0.conv_out.weight"]
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys: body\.0\.body\.0\.conv_out\.weight"):
        load_model(path)


def test_checkpoint_without_blur_buffers_or_prelu_aliases_loads(small_checkpoint, tmp_path):
    """Blur buffers and alias keys may be absent; the first key of each shared tensor suffices.

    (Column-1 DAU keys must stay: they are the only trace of `width` in the tensors.)
    """
    model = load_model(small_checkpoint)
    first_prelu = "body.0.body.0.blocks.0.0.body.1.weight"
    state = {
        k: v
        for k, v in _state(small_checkpoint).items()
        if not k.endswith(".filt") and not (k.endswith("body.1.weight") and k != first_prelu)
    }
    path = tmp_path / "dedup.pth"
    torch.save(state, path)
    reloaded = load_model(path)
    assert reloaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
