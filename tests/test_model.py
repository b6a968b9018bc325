"""The reference model's structure: parameter count, official keys, sharing, independence."""

from __future__ import annotations

import torch

from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.model import MIRNet, count_parameters
from mirnet_ref.presets import build_preset


def test_full_preset_matches_official_keys(official_keys):
    model = build_preset("full")
    assert count_parameters(model) == 31_787_419
    state = model.state_dict()
    expected = official_keys["keys"]
    assert list(state) == [entry["key"] for entry in expected]
    for entry in expected:
        assert list(state[entry["key"]].shape) == entry["shape"], entry["key"]
        assert (entry["kind"] == "buffer") == entry["key"].endswith(".filt")


def test_full_preset_aliases_match_official(official_keys):
    state = build_preset("full").state_dict(keep_vars=True)
    aliases = {e["key"]: e["alias_of"] for e in official_keys["keys"] if e["alias_of"]}
    ours = {}
    first_of: dict[int, str] = {}
    for key, tensor in state.items():
        ours.update({key: first_of[id(tensor)]} if id(tensor) in first_of else {})
        first_of.setdefault(id(tensor), key)
    assert ours == aliases


def test_full_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = build_preset("full")
    path = save_checkpoint(model, tmp_path / "full.pth", epoch=3)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 3
    assert len(saved["state_dict"]) == 797
    reloaded = load_model(path)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert k1 == k2
        assert torch.equal(v1, v2), k1


def test_bias_reaches_only_three_kinds_of_conv():
    model = MIRNet(n_feat=8, n_RRG=1, n_MSRB=1, bias=True)
    biased = [k for k in model.state_dict() if k.endswith(".bias")]
    assert biased == ["conv_in.bias", "body.0.body.0.conv_out.bias", "conv_out.bias"]


def test_two_models_are_independent():
    torch.manual_seed(0)
    a, b = build_preset("small").eval(), build_preset("small").eval()
    a_act = a.body[0].body[0].blocks[0][0].body[1]
    b_act = b.body[0].body[0].blocks[0][0].body[1]
    assert a_act is not b_act
    # Within one model, every DAU shares the single PReLU (the official sharing).
    assert a.body[0].body[1].blocks[2][1].body[1] is a_act
    a.double()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        y64 = a(x.double())
        y32 = b(x)
    assert y64.dtype == torch.float64
    assert y32.dtype == torch.float32
    assert b_act.weight.dtype == torch.float32
    with torch.no_grad():
        a_act.weight.fill_(0.1)
    assert b_act.weight.item() == 0.25


def test_forward_keeps_input_and_batch_elements_independent():
    torch.manual_seed(1)
    model = build_preset("small").eval()
    x = torch.rand(2, 3, 12, 20)
    before = x.clone()
    with torch.no_grad():
        both = model(x)
        second = model(x[1:])
    assert torch.equal(x, before)
    torch.testing.assert_close(both[1:], second, rtol=0, atol=1e-6)
