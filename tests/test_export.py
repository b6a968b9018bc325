"""`mirnet export`: the FP32 ONNX graph computes what PyTorch computes, at any size.

A random-weight `small` MIRNet goes through the checkpoint loader, is exported once per
module, and runs on ONNX Runtime CPU against an independent PyTorch reference: the
`restore`-style pad/crop of `mirnet_ref.inference`, without the clamp.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from export.lint import lint_onnx
from export.network import load_network
from export.verify import verify_onnx
from mirnet_deploy import __version__
from mirnet_deploy.cli import main
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256
from mirnet_ref import inference
from mirnet_ref.checkpoint import save_checkpoint
from mirnet_ref.inference import reflect_indices
from mirnet_ref.presets import build_preset

TOLERANCE = 1e-4
#: (batch, height, width): square, odd, 1-3 pixel images (reflect-pad needs the periodic
#: extension there), a width one short of a multiple, batch 2, and the 256x256 acceptance size.
SHAPES = [(1, 64, 64), (1, 45, 71), (1, 33, 30), (1, 64, 61), (1, 1, 1), (1, 2, 3), (2, 64, 64),
          (2, 45, 71), (1, 256, 256)]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(build_preset("small"), tmp_path_factory.mktemp("ckpt") / "small.pth")


@pytest.fixture(scope="module")
def small(checkpoint):
    """(network, spec) as the CLI builds them: through the official-checkpoint loader."""
    return load_network(checkpoint, "denoise")


@pytest.fixture(scope="module")
def cli_export(checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """`mirnet export --checkpoint small.pth --output ...`: the file and what the command printed."""
    output = tmp_path_factory.mktemp("onnx") / "small.fp32.onnx"
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(checkpoint), "--output", str(output)])
    assert result.exit_code == 0, result.output
    return output, result.output


@pytest.fixture(scope="module")
def fp32_onnx(cli_export) -> Path:
    return cli_export[0]


@pytest.fixture(scope="module")
def session(fp32_onnx) -> ort.InferenceSession:
    return ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])


def pytorch_reference(network: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """`restore` without the clamp: reflect-pad bottom/right to the multiple, run, crop."""
    tensor = torch.from_numpy(x)
    with torch.no_grad():
        out = network(inference.pad_to_multiple(tensor, network.size_multiple))
    return out[..., : x.shape[-2], : x.shape[-1]].numpy()


def noise(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, height, width), dtype=np.float32)


@pytest.mark.parametrize(("batch", "height", "width"), SHAPES)
def test_onnx_matches_pytorch_at_any_size(small, session, batch, height, width):
    x = noise(batch, height, width)
    (y,) = session.run(None, {"input": x})
    assert y.shape == x.shape
    assert np.abs(y - pytorch_reference(small[0], x)).max() <= TOLERANCE


@pytest.mark.slow
def test_onnx_matches_pytorch_at_720p(small, session):
    x = noise(1, 720, 1280)
    (y,) = session.run(None, {"input": x})
    assert np.abs(y - pytorch_reference(small[0], x)).max() <= TOLERANCE


def test_output_is_not_clamped(small, session):
    """The contract: the network's own output (global residual: about the input, here 2)."""
    x = np.full((1, 3, 16, 16), 2.0, dtype=np.float32)
    (y,) = session.run(None, {"input": x})
    assert y.max() > 1.5
    assert np.abs(y - pytorch_reference(small[0], x)).max() <= TOLERANCE


def test_reflection_equals_repeated_numpy_reflect_padding():
    """Independent oracle: np.pad 'reflect' applied repeatedly (each step pads at most size-1)."""
    for size in range(1, 10):
        for padded in range(size, size + 12):
            expected = np.arange(size)
            while expected.size < padded:
                step = min(padded - expected.size, expected.size - 1)
                if not step:  # a 1-pixel side can only be repeated
                    expected = np.repeat(expected, padded)
                    break
                expected = np.pad(expected, (0, step), mode="reflect")
            assert reflect_indices(size, padded).tolist() == expected[:padded].tolist(), (size, padded)


def test_graph_io_contract(fp32_onnx):
    model = onnx.load(fp32_onnx)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "output")
    for value in (graph_input, graph_output):
        tensor_type = value.type.tensor_type
        assert tensor_type.elem_type == TensorProto.FLOAT
        dims = tensor_type.shape.dim
        assert dims[1].dim_value == 3
        assert all(dims[axis].dim_param and not dims[axis].dim_value for axis in (0, 2, 3))
    assert model.opset_import[0].version == 17
    assert "NOT clamped" in model.doc_string


def test_metadata(fp32_onnx, small, checkpoint):
    metadata = {prop.key: prop.value for prop in onnx.load(fp32_onnx).metadata_props}
    assert metadata == {
        "task": "denoise",
        "model_name": "MIRNet",
        "model_config": json.dumps(small[0].config.as_dict(), sort_keys=True),
        "size_multiple": "4",
        "scale": "1",
        "precision": "fp32",
        "checkpoint_sha256": file_sha256(checkpoint),
        "toolkit_version": __version__,
    }


def test_graph_is_folded_and_pads_by_gather(fp32_onnx):
    """Padding of the input is index arithmetic + Gather; the blur's reflect Pads get constant
    pads; nothing is left for a constant folder (no Constant, Identity or ConstantOfShape)."""
    model = onnx.load(fp32_onnx)
    ops = {node.op_type for node in model.graph.node}
    assert {"Shape", "Range", "Mod", "Where", "Gather"} <= ops
    assert not ops & {"Constant", "Identity", "ConstantOfShape"}
    consumers = {node.op_type for node in model.graph.node if "input" in node.input}
    assert consumers == {"Shape", "Gather"}
    initializers = {tensor.name for tensor in model.graph.initializer}
    pads = [node for node in model.graph.node if node.op_type == "Pad"]
    assert pads
    assert all(node.input[1] in initializers for node in pads)


