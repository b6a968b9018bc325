"""The README's family table: cells as measured, cells that say why they were not, failures kept."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bench.family_table import Row, main, measure, official_rows, to_markdown


def _line(markdown: str, row_key: str) -> list[str]:
    row = next(r for r in official_rows() if r.key == row_key)
    label = f"| {', '.join(row.presets)} ({row.task}) |"
    line = next(line for line in markdown.splitlines() if label in line)
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_cells_show_their_numbers_their_setting_and_why_they_are_missing():
    table = {"mprnet:derain": {
        "size": {"parameters": 3637249, "macs_per_pixel": 2151216.6},
        "export": {"max_abs_error": 4.8e-7},
        "fp16": {"method": "graph", "psnr_db": 69.94, "resolution": "1920x1080"},
        "int8": {"drop_db": {"tensorrt": 0.0123, "cpu": 0.0456}, "resolution": "256x256"},
        "int8-budget": {"not_measured": "time (a | in the reason)"},
        "latency": {"error": "CalledProcessError: ..."},
    }}
    cells = _line(to_markdown(official_rows(), table), "mprnet:derain")
    assert cells[2:] == ["3,637,249", "2.15 M", "4.8e-07", "69.9 dB @1920x1080", "0.012 / 0.046 @256x256",
                         "not measured: time (a \\| in the reason)", "failed (see the JSON)"]
    assert _line(to_markdown(official_rows(), table), "mprnet:deblur")[4:] == ["not measured"] * 5


def test_fp16_cell_shows_inf_and_nan_in_the_output():
    table = {"mirnet:full": {"fp16": {"method": "graph", "psnr_db": float("nan"), "resolution": "1920x1080",
                                      "output_nonfinite": {"output": 12345}}}}
    assert _line(to_markdown(official_rows(), table), "mirnet:full")[5] == (
        "nan dB (12,345 inf/NaN in the output) @1920x1080")
    earlier = {"mprnet:derain": {"fp16": {"psnr_db": 69.49, "overflows": 0, "resolution": "512x512"}}}
    assert _line(to_markdown(official_rows(), earlier), "mprnet:derain")[5] == (
        "69.5 dB @512x512 (PyTorch method)")


def test_latency_cell_shows_the_median_and_the_best_run():
    table = {"mirnet:full": {"latency": {"p50_ms": {"fp32": 31080.4, "int8": 31744.0},
                                         "min_ms": {"fp32": 30807.0, "int8": 19340.2},
                                         "resolution": "512x512"}}}
    cells = _line(to_markdown(official_rows(), table), "mirnet:full")
    assert cells[-1] == "31,080 / 31,744 (best 30,807 / 19,340) @512x512"


def test_na_cells_of_earlier_versions_still_print():
    table = {"mirnetv2:defocus": {"fp16": {"na": "no built-in images for defocus (a 6-channel input)"}}}
    assert _line(to_markdown(official_rows(), table), "mirnetv2:defocus")[5] == "n/a"


def test_failures_become_the_cell():
    class Failing:
        def export(self):
            raise RuntimeError("ONNX Runtime refused the graph")

    cell = measure(Row("mprnet", ("derain",), "derain"), "export", {}, Failing())
    assert cell["error"] == "RuntimeError: ONNX Runtime refused the graph"
    assert len(cell["load_1min"]) == 2
    assert cell["cpu_seconds"] >= 0


def test_not_measured_stores_the_reason_for_the_chosen_cells_only(tmp_path):
    path = tmp_path / "families.json"
    result = CliRunner().invoke(main, ["--json", str(path), "--rows", "mprnet:deblur,mirnet:full",
                                       "--columns", "fp16,int8-budget", "--not-measured", "time"])
    assert result.exit_code == 0, result.output
    stored = json.loads(path.read_text())
    assert stored == {key: {"fp16": {"not_measured": "time"}, "int8-budget": {"not_measured": "time"}}
                      for key in ("mprnet:deblur", "mirnet:full")}
    refused = CliRunner().invoke(main, ["--json", str(path), "--columns", "speed", "--not-measured", "x"])
    assert refused.exit_code == 2
    assert "unknown column(s) speed" in refused.output
