"""The picture `make demo` ends with: noisy | restored | clean, and the restoration really restores."""

from __future__ import annotations

from pathlib import Path

from mirnet_ref.images import read_image
from pipeline.demo import GAP, side_by_side


def test_side_by_side_picture(tmp_path: Path):
    from export.network import load_network
    from export.onnx_export import export_onnx
    from mirnet_ref.weights import default_weights

    network, spec = load_network(default_weights("denoise"), "denoise")
    model = export_onnx(network, spec, tmp_path / "denoise.fp32.onnx")
    result = side_by_side(model, tmp_path / "out" / "side.png")
    picture = read_image(tmp_path / "out" / "side.png")
    assert picture.bit_depth == 8
    height, width = picture.pixels.shape[:2]
    assert (height, width) == (300, 3 * 451 + 2 * GAP)  # chelsea is 451x300
    assert result["restored_psnr_db"] > result["noisy_psnr_db"] + 8  # 20.2 -> 31.9 dB
