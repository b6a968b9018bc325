"""`mirnet infer` end to end on small files: bit depths kept, a corrupt file reported, inputs untouched,
tiling close to untiled, an ONNX model with its metadata, sr upscaling, and overwrite refusal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mirnet_deploy.cli import main
from mirnet_ref.checkpoint import load_model
from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.degradations import degrade_pair, make_degradation
from mirnet_ref.images import from_tensor, read_image, to_tensor, write_image
from mirnet_ref.inference import restore
from mirnet_ref.metrics import psnr
from mirnet_ref.weights import default_weights


def _noisy_photo(width: int, height: int) -> np.ndarray:
    """A held-out photograph with the denoise task's noise: what the demo model is for."""
    photo = image_at_resolution(builtin_images("heldout")[1][1], width, height)
    return degrade_pair(make_degradation("denoise"), photo, np.random.default_rng(7))[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """photo8.png (8-bit), photo16.png (16-bit), corrupt.png (a truncated PNG), notes.txt (ignored)."""
    images = tmp_path / "in"
    write_image(images / "photo8.png", _noisy_photo(48, 40), 8)
    write_image(images / "photo16.png", _noisy_photo(40, 48), 16)
    (images / "corrupt.png").write_bytes((images / "photo8.png").read_bytes()[:100])
    (images / "notes.txt").write_text("not an image")
    return images


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _infer(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["infer", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def _reference(path: Path) -> np.ndarray:
    """The PyTorch reference restoration of a file, clamped: what infer must have written."""
    model = load_model(default_weights("denoise"))
    with torch.inference_mode():
        return from_tensor(restore(model, to_tensor(read_image(path).pixels)))


def test_folder_with_a_corrupt_file(folder: Path, tmp_path: Path):
    before = _hashes(folder)
    code, summary = _infer("-i", str(folder), "-o", str(tmp_path / "out"), "--task", "denoise")
    assert code == 1
    assert [Path(f["input"]).name for f in summary["failed"]] == ["corrupt.png"]
    assert "Cannot decode" in summary["failed"][0]["error"]
    assert sorted(Path(r["output"]).name for r in summary["restored"]) == ["photo16_denoise.png",
                                                                           "photo8_denoise.png"]
    assert _hashes(folder) == before  # inputs untouched, nothing added next to them
    for name, dtype, bit_depth in (("photo8", np.uint8, 8), ("photo16", np.uint16, 16)):
        written = tmp_path / "out" / f"{name}_denoise.png"
        assert cv2.imread(str(written), cv2.IMREAD_UNCHANGED).dtype == dtype
        restored = read_image(written)
        assert restored.bit_depth == bit_depth
        expected = _reference(folder / f"{name}.png")
        assert np.abs(restored.pixels - expected).max() <= 0.5 / (2**bit_depth - 1) + 1e-6


def test_text_summary_names_the_failure(folder: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["infer", "-i", str(folder / "corrupt.png"),
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "restored 0 of 1 images" in result.stdout
    assert "corrupt.png: Cannot decode" in result.stdout


def test_refuses_to_overwrite_inputs(folder: Path):
    before = _hashes(folder)
    result = CliRunner().invoke(main, ["infer", "-i", str(folder), "-o", str(folder), "--suffix", ""])
    assert result.exit_code != 0
    assert "would overwrite the input" in result.output
    assert _hashes(folder) == before


def test_a_checkpoint_names_its_task_or_none_is_assumed(folder: Path, tmp_path: Path):
    """The demo weights record their task (sr); the same tensors re-saved as the authors save them
    record none and fit several 3-channel tasks: labelled `restored`, not silently `denoise`; a --task
    that contradicts the record is refused."""
    from mirnet_ref.checkpoint import save_checkpoint

    photo = folder / "photo8.png"
    code, summary = _infer("-i", str(photo), "-o", str(tmp_path / "sr"), "--checkpoint",
                           str(default_weights("sr")))
    assert (code, summary["task"]) == (0, "sr")
    assert Path(summary["restored"][0]["output"]).name == "photo8_sr.png"

    bare = save_checkpoint(load_model(default_weights("denoise")), tmp_path / "bare.pth")
    code, summary = _infer("-i", str(photo), "-o", str(tmp_path / "bare"), "--checkpoint", str(bare))
    assert (code, summary["task"]) == (0, "restored")
    written = read_image(tmp_path / "bare" / "photo8_restored.png")
    assert np.abs(written.pixels - _reference(photo)).max() <= 0.5 / 255 + 1e-6

    result = CliRunner().invoke(main, ["infer", "-i", str(photo), "-o", str(tmp_path / "wrong"),
                                       "--checkpoint", str(default_weights("denoise")), "--task", "enhance"])
    assert result.exit_code != 0
    assert "was trained for 'denoise', not 'enhance'" in " ".join(result.output.split())
    assert not (tmp_path / "wrong").exists()


def test_tiled_output_is_close_to_untiled(tmp_path: Path):
    write_image(tmp_path / "in" / "photo.png", _noisy_photo(96, 80), 16)
    outputs = {}
    for tile in ("0", "48"):
        code, summary = _infer("-i", str(tmp_path / "in"), "-o", str(tmp_path / f"tile{tile}"),
                               "--tile", tile, "--overlap", "16")
        assert code == 0
        outputs[tile] = read_image(summary["restored"][0]["output"]).pixels
    assert summary["tiling"] == "tiles up to 48x48, overlap 16"
    assert psnr(outputs["48"], outputs["0"]) >= 40.0


def test_onnx_model_runs_on_onnx_runtime_with_its_metadata(folder: Path, tmp_path: Path):
    from export.network import load_network
    from export.onnx_export import export_onnx

    network, spec = load_network(default_weights("denoise"), "denoise")
    model = export_onnx(network, spec, tmp_path / "denoise.onnx")
    code, summary = _infer("-i", str(folder / "photo16.png"), "-o", str(tmp_path / "out"),
                           "--model", str(model))
    assert code == 0
    assert (summary["task"], summary["scale"], summary["backend"]) == ("denoise", 1, "onnxruntime-cpu")
    restored = read_image(summary["restored"][0]["output"])
    assert restored.bit_depth == 16
    assert np.abs(restored.pixels - _reference(folder / "photo16.png")).max() <= 1.5 / 65535


@pytest.mark.parametrize("backend", ["ort", "torch"])
def test_sr_checkpoint_with_in_graph_upscaling_tiles_on_the_scaled_grid(folder: Path, tmp_path: Path,
                                                                         backend: str):
    code, summary = _infer("-i", str(folder / "photo8.png"), "-o", str(tmp_path / "out"), "--task", "sr",
                           "--scale", "2", "--tile", "24", "--overlap", "8", "--ext", "png",
                           "--backend", backend)
    assert code == 0
    (row,) = summary["restored"]
    assert (row["size"], row["output_size"], summary["scale"]) == ("48x40", "96x80", 2)
    assert Path(row["output"]).name == "photo8_sr.png"
    assert read_image(row["output"]).pixels.shape == (80, 96, 3)
