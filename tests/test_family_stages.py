"""Every stage takes any registered family through the registry: the benchmark's models, the runners,
TensorRT profiles from the graph's channels, the verbs' --task/--arch, the demo weights per task,
and the README's family table rows."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from bench.family_table import official_rows
from bench.models import gmacs, resolve_model
from engines.build import EngineSettings, tensorrt_profiles
from engines.runners import TorchRunner
from mirnet_deploy.cli import main
from mirnet_deploy.errors import CheckpointError
from mirnet_ref.inference import pad_to_multiple
from mirnet_ref.model_costs import describe
from mirnet_ref.registry import FAMILIES, inference_module
from mirnet_ref.tasks import TASKS
from mirnet_ref.weights import default_weights


def _save(family: str, preset: str, path, container: str) -> torch.nn.Module:
    torch.manual_seed(0)
    entry = FAMILIES[family]
    model = entry.build(entry.preset(preset)).eval()
    torch.save({container: model.state_dict()}, path)
    return model


def test_bench_presets_of_any_family_carry_their_family_multiple_and_macs():
    model = resolve_model("deblur", "deblur", "mprnet")
    assert (model.family, model.label, model.size_multiple) == ("mprnet", "mprnet-deblur", 8)
    assert model.channels == 3

    expected = describe(FAMILIES["mprnet"].preset("deblur"), [(64, 48)])["macs"][0]["gmacs"]
    assert gmacs(model, (64, 48), 1) == pytest.approx(expected)
    defocus = resolve_model("defocus", "denoise", "mirnetv2")
    assert (defocus.size_multiple, defocus.channels, defocus.task) == (4, 6, "defocus")


def test_bench_checkpoints_are_recognised_and_an_explicit_family_must_agree(tmp_path):
    path = tmp_path / "net_g_latest.pth"
    _save("mirnetv2", "small", path, "params")
    model = resolve_model(str(path), "enhance")
    assert (model.family, model.kind, model.size_multiple) == ("mirnetv2", "checkpoint", 4)
    with pytest.raises(CheckpointError, match="contradicts the checkpoint"):
        resolve_model(str(path), "enhance", "mprnet")


def test_torch_runner_pads_to_the_family_multiple_and_runs_the_output_inference_uses():
    torch.manual_seed(0)
    entry = FAMILIES["mprnet"]
    model = entry.build(entry.preset("small")).eval()
    runner = TorchRunner(inference_module(model))
    assert (runner.size_multiple, runner.input_spec.shape[1]) == (8, 3)
    x = np.random.default_rng(0).random((1, 3, 13, 21), dtype=np.float32)
    with torch.no_grad():
        expected = model(pad_to_multiple(torch.from_numpy(x), 8))[0][..., :13, :21].numpy()
    np.testing.assert_allclose(runner.run(x), expected, atol=1e-6)


def _tiny_onnx(path, channels: int, size_multiple: int) -> None:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, channels, 1, 1], [0.1] * 3 * channels)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"size_multiple": str(size_multiple)})
    onnx.save(model, path)


def test_tensorrt_profiles_take_channels_and_multiple_from_the_graph(tmp_path):
    path = tmp_path / "defocus.onnx"
    _tiny_onnx(path, channels=6, size_multiple=8)
    (profile,) = tensorrt_profiles(path, EngineSettings(resolutions=((100, 60),), batch=2))
    assert profile.min[1] == profile.opt[1] == profile.max[1] == 6
    assert profile.max == (2, 6, 60, 100)
    assert profile.min == (1, 6, 16, 32)  # a quarter of the size, rounded up to the graph's multiple of 8


def test_demo_weights_per_task_pick_the_family_that_has_them():
    assert default_weights("deblur").name == "mprnet_deblur.pth"
    assert default_weights("enhance").name == "enhance.pth"  # MIRNet first
    assert default_weights("enhance", "mirnetv2").name == "mirnetv2_enhance.pth"


@pytest.mark.parametrize("verb", ["build", "export", "audit-fp16", "infer", "parity", "calibrate"])
def test_deployment_verbs_take_every_task_and_arch(verb):
    text = CliRunner().invoke(main, [verb, "--help"]).output
    if verb != "parity":  # parity reads the task from the artifact's metadata
        assert all(task in text for task in TASKS)
    if verb != "calibrate":  # a calibration set depends on the task, not the model
        assert "--arch" in text


def test_a_family_without_demo_weights_for_the_task_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["build", "--task", "derain", "--precision", "fp32", "--artifacts",
                                       str(tmp_path)])
    assert result.exit_code == 1
    assert "No demo weights are made for 'derain'" in result.output
    assert "Traceback" not in result.output


def test_family_table_rows_cover_every_official_preset_once():
    rows = official_rows()
    covered = [(row.family, preset) for row in rows for preset in row.presets]
    official = [(name, preset) for name, family in FAMILIES.items() for preset in family.presets
                if preset != "small"]
    assert sorted(covered) == sorted(official)
    v2 = next(row for row in rows if row.family == "mirnetv2" and "enhance" in row.presets)
    assert v2.presets == ("denoise", "enhance", "sr_x2", "sr_x3", "sr_x4")  # one network, five presets
    assert {row.task for row in rows if row.family == "mprnet"} == {"deblur", "denoise", "derain"}


def test_infer_sizes_tiles_from_the_family_memory_per_pixel():
    from engines.infer import activation_bytes_per_pixel

    assert activation_bytes_per_pixel("MPRNet", {"n_feat": 96}) == 4.0 * 35 * 96
    assert activation_bytes_per_pixel("MIRNet", {"n_feat": 16}, scale=2) == 4.0 * 24 * 16 * 4
    assert activation_bytes_per_pixel("MIRNet-v2", {"n_feat": 80}) == 4.0 * 20 * 80
    assert activation_bytes_per_pixel("SomethingElse", {"n_feat": 16}) is None
