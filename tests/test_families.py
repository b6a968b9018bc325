"""MPRNet and MIRNet-v2 against the authors' data: golden outputs through the checkpoint loader,
official key lists, parameter counts and MACs of every preset, family recognition, `mirnet info`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_deploy.errors import CheckpointError
from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.complexity import learned_macs
from mirnet_ref.inference import pad_to_multiple, restore
from mirnet_ref.model import count_parameters
from mirnet_ref.model_costs import input_macs
from mirnet_ref.presets import build_preset
from mirnet_ref.registry import FAMILIES, family_of_config, inference_module, recognise

#: (family, golden file, how the authors' training code saves it)
GOLDEN = [
    ("mprnet", "mprnet_official_golden_small.npz", "state_dict"),
    ("mirnetv2", "mirnetv2_official_golden_small.npz", "params"),
    ("mirnetv2", "mirnetv2_defocus_official_golden_small.npz", "params"),
]
#: (family, key file, preset in the key file, our presets with those tensors)
OFFICIAL = [
    ("mprnet", "mprnet_official_keys.json", "deblur", ["deblur"]),
    ("mprnet", "mprnet_official_keys.json", "denoise", ["denoise"]),
    ("mprnet", "mprnet_official_keys.json", "derain", ["derain"]),
    ("mirnetv2", "mirnetv2_official_keys.json", "rgb", ["denoise", "enhance", "sr_x2", "sr_x3", "sr_x4"]),
    ("mirnetv2", "mirnetv2_official_keys.json", "defocus", ["defocus"]),
]


def _official_file(golden: dict, container: str, path) -> str:
    """The golden tensors saved as the authors' code saves them: MPRNet's train.py under
    DataParallel ({'epoch', 'state_dict' with `module.`, 'optimizer'}), BasicSR's {'params'}."""
    if container == "state_dict":
        payload = {"epoch": 3, "state_dict": {"module." + k: v for k, v in golden["state_dict"].items()},
                   "optimizer": {}}
    else:
        payload = {container: golden["state_dict"]}
    torch.save(payload, path)
    return str(path)


@pytest.fixture(scope="module", params=GOLDEN, ids=[g[1].split("_official")[0] for g in GOLDEN])
def case(request, reference, tmp_path_factory) -> dict:
    family, filename, container = request.param
    golden = reference.golden(filename)
    path = _official_file(golden, container, tmp_path_factory.mktemp("ckpt") / "official.pth")
    return {"family": family, "golden": golden, "model": load_model(path), "path": path}


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every output of the raw network by its golden-file suffix (MPRNet: _stage3, _stage2, _stage1)."""
    with torch.no_grad():
        out = model(x)
    if isinstance(out, list):
        return {f"_stage{3 - i}": o.double().numpy() for i, o in enumerate(out)}
    return {"": out.double().numpy()}


def _odd_run(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The authors' test procedure without the clamp: reflect-pad bottom/right, run, take the
    output inference uses, crop."""
    height, width = x.shape[-2:]
    with torch.no_grad():
        out = inference_module(model)(pad_to_multiple(x, model.size_multiple))
    return out[..., :height, :width].double().numpy()


def test_family_and_architecture_are_inferred_from_tensors(case):
    assert family_of_config(case["model"].config).name == case["family"]
    assert case["model"].config.as_dict() == case["golden"]["config"]
    assert list(case["model"].state_dict()) == case["golden"]["keys"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["a", "b"])
def test_every_output_matches_the_authors(case, name, dtype):
    arrays = case["golden"]["arrays"]
    model = case["model"].to(dtype)
    outputs = _outputs(model, torch.from_numpy(arrays[f"__input_{name}__"]).to(dtype))
    tolerance = 1e-9 if dtype == torch.float64 else 1e-5
    for suffix, y in outputs.items():
        error = np.abs(y - arrays[f"__output_{name}{suffix}_float64__"]).max()
        print(f"{case['family']} input {name}{suffix} {dtype}: max |error| {error:.2e}")
        assert error < tolerance


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_odd_size_through_the_authors_padding(case, dtype):
    arrays = case["golden"]["arrays"]
    model = case["model"].to(dtype)
    assert model.size_multiple == {"mprnet": 8, "mirnetv2": 4}[case["family"]]
    x = torch.from_numpy(arrays["__input_odd__"]).to(dtype)
    error = np.abs(_odd_run(model, x) - arrays["__output_odd_float64__"]).max()
    print(f"{case['family']} odd input {tuple(x.shape)} {dtype}: max |error| {error:.2e}")
    assert error < (1e-9 if dtype == torch.float64 else 1e-5)


