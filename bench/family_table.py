"""The README's table of every model family and official preset: size, export error, FP16, INT8, latency.

    python -m bench.family_table --json reports/families.json --md reports/families.md
    python -m bench.family_table --rows mprnet:derain --columns latency --latency-res 512
    python -m bench.family_table --rows mprnet:deblur --columns int8-budget --not-measured "time: ..."

One row per network of the official presets (presets with the same tensors share a row, e.g.
MIRNet-v2's denoise/enhance/sr_x2/x3/x4), with seeded random weights: the preset files of
`mirnet-bench` (`artifacts/bench/preset-<family>-<preset>-seed0.pth`), so the latency run reuses
the same export. The columns, each measured by the toolkit's own stages:

    size      parameters and learned-conv MACs per pixel (`mirnet info`)
    export    max |error| of the FP32 ONNX against PyTorch on ONNX Runtime at odd sizes and batch 2
    fp16      emulated FP16 PSNR vs FP32 at --fp16-res: the shipped FP16 ONNX with FP16 storage emulated
              on ONNX Runtime (`mirnet audit-fp16 --method graph`), against the FP32 ONNX
    int8      task PSNR drop vs FP32 of INT8 Q/DQ for both targets (bench.int8_report), every layer
              INT8, at --int8-res, calibrated on `mirnet-bench`'s small set (4 crops of 128x128)
    int8-budget  the same within the PSNR budget --budget-db (the mixed-precision search)
    latency   one `mirnet-bench` run: ONNX Runtime CPU, FP32 and INT8 side by side at --latency-res

Cells are kept in the --json file by row and column together with the setting they were measured
at and the 1-minute load average before and after (the machine may be shared), so a run adds what
it measures to what earlier runs measured; the table names each setting. A cell that could not be
measured says why: `--not-measured REASON` stores that reason for the chosen rows and columns.
The numeric columns degrade built-in photographs for the row's task (`mirnet_ref.degradations`):
MIRNet-v2's 6-channel defocus model gets synthetic dual-pixel views.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.host_allocator import reexec_with_malloc_huge_pages
from mirnet_deploy.leftovers import scratch_folder
from mirnet_deploy.resolutions import format_resolution, parse_resolution

from .models import DEFAULT_CACHE_DIR, Artifacts, resolve_model

COLUMNS = ("size", "export", "fp16", "int8", "int8-budget", "latency")
#: (batch, height, width): odd heights and widths, and a batch of 2.
ODD_SHAPES = ((1, 45, 71), (2, 33, 30))
#: The presets sized for CPU demos and tests, not the authors'.
DEMO_PRESETS = ("small",)


@dataclass(frozen=True)
class Row:
    """One network: a family's official preset(s) with the same tensors, and the task it is judged on."""

    family: str
    presets: tuple[str, ...]
    task: str

    @property
    def key(self) -> str:
        return f"{self.family}:{self.presets[0]}"


def official_rows() -> list[Row]:
    """Every family's official presets from the registry, grouped by tensors."""
    from mirnet_ref.registry import FAMILIES

    rows = []
    for family in FAMILIES.values():
        seen: set[str] = set()
        for name, config in family.presets.items():
            if name in DEMO_PRESETS or name in seen:
                continue
            group = tuple(p for p in family.matching_presets(config) if p not in DEMO_PRESETS)
            seen.update(group)
            task = name.split("_")[0] if name.split("_")[0] in family.tasks else family.tasks[0]
            rows.append(Row(family.name, group, task))
    return rows


def family_of(row: Row):
    from mirnet_ref.registry import family_named

    return family_named(row.family)


