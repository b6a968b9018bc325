"""NaN/Inf outputs are reported with the resolution and the precision, never written as an image:
an FP16 graph forced to overflow (`bad_inputs.force_fp16_overflow`) through `mirnet parity` and
`mirnet infer`."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from bad_inputs import cli, force_fp16_overflow, hashes

from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.images import write_image


@pytest.fixture(scope="module")
def overflowing_fp16(tmp_path_factory) -> Path:
    from export.network import load_network
    from export.onnx_export import export_onnx
    from export.precision import convert_to_fp16
    from mirnet_ref.weights import default_weights

    folder = tmp_path_factory.mktemp("overflow")
    fp32 = export_onnx(*load_network(default_weights("denoise"), "denoise"), folder / "denoise.fp32.onnx")
    fp16 = convert_to_fp16(fp32, folder / "denoise.fp16.onnx")
    forced = folder / "denoise.fp16-overflow.onnx"
    onnx.save(force_fp16_overflow(onnx.load(fp16)), forced)
    return forced


def test_parity_reports_fp16_overflow_with_resolution_and_fails(overflowing_fp16: Path):
    code, output = cli("parity", "--onnx", str(overflowing_fp16), "--res", "48x40", "--images", "1", "--json")
    report = json.loads(output[output.index("{"):])
    assert code == 1
    (row,) = report["results"]
    assert (report["precision"], row["resolution"], row["passed"]) == ("fp16", "48x40", False)
    assert row["nonfinite"] == row["infinite"] > 0
    assert f"0 NaN and {row['infinite']} Inf values in the fp16 output at 48x40" in row["failures"][0]


def test_infer_refuses_to_write_an_output_with_inf(overflowing_fp16: Path, tmp_path: Path):
    photo = tmp_path / "in" / "photo.png"
    write_image(photo, image_at_resolution(builtin_images("heldout")[0][1], 40, 32))
    before = hashes(photo.parent)
    code, output = cli("infer", "-i", str(photo), "-o", str(tmp_path / "out"), "--model",
                       str(overflowing_fp16))
    assert code == 1
    assert "photo.png (40x32, fp16)" in output
    assert "infinite values" in output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert hashes(photo.parent) == before