def test_restore_is_the_clamped_authors_procedure(case):
    arrays = case["golden"]["arrays"]
    model = case["model"].float()
    restored = restore(model, torch.from_numpy(arrays["__input_odd__"])).double().numpy()
    assert np.abs(restored - np.clip(arrays["__output_odd_float64__"], 0, 1)).max() < 1e-5


def test_intermediate_stages_match(case):
    """The localisation arrays of the golden files: first layers of the model on input a."""
    arrays = case["golden"]["arrays"]
    model = case["model"].double()
    x = torch.from_numpy(arrays["__input_a__"]).double()
    with torch.no_grad():
        if case["family"] == "mprnet":
            # shallow_feat1 on the top-left quarter; the stage-1 decoder's dec1 on the top half.
            quarters = [x[:, :, :32, :32], x[:, :, :32, 32:]]
            encoded = [model.stage1_encoder(model.shallow_feat1(q)) for q in quarters]
            top = [torch.cat(levels, dim=3) for levels in zip(*encoded, strict=True)]
            stages = {"shallow_feat1_first_call": model.shallow_feat1(quarters[0]),
                      "stage1_decoder_first_call_dec1": model.stage1_decoder(top)[0]}
        else:
            stem = model.conv_in(x)
            stages = {"conv_in": stem, "body.0": model.body[0](stem)}
    for name, value in stages.items():
        assert np.abs(value.float().numpy() - arrays[f"__stage_a_{name}_float32__"]).max() < 1e-6, name


def test_shared_prelu_is_one_tensor_as_upstream(case):
    state = case["model"].state_dict()
    for key, first in case["golden"]["aliases"].items():
        assert state[key].data_ptr() == state[first].data_ptr(), key


@pytest.mark.parametrize(("family", "filename", "preset", "ours"), OFFICIAL)
def test_official_presets_match_the_key_files(reference, family, filename, preset, ours):
    """Key order, shapes, aliases, parameter count and conv MACs at 256x256 of each official preset."""
    expected = reference.keys(filename)["presets"][preset]
    entry = FAMILIES[family]
    for name in ours:
        with torch.device("meta"):
            model = entry.build(entry.preset(name))
        state = model.state_dict(keep_vars=True)
        keys = expected["keys"]
        assert [(k, list(v.shape)) for k, v in state.items()] == [(e["key"], e["shape"]) for e in keys]
        first_key_of: dict[int, str] = {}
        for key, tensor in state.items():
            first_key_of.setdefault(id(tensor), key)
        aliases = {k: first_key_of[id(v)] for k, v in state.items() if first_key_of[id(v)] != k}
        assert aliases == {e["key"]: e["alias_of"] for e in keys if e["alias_of"]}
        assert count_parameters(model) == expected["totals"]["parameters_dedup_numel"]
        assert entry.matching_presets(entry.infer_config(state)) == ours
    config = entry.preset(ours[0])
    totals = input_macs(config, (1, config.in_channels, 256, 256))  # as `mirnet info` counts them
    macs = expected["macs_256x256"]
    assert learned_macs(totals) == macs["conv_macs"]
    assert {k: v for k, v in totals.items() if k.startswith("conv")} == macs["conv_macs_by_kind"]
    assert sum(totals.values()) == macs["fvcore_like_total"]


def test_each_checkpoint_family_is_recognised(case, tmp_path):
    state = case["golden"]["state_dict"]
    assert recognise(state) is FAMILIES[case["family"]]
    mirnet = torch.load(save_checkpoint(build_preset("small"), tmp_path / "mirnet.pth"), weights_only=True)
    assert recognise(mirnet["state_dict"]) is FAMILIES["mirnet"]