class Measurer:
    """The row's preset as files (seeded weights, FP32 export), made once through `mirnet-bench`'s cache."""

    def __init__(self, row: Row, cache_dir: Path):
        self.row = row
        self.cache_dir = cache_dir
        self.model = resolve_model(row.presets[0], row.task, row.family)
        self.artifacts = Artifacts(self.model, cache_dir, log=lambda message: click.echo(message, err=True))

    def checkpoint(self) -> Path:
        return self.artifacts.for_run("torch", "fp32", (64, 64), 1)

    def fp32_onnx(self) -> Path:
        return self.artifacts.for_run("ort", "fp32", (64, 64), 1)

    def network(self):
        from export.network import load_network

        return load_network(self.checkpoint(), self.row.task, self.row.family)

    def size(self) -> dict[str, Any]:
        from mirnet_ref.model_costs import describe

        config = family_of(self.row).preset(self.row.presets[0])
        info = describe(config, [(512, 512)])
        return {"parameters": info["parameters"], "macs_per_pixel": info["macs"][0]["macs_per_pixel"]}

    def export(self) -> dict[str, Any]:
        from export.verify import verify_onnx

        network, spec = self.network()
        report = verify_onnx(self.fp32_onnx(), network, spec, shapes=ODD_SHAPES)
        report.raise_if_failed()
        return {"max_abs_error": report.max_abs_error, "shapes": [list(s) for s in ODD_SHAPES]}

    def fp16(self, resolution: str, images: int) -> dict[str, Any]:
        """The shipped FP16 ONNX emulated on ONNX Runtime (`export.fp16_emulation`) against the FP32 ONNX,
        on the first `images` held-out photographs."""
        from export.fp16_emulation import audit_graph_at_resolutions
        from mirnet_ref.datasets import builtin_images

        photos = [photo for _, photo in builtin_images("heldout")[:images]]
        (report,) = audit_graph_at_resolutions(self.fp32_onnx(), self.artifacts.onnx_variant("fp16"),
                                               [parse_resolution(resolution)], photos,
                                               task=self.row.task).values()
        return {"method": report.method, "psnr_db": report.psnr_db, "psnr_per_image": report.psnr_per_image,
                "output_nonfinite": report.nonfinite_outputs, "max_abs_error": report.max_abs_error,
                "resolution": resolution}

    def int8(self, resolution: str, mode: str, budget_db: float) -> dict[str, Any]:
        """Both targets' drops (`mode` plain: every layer INT8; budget: the search within `budget_db`)."""
        from .int8_report import task_rows

        rows = task_rows(self.row.task, [parse_resolution(resolution)], budget_db, self.cache_dir,
                         checkpoint=self.checkpoint(), arch=self.row.family, fp32=self.fp32_onnx(),
                         calibration=self.artifacts.calibration_set(), modes=(mode,))
        drops = {r["target"]: next(iter(r["drops_db"].values())) for r in rows}
        kept = {r["target"]: len(r["kept_high_precision"]) for r in rows}
        return {"drop_db": drops, "kept_high_precision": kept, "resolution": resolution,
                **({"budget_db": budget_db} if mode == "budget" else {})}

    def latency(self, resolution: str, iterations: int) -> dict[str, Any]:
        """One `mirnet-bench` run, FP32 and INT8 side by side; the command is kept with the numbers."""
        command = [str(Path(sys.executable).parent / "mirnet-bench"), "--arch", self.row.family,
                   "--model", self.row.presets[0], "--task", self.row.task, "--res", resolution,
                   "--backend", "ort", "--precision", "fp32,int8", "--warmup", "0",
                   "--min-iters", str(iterations), "--min-seconds", "0", "--cache-dir", str(self.cache_dir)]
        with scratch_folder("family-latency") as folder:
            report = folder / "latency.json"
            subprocess.run([*command, "--json", str(report)], check=True, stdout=sys.stderr)
            results = json.loads(report.read_text(encoding="utf-8"))["results"]
        return {"p50_ms": {r["precision"]: r["p50_ms"] for r in results},
                "min_ms": {r["precision"]: r["min_ms"] for r in results}, "resolution": resolution,
                "iterations": iterations, "command": " ".join(["mirnet-bench", *command[1:]])}


def measure(row: Row, column: str, settings: dict[str, Any], measurer: Measurer) -> dict[str, Any]:
    """The row's cell for `column`, with the load average around it; a stage's failure is kept as the
    cell (what failed and why), so the other columns still run."""
    click.echo(f"{row.key}: {column} ...", err=True)
    before = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    try:
        if column == "size":
            cell = measurer.size()
        elif column == "export":
            cell = measurer.export()
        elif column == "fp16":
            cell = measurer.fp16(settings["fp16_res"], settings["fp16_images"])
        elif column in ("int8", "int8-budget"):
            cell = measurer.int8(settings["int8_res"], "plain" if column == "int8" else "budget",
                                 settings["budget_db"])
        else:
            cell = measurer.latency(settings["latency_res"], settings["latency_iters"])
    except Exception as error:  # any stage's failure: ONNX Runtime and subprocess raise their own types
        cell = {"error": f"{type(error).__name__}: {error}"}
    return {**cell, "load_1min": [round(before, 1), round(os.getloadavg()[0], 1)],
            "cpu_seconds": round(_cpu_seconds() - cpu_before, 1)}


