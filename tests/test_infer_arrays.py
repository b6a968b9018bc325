"""`mirnet infer` on a model of 6 input channels (MIRNet-v2's dual-pixel defocus model, `small` size,
random weights): `.npy` views in, an RGB image out, equal to the PyTorch reference on every backend
path (PyTorch, ONNX Runtime from the checkpoint, an exported ONNX), tiled close to untiled, and bad
arrays or plain images refused by name with nothing written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.degradations import make_degradation
from mirnet_ref.images import from_tensor, read_image, to_tensor, write_image
from mirnet_ref.inference import restore
from mirnet_ref.mirnetv2 import DEFOCUS_TASK, MIRNETV2_PRESETS, MIRNetV2

#: An odd size: the graph pads to a multiple of 4 and crops back.
WIDTH, HEIGHT = 45, 37


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MIRNet-v2 `small` made for dual-pixel input (6 channels, the defocus residual), seed 0."""
    torch.manual_seed(0)
    config = dataclasses.replace(MIRNETV2_PRESETS["small"], inp_channels=6, task=DEFOCUS_TASK)
    return save_checkpoint(MIRNetV2.from_config(config), tmp_path_factory.mktemp("model") / "defocus.pth")


@pytest.fixture(scope="module")
def views() -> np.ndarray:
    """Dual-pixel views of a held-out photograph, H x W x 6 float32 (the `defocus` degradation)."""
    photo = image_at_resolution(builtin_images("heldout")[0][1], WIDTH, HEIGHT)
    return make_degradation("defocus").apply(photo, np.random.default_rng(3))


