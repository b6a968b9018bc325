"""The picture `make demo` ends with: noisy | restored | clean, and the restoration really restores."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from calibration.dataset import build_calibration_set
from mirnet_ref.images import read_image
from pipeline.demo import ENGINES_JSON, GAP, main, side_by_side


def test_side_by_side_picture_and_summary(tmp_path: Path):
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

    # `summary` reads what `engines` listed (the export stands for an engine); the last one restores.
    parity = {"passed": True, "results": [{"resolution": "256x256", "psnr_vs_reference_db": 61.5,
                                           "task_drop_db": 0.004}]}
    # An INT8 entry names its calibration set, and the summary says how large it was.
    calibration = tmp_path / "calib" / "demo.npz"
    build_calibration_set("denoise", calibration, count=2, crop=64)
    listed = {"int8": {"engine": str(model), "backend": "ort", "steps": {}, "parity": parity,
                       "calibration_set": str(calibration)}}
    (tmp_path / ENGINES_JSON).write_text(json.dumps(listed))
    summary = CliRunner().invoke(main, ["summary", "--output-dir", str(tmp_path)])
    assert summary.exit_code == 0, summary.output
    assert "int8 engine (ort): parity pass (256x256 61.5 dB vs PyTorch, task drop +0.004 dB)" in (
        summary.output)
    assert f"calibrated on {calibration} (2 crops of 64x64)" in summary.output
    assert f"-> restored {result['restored_psnr_db']:.2f} dB by denoise.fp32.onnx" in summary.output
    assert read_image(tmp_path / "denoise_side_by_side.png").pixels.shape[:2] == (300, 3 * 451 + 2 * GAP)
    (tmp_path / ENGINES_JSON).write_text("{}")
    empty = CliRunner().invoke(main, ["summary", "--output-dir", str(tmp_path)])
    assert "lists no engine" in str(empty.exception)