def _cpu_seconds() -> float:
    """User and system CPU time of this process and its finished children (all their threads)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _cell(cells: dict[str, Any], column: str) -> str:
    cell = cells.get(column)
    if cell is None:
        return "not measured"
    if "na" in cell:  # stored by earlier versions, which had no degradation for some tasks
        return "n/a"
    if "not_measured" in cell:
        return "not measured: " + cell["not_measured"].replace("|", "\\|")
    if "error" in cell:
        return "failed (see the JSON)"
    if column == "export":
        return f"{cell['max_abs_error']:.1e}"
    if column == "fp16":
        nonfinite = sum(cell.get("output_nonfinite", {}).values())
        overflow = f" ({nonfinite:,} inf/NaN in the output)" if nonfinite else ""
        method = "" if cell.get("method") == "graph" else " (PyTorch method)"  # cells of earlier versions
        return f"{cell['psnr_db']:.1f} dB{overflow} @{cell['resolution']}{method}"
    if column in ("int8", "int8-budget"):
        drops = cell["drop_db"]
        return f"{drops['tensorrt']:.3f} / {drops['cpu']:.3f} @{cell['resolution']}"
    if column == "latency":
        def pair(key: str) -> str:
            return " / ".join(f"{cell[key].get(p, float('nan')):,.0f}" for p in ("fp32", "int8"))

        text = pair("p50_ms")
        if "min_ms" in cell:  # one preempted run moves a 3-run median on shared cores; the best shows it
            text += f" (best {pair('min_ms')})"
        return f"{text} @{cell['resolution']}"
    return ""


def to_markdown(rows: list[Row], table: dict[str, dict[str, Any]]) -> str:
    lines = ["| family | preset(s) | parameters | MAC/pixel | export max \\|err\\| (odd sizes, batch 2) | "
             "FP16 emulated PSNR vs FP32 | INT8 drop plain, TensorRT / CPU target (dB) | "
             "INT8 drop within the budget, TensorRT / CPU target (dB) | CPU latency FP32 / INT8 (ms, ORT) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        cells = table.get(row.key, {})
        size = cells.get("size", {})
        lines.append(
            f"| {family_of(row).title} | {', '.join(row.presets)} ({row.task}) | "
            f"{size.get('parameters', 0):,} | {size.get('macs_per_pixel', 0) / 1e6:.2f} M | "
            + " | ".join(_cell(cells, column) for column in COLUMNS[1:]) + " |")
    return "\n".join(lines) + "\n"


def _read(json_path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}


def _store(json_path: Path, row: str, column: str, cell: dict[str, Any]) -> None:
    """Merge one cell into the file as soon as it is measured; runs measuring other rows side by side
    each add theirs (read and written under a lock)."""
    from filelock import FileLock

    with FileLock(f"{json_path}.lock"):
        table = _read(json_path)
        table.setdefault(row, {})[column] = cell
        atomic_write_text(json_path, json.dumps(table, indent=2) + "\n")


@click.command()
@click.option("--rows", "row_keys", help="Comma-separated rows (family:preset, e.g. mprnet:derain) [all].")
@click.option("--columns", default=",".join(COLUMNS), show_default=True)
@click.option("--fp16-res", default="1080p", show_default=True)
@click.option("--fp16-images", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Held-out photographs the fp16 column is judged on (the worst counts).")
@click.option("--int8-res", default="256", show_default=True)
@click.option("--budget-db", type=float, default=0.1, show_default=True,
              help="The int8-budget column's PSNR budget (the mixed-precision search; slow).")
@click.option("--latency-res", default="512", show_default=True)
@click.option("--latency-iters", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE_DIR,
              show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The cells by row and column; read first, so runs add up.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--not-measured", "reason", help="Measure nothing: store this reason as the chosen cells.")
def main(row_keys: str | None, columns: str, fp16_res: str, fp16_images: int, int8_res: str, budget_db: float,
         latency_res: str, latency_iters: int, cache_dir: Path, json_path: Path,
         md_path: Path | None, reason: str | None) -> None:
    """Measure the chosen rows and columns, merge them into --json, print the Markdown table."""
    rows = official_rows()
    wanted = row_keys.split(",") if row_keys else [row.key for row in rows]
    if set(wanted) - {row.key for row in rows}:
        raise click.BadParameter(f"choose from {', '.join(row.key for row in rows)}", param_hint="--rows")
    chosen = [row for row in rows if row.key in wanted]
    settings = {"fp16_res": format_resolution(parse_resolution(fp16_res)), "fp16_images": fp16_images,
                "int8_res": format_resolution(parse_resolution(int8_res)), "budget_db": budget_db,
                "latency_res": format_resolution(parse_resolution(latency_res)),
                "latency_iters": latency_iters}
    chosen_columns = [c for c in columns.split(",") if c]
    unknown = sorted(set(chosen_columns) - set(COLUMNS))
    if unknown:
        raise click.BadParameter(f"unknown column(s) {', '.join(unknown)}: choose from {', '.join(COLUMNS)}",
                                 param_hint="--columns")
    if "fp16" in chosen_columns and not reason and __name__ == "__main__":
        # the emulation runs ONNX Runtime without its arena; only the command's own process restarts
        reexec_with_malloc_huge_pages()
    for row in chosen:
        if reason:
            for column in chosen_columns:
                _store(json_path, row.key, column, {"not_measured": reason})
            continue
        measurer = Measurer(row, cache_dir)
        for column in chosen_columns:
            _store(json_path, row.key, column, measure(row, column, settings, measurer))
    markdown = to_markdown(rows, _read(json_path))
    click.echo(markdown)
    if md_path:
        atomic_write_text(md_path, markdown)


if __name__ == "__main__":
    main()