def test_explicit_arch_contradicting_the_tensors_is_refused(case):
    other = "mirnet" if case["family"] != "mirnet" else "mprnet"
    title = FAMILIES[case["family"]].title
    refusal = rf"Explicit model family {other} \(--arch/--model\) contradicts.*{title}'s"
    with pytest.raises(CheckpointError, match=refusal):
        load_model(case["path"], arch=other)
    with pytest.raises(CheckpointError, match=r"Explicit n_feat=32 contradicts.*n_feat=1[36]"):
        load_model(case["path"], n_feat=32)
    assert load_model(case["path"], arch=case["family"]).config.as_dict() == case["golden"]["config"]


def test_basicsr_params_ema_loads(reference, tmp_path):
    golden = reference.golden("mirnetv2_official_golden_small.npz")
    path = _official_file(golden, "params_ema", tmp_path / "ema.pth")
    loaded = load_model(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in golden["state_dict"].items())


def _info(*args: str) -> dict:
    result = CliRunner().invoke(main, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    ("family", "preset", "parameters", "gmacs"),
    [("mprnet", "derain", 3_637_249, 140.982), ("mirnetv2", "defocus", 5_860_720, 139.647)],
)
def test_info_on_a_full_size_official_checkpoint(tmp_path, family, preset, parameters, gmacs):
    torch.manual_seed(0)
    entry = FAMILIES[family]
    model = entry.build(entry.preset(preset))
    path = tmp_path / "official.pth"
    torch.save({"params": model.state_dict()} if family == "mirnetv2" else {"state_dict": model.state_dict()},
               path)
    info = _info(str(path), "--res", "256")
    assert (info["family"], info["presets"], info["parameters"]) == (family, [preset], parameters)
    assert info["macs"][0]["gmacs"] == pytest.approx(gmacs, abs=5e-4)
    text = CliRunner().invoke(main, ["info", str(path), "--res", "256"]).output
    assert f"{entry.title} from checkpoint official.pth" in text
    assert f"official preset(s) with these tensors: {preset}" in text
    assert f"parameters: {parameters:,}" in text


def test_info_on_presets_of_every_family():
    info = _info("deblur", "--model", "mprnet", "--res", "45x71")
    assert info["macs"][0]["padded"] == "48x72"
    assert info["parameters"] == 20_127_073
    sr = _info("sr_x4", "--model", "mirnetv2", "--res", "256")
    assert sr["config"]["scale"] == 4
    assert sr["presets"] == ["denoise", "enhance", "sr_x2", "sr_x3", "sr_x4"]


def test_info_refuses_a_model_option_the_file_contradicts(case):
    other = "mirnet" if case["family"] != "mirnet" else "mprnet"
    result = CliRunner().invoke(main, ["info", case["path"], "--model", other])
    assert result.exit_code != 0
    assert "contradicts the checkpoint" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "case",
    # MIRNet-v2's exports take ~50 s (up to 3 min on busy cores): slow.
    [GOLDEN[0], *(pytest.param(golden, marks=pytest.mark.slow) for golden in GOLDEN[1:])],
    indirect=True,
    ids=["mprnet", "mirnetv2", "mirnetv2_defocus"],
)
def test_export_of_an_official_checkpoint_matches_pytorch(case, tmp_path):
    """`mirnet export --checkpoint`: one graph output (the one inference uses), lint-clean, and
    ONNX Runtime within 1e-4 of PyTorch on odd sizes and batch 2 (the export's own verification)."""
    import onnx

    output = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, ["export", "--checkpoint", case["path"], "-o", str(output), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["lint"]["error_count"], report["lint"]["warning_count"]) == (0, 0)
    checks = report["verification"]["checks"]
    assert any(c["input_shape"][0] == 2 and c["input_shape"][2] % 2 for c in checks)
    for check in checks:
        print(f"{case['family']} export {check['input_shape']}: max |error| {check['max_abs_error']:.2e}")
    assert max(c["max_abs_error"] for c in checks) < 1e-4
    assert report["metadata"]["model_name"] == FAMILIES[case["family"]].title
    assert [o.name for o in onnx.load(output).graph.output] == ["output"]
