"""Conformance with the authors' model: golden outputs through the official-checkpoint loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirnet_ref.checkpoint import load_model


@pytest.fixture(scope="module")
def official_checkpoint(golden, tmp_path_factory) -> str:
    """The golden tensors saved the way the authors' 2-GPU training script saves them."""
    path = tmp_path_factory.mktemp("ckpt") / "model_official.pth"
    state = {"module." + k: v for k, v in golden["state_dict"].items()}
    torch.save({"epoch": 60, "state_dict": state, "optimizer": {}}, path)
    return str(path)


def test_architecture_is_inferred_from_tensors(official_checkpoint, golden):
    model = load_model(official_checkpoint)
    assert model.config.as_dict() == golden["config"]


@pytest.mark.parametrize("name", ["a", "b"])
def test_float32_matches_authors(official_checkpoint, golden, name):
    model = load_model(official_checkpoint)
    x = torch.from_numpy(golden["arrays"][f"__input_{name}__"])
    with torch.no_grad():
        y = model(x).numpy()
    assert np.abs(y - golden["arrays"][f"__output_{name}_float64__"]).max() < 1e-5
    # Same operations in the same order as the authors' float32 run: expect bit-exactness.
    assert np.abs(y - golden["arrays"][f"__output_{name}_float32__"]).max() < 1e-6


@pytest.mark.parametrize("name", ["a", "b"])
def test_float64_matches_authors(official_checkpoint, golden, name):
    model = load_model(official_checkpoint).double()
    x = torch.from_numpy(golden["arrays"][f"__input_{name}__"]).double()
    with torch.no_grad():
        y = model(x).numpy()
    assert np.abs(y - golden["arrays"][f"__output_{name}_float64__"]).max() < 1e-9


def test_intermediate_stages_match(official_checkpoint, golden):
    model = load_model(official_checkpoint).double()
    x = torch.from_numpy(golden["arrays"]["__input_a__"]).double()
    with torch.no_grad():
        stem = model.conv_in(x)
        first_rrg = model.body[0](stem)
    arrays = golden["arrays"]
    assert np.abs(stem.float().numpy() - arrays["__stage_a_conv_in_float32__"]).max() < 1e-6
    assert np.abs(first_rrg.float().numpy() - arrays["__stage_a_body.0_float32__"]).max() < 1e-6


def test_saved_keys_and_aliases_match_golden(official_checkpoint, golden):
    state = load_model(official_checkpoint).state_dict()
    assert list(state) == golden["keys"]
    for key, first in golden["aliases"].items():
        assert state[key].data_ptr() == state[first].data_ptr(), key