def test_lint_finds_nothing(fp32_onnx):
    report = lint_onnx(fp32_onnx)
    assert report.ok
    assert not report.findings


def test_verify_fails_for_other_weights(small, fp32_onnx):
    torch.manual_seed(1)
    other = build_preset("small").eval()
    report = verify_onnx(fp32_onnx, other, small[1], shapes=((1, 16, 16),))
    assert not report.ok
    with pytest.raises(UserError, match="does not reproduce PyTorch"):
        report.raise_if_failed()


def test_sr_graph_upsamples_bicubically(small, checkpoint, tmp_path):
    """--scale 4: the graph takes the low-resolution image; PyTorch bicubic (a = -0.75) + network."""
    path = tmp_path / "sr.onnx"
    arguments = ["export", "--checkpoint", str(checkpoint), "--task", "sr", "--scale", "4", "-o", str(path)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "1x3x16x16 -> 1x3x64x64" in result.output
    model = onnx.load(path)
    (cubic,) = [node for node in model.graph.node if node.op_type == "Resize" and node.input[0] == "input"]
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in cubic.attribute}
    assert attributes["mode"] == b"cubic"
    assert attributes["cubic_coeff_a"] == pytest.approx(-0.75)
    assert attributes["coordinate_transformation_mode"] == b"half_pixel"
    (scales,) = [tensor for tensor in model.graph.initializer if tensor.name == cubic.input[2]]
    assert numpy_helper.to_array(scales).tolist() == [1, 1, 4, 4]
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert (metadata["task"], metadata["scale"]) == ("sr", "4")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, height, width in [(1, 16, 12), (2, 11, 7), (1, 1, 1)]:
        x = noise(batch, height, width)
        (y,) = session.run(None, {"input": x})
        upsampled = F.interpolate(torch.from_numpy(x), scale_factor=4, mode="bicubic", align_corners=False)
        assert y.shape == (batch, 3, 4 * height, 4 * width)
        assert np.abs(y - pytorch_reference(small[0], upsampled.numpy())).max() <= TOLERANCE


def test_golden_checkpoint_through_cli(golden, tmp_path):
    """The authors' golden model, saved as their 2-GPU script saves it: architecture inferred,
    exported by `mirnet export`, and the ONNX reproduces the authors' float64 outputs."""
    checkpoint = tmp_path / "official.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in golden["state_dict"].items()}}, checkpoint)
    output = tmp_path / "golden.onnx"
    arguments = ["export", "--checkpoint", str(checkpoint), "-o", str(output), "--json"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["output"] == str(output)
    assert summary["size_bytes"] == output.stat().st_size
    assert summary["lint"]["ok"]
    verification = summary["verification"]
    assert verification["ok"]
    assert verification["max_abs_error"] <= TOLERANCE
    checked = [check["input_shape"] for check in verification["checks"]]
    assert checked == [[1, 3, 64, 64], [1, 3, 45, 71], [2, 3, 33, 30]]
    assert json.loads(summary["metadata"]["model_config"]) == golden["config"]
    assert summary["metadata"]["task"] == "denoise"  # the authors' file records no task: labelled, and said
    assert "records no task and fits several; the ONNX is labelled denoise" in result.stderr
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    arrays = golden["arrays"]
    for name in ("a", "b"):
        (y,) = session.run(None, {"input": arrays[f"__input_{name}__"]})
        assert np.abs(y - arrays[f"__output_{name}_float64__"]).max() <= 1e-5


def test_cli_prints_the_summary(cli_export):
    output, printed = cli_export
    for text in (f"Wrote {output}", "ops: Conv", "lint: 0 error(s)", "1x3x45x71 -> 1x3x45x71", "max |err|"):
        assert text in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--checkpoint", "{tmp}/missing.pth"], "does not exist"),
        (["--checkpoint", "{tmp}/other.pth"], "Not a MIRNet checkpoint"),
        (["--checkpoint", "{tmp}/other.pth", "--task", "denoise", "--scale", "4"], "needs --task sr"),
        (["--checkpoint", "{tmp}/other.pth", "--fp32-node", "x"], "add --precision fp16"),
        ([], "Nothing to export"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, arguments, message):
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    output = tmp_path / "out.onnx"
    filled = [argument.format(tmp=tmp_path) for argument in arguments]
    result = CliRunner().invoke(main, ["export", *filled, "--output", str(output)])
    assert result.exit_code != 0
    assert message in result.output
    assert not output.exists()


def test_cli_help_has_examples():
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "mirnet export --task sr --scale 4" in result.output


def test_sr_graph_upsamples_exactly_like_the_sr_training_inputs(tmp_path):
    """`--scale` graphs must feed the network the same upsampled image the sr degradation trains on."""
    from export.graph import DeploymentGraph
    from export.spec import ModelSpec
    from mirnet_ref.degradations import bicubic_resize

    spec = ModelSpec(name="identity", task="sr", in_channels=3, out_channels=3, size_multiple=1)
    graph = DeploymentGraph(torch.nn.Identity(), spec, sr_scale=4).eval()
    low = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    with torch.no_grad():
        in_graph = graph(torch.from_numpy(low.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    assert np.abs(in_graph - bicubic_resize(low, 48, 40)).max() < 1e-6