def _reference(checkpoint: Path, views: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return from_tensor(restore(load_model(checkpoint), to_tensor(views)))


def _infer(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["infer", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


# The ONNX Runtime path from a checkpoint exports first (9 s); the exported-ONNX test below covers it.
@pytest.mark.parametrize("backend", ["torch", pytest.param("ort", marks=pytest.mark.slow)])
def test_npy_views_restore_to_the_pytorch_reference(backend: str, checkpoint: Path, views: np.ndarray,
                                                    tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "float.npy", views)
    np.save(folder / "codes.npy", np.round(views * 255).astype(np.uint8))
    code, summary = _infer("-i", str(folder), "-o", str(tmp_path / "out"), "--task", "defocus",
                           "--checkpoint", str(checkpoint), "--backend", backend, "--tile", "0")
    assert code == 0, summary["failed"]
    written = {Path(r["input"]).name: r for r in summary["restored"]}
    assert {name: Path(r["output"]).name for name, r in written.items()} == {
        "codes.npy": "codes_defocus.png", "float.npy": "float_defocus.png"}
    for name, array, bit_depth in (("float", views, 16), ("codes", np.round(views * 255) / 255, 8)):
        restored = read_image(tmp_path / "out" / f"{name}_defocus.png")
        assert (restored.bit_depth, restored.pixels.shape) == (bit_depth, (HEIGHT, WIDTH, 3))
        expected = _reference(checkpoint, array.astype(np.float32))
        tolerance = 0.5 / (2**bit_depth - 1) + (1e-6 if backend == "torch" else 1e-4)
        assert np.abs(restored.pixels - expected).max() <= tolerance


def test_exported_onnx_takes_views_and_tiles(checkpoint: Path, views: np.ndarray, tmp_path: Path) -> None:
    from export.network import load_network
    from export.onnx_export import export_onnx

    network, spec = load_network(checkpoint, "defocus")
    model = export_onnx(network, spec, tmp_path / "defocus.onnx")
    np.save(tmp_path / "views.npy", views)
    outputs = {}
    for tile in ("0", "24"):
        code, summary = _infer("-i", str(tmp_path / "views.npy"), "-o", str(tmp_path / f"tile{tile}"),
                               "--model", str(model), "--tile", tile, "--overlap", "8")
        assert code == 0, summary["failed"]
        assert summary["task"] == "defocus"
        outputs[tile] = read_image(summary["restored"][0]["output"]).pixels
    assert summary["tiling"] == "tiles up to 24x24, overlap 8"
    assert np.abs(outputs["0"] - _reference(checkpoint, views)).max() <= 0.5 / 65535 + 1e-4
    # Tiles start at rows 0, 13 and columns 0, 16, 21: the top-left 13x16 pixels are the first tile's
    # alone, i.e. the model's output on the 24x24 crop of the six planes. (The random network's global
    # context pooling makes the whole tiled image differ from the untiled one, as MIRNet's does.)
    first_tile = _reference(checkpoint, np.ascontiguousarray(views[:24, :24]))
    assert np.abs(outputs["24"][:13, :16] - first_tile[:13, :16]).max() <= 0.5 / 65535 + 1e-4


def test_the_task_comes_from_the_checkpoints_channels(checkpoint: Path, views: np.ndarray,
                                                      tmp_path: Path) -> None:
    """Without --task the 6-channel checkpoint (which records no task) runs as defocus; a --task whose
    inputs have 3 channels is refused before any file is read."""
    np.save(tmp_path / "views.npy", views)
    code, summary = _infer("-i", str(tmp_path / "views.npy"), "-o", str(tmp_path / "out"),
                           "--checkpoint", str(checkpoint), "--tile", "0")
    assert code == 0, summary["failed"]
    assert summary["task"] == "defocus"
    assert [Path(r["output"]).name for r in summary["restored"]] == ["views_defocus.png"]
    restored = read_image(tmp_path / "out" / "views_defocus.png").pixels
    assert np.abs(restored - _reference(checkpoint, views)).max() <= 0.5 / 65535 + 1e-6

    result = CliRunner().invoke(main, ["infer", "-i", str(tmp_path / "views.npy"), "-o",
                                       str(tmp_path / "wrong"), "--checkpoint", str(checkpoint),
                                       "--task", "denoise"])
    assert result.exit_code != 0
    assert ("--task denoise feeds 3-channel inputs, but the checkpoint is a MIRNet-v2 taking 6 input "
            "channels: it does defocus: pass --task defocus") in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "wrong").exists()


def test_images_and_bad_arrays_are_refused_by_name(checkpoint: Path, views: np.ndarray,
                                                   tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_image(folder / "photo.png", views[:, :, :3], 8)
    np.save(folder / "rgb.npy", views[:, :, :3])
    np.save(folder / "nan.npy", np.full((8, 8, 6), np.nan, np.float32))
    np.save(folder / "empty.npy", np.zeros((0, 8, 6), np.float32))
    np.save(folder / "flat.npy", views[:, :, 0])
    np.save(folder / "ints.npy", np.zeros((8, 8, 6), np.int32))
    np.save(folder / "good.npy", views)
    (folder / "text.npy").write_text("not an array")
    code, summary = _infer("-i", str(folder), "-o", str(tmp_path / "out"), "--task", "defocus",
                           "--checkpoint", str(checkpoint))
    assert code == 1
    errors = {Path(f["input"]).name: f["error"] for f in summary["failed"]}
    assert "takes 6 input channels, an image holds 3 (RGB)" in errors["photo.png"]
    assert "H x W x 6 .npy array" in errors["photo.png"]
    assert "the array holds 3" in errors["rgb.npy"]
    assert "NaN" in errors["nan.npy"]
    assert "no empty dimension" in errors["empty.npy"]
    assert "has shape" in errors["flat.npy"]
    assert "int32" in errors["ints.npy"]
    assert "not a .npy file" in errors["text.npy"]
    assert not any("unexpected" in error for error in errors.values())
    assert [Path(r["output"]).name for r in summary["restored"]] == ["good_defocus.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_defocus.png"]


def test_training_a_three_channel_preset_on_views_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--model", "mirnetv2", "--task", "defocus",
                                       "--output", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "defocus inputs have 6 channels" in result.output
    assert "--preset defocus" in result.output
    assert not (tmp_path / "run").exists()
