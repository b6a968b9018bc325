"""The INT8 quality table: every demo model, its Q/DQ targets (tensorrt and cpu unless --targets adds
cpu-symmetric), plain calibration and PSNR budget.

Models already in `--folder` are reused (delete them to re-quantize); those calibrated on a
`--calib` set go to a subfolder named after the set's hash, so they never mix with the default set's.

    python -m bench.int8_report --md reports/int8.md
    python -m bench.int8_report --tasks denoise --targets cpu,cpu-symmetric --calib set.npz

For each task: the FP32 export of the demo weights, the task's default calibration set,
then per target a plain quantization (every layer INT8) and the budget search; each model
goes through the parity harness against PyTorch FP32 on the held-out built-in photographs
(never seen by training or calibration). Reports the task PSNR drop per resolution and
which layers the budget kept in high precision.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import click
import onnx

from calibration.quantize import TARGETS, TWIN_TARGETS, quantization_code_sha256
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256
from mirnet_deploy.resolutions import parse_resolutions
from mirnet_ref.tasks import FAMILY_NAMES

from .report import publish_rows

DEFAULT_FOLDER = Path("artifacts") / "int8-report"


MODES = ("plain", "budget")
#: The targets the table is made for unless --targets says otherwise (any of quantize.TARGETS may be).
DEFAULT_TARGETS = ("tensorrt", "cpu")


def _fp32_export(task: str, folder: Path, checkpoint: Path | None, arch: str | None,
                 fp32: Path | None) -> tuple[Path, object, object]:
    """The checkpoint's network and its FP32 export (`fp32` when given: that file, made from it)."""
    from export.network import load_network
    from export.onnx_export import export_onnx
    from mirnet_ref.weights import default_weights

    network, spec = load_network(checkpoint or default_weights(task, arch), task, arch)
    path = fp32 or folder / f"{task}-{spec.checkpoint_sha256[:12]}.fp32.onnx"
    if not path.is_file():
        export_onnx(network, spec, path)
    return path, network, spec


def _int8_name(fp32: Path, target: str, mode: str, calibration: Path, budget_db: float) -> str:
    """The INT8 file's name, keyed on what makes it: the quantization code, the calibration set and, for
    a budget model, the budget. A file that older code, another set or another budget made is made
    again, not silently reused (as `mirnet-bench` keys its INT8 files)."""
    key = hashlib.sha256(f"{quantization_code_sha256()}:{file_sha256(calibration)}".encode())
    if mode == "budget":
        key.update(f":{budget_db!r}".encode())
    return f"{fp32.stem.removesuffix('.fp32')}.int8-{target}-{mode}-{key.hexdigest()[:8]}.onnx"


def task_rows(task: str, resolutions: list[tuple[int, int]], budget_db: float, folder: Path, *,
              checkpoint: Path | None = None, arch: str | None = None, fp32: Path | None = None,
              calibration: Path | None = None, modes: tuple[str, ...] = MODES,
              targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[dict]:
    """One row per (target, mode) for `task`: drops per resolution, layers kept and, for a budget
    model made in this run, the search's real evaluations (layers kept, calibration-sample drop)
    and its CPU and wall seconds (process CPU time counts ONNX Runtime's threads).

    The model is `checkpoint` (any family; default: the task's demo weights of `arch`), calibrated
    on `calibration` (default: the task's built-in set). A target with a twin (`TWIN_TARGETS`) whose
    budget row came first starts its search from the layers the twin's kept, as the chain does.
    """
    from calibration.dataset import default_calibration_set
    from calibration.mixed_precision import search_mixed_precision
    from calibration.quantize import quantize_onnx
    from engines.runners import OrtRunner, TorchRunner, as_polygraphy_runner
    from export.graph import DeploymentGraph
    from export.onnx_file import read_metadata

    from .parity import parity_cases, run_parity

    fp32, network, spec = _fp32_export(task, folder, checkpoint, arch, fp32)
    calibration = calibration or default_calibration_set(task)
    cases = parity_cases(task, resolutions, images=2, sr_scale=1)
    reference = as_polygraphy_runner(TorchRunner(DeploymentGraph(network, spec), name="pytorch-fp32"))
    rows = []
    budget_kept: dict[str, list[str]] = {}  # target -> the layers its budget model kept
    for target in targets:
        for mode in modes:
            path = folder / _int8_name(fp32, target, mode, calibration, budget_db)
            click.echo(f"{task}: {target} target, {mode} ...", err=True)
            tried, seconds, probes = None, None, None  # the search's trail and cost, when it runs here
            if path.is_file():  # made by an earlier run: the layers it kept are in its metadata
                kept = json.loads(read_metadata(onnx.load(path, load_external_data=False))["quantization"])[
                    "excluded_nodes"]
            elif mode == "plain":
                kept = quantize_onnx(fp32, path, target=target, calibration=calibration).excluded_nodes
            else:
                wall, cpu = time.perf_counter(), time.process_time()
                search = search_mixed_precision(fp32, path, target=target, calibration=calibration,
                                                budget_db=budget_db,
                                                try_first=budget_kept.get(TWIN_TARGETS.get(target, ""), []))
                seconds = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
                kept, tried = search.kept_high_precision, search.candidates_tried
                probes = {"probes": search.ranking_probes, "layers": search.layer_count}
            if mode == "budget":
                budget_kept[target] = kept
            with OrtRunner(path, providers="cpu") as runner:
                parity = run_parity(reference, as_polygraphy_runner(runner), cases, "int8")
            rows.append({"task": task, "target": target, "mode": mode, "kept_high_precision": kept,
                         "search_tried": tried, "search_seconds": seconds, "search_ranking": probes,
                         "drops_db": {row.resolution: row.task_drop_db for row in parity},
                         "psnr_vs_fp32_db": {row.resolution: row.psnr_vs_reference_db for row in parity},
                         "task_psnr_fp32_db": {row.resolution: row.task_psnr_reference_db for row in parity}})
    return rows


def to_markdown(rows: list[dict], budget_db: float) -> str:
    resolutions = list(rows[0]["drops_db"])
    header = ("| task | target | calibration | layers kept FP16/FP32 | "
              + " | ".join(f"drop @{r} (dB)" for r in resolutions) + " | worst PSNR vs FP32 (dB) |")
    lines = [header, "|" + " --- |" * (5 + len(resolutions))]
    for row in rows:
        mode = "plain" if row["mode"] == "plain" else f"budget {budget_db} dB"
        drops = " | ".join(f"{row['drops_db'][r]:.3f}" for r in resolutions)
        worst = min(row["psnr_vs_fp32_db"].values())
        lines.append(f"| {row['task']} | {row['target']} | {mode} | {len(row['kept_high_precision'])} | "
                     f"{drops} | {worst:.1f} |")
    tried = [_search_trail(row) for row in rows if row.get("search_tried")]
    if tried:
        lines += ["", "Real evaluations of the budget search, nodes kept (calibration-sample drop):", *tried]
    kept = [f"- {row['task']} / {row['target']}: {', '.join(row['kept_high_precision'])}"
            for row in rows if row["mode"] == "budget" and row["kept_high_precision"]]
    if kept:
        lines += ["", "Nodes the budget kept in high precision:", *kept]
    return "\n".join(lines) + "\n"


def _search_trail(row: dict) -> str:
    """The real evaluations of a search made in this run, its ranking's probes and its cost."""
    ranking = row.get("search_ranking") or {}
    probes = (f"; ranking {ranking['probes']} probes over {ranking['layers']} layers"
              if ranking.get("layers") else "")
    return (f"- {row['task']} / {row['target']}: "
            + ", ".join(f"{k} ({drop:.3f} dB)" for k, drop in row["search_tried"]) + probes
            + f"; {row['search_seconds']['cpu']:.0f} CPU-s, {row['search_seconds']['wall']:.0f} s wall")


@click.command()
@click.option("--tasks", default="denoise,enhance,sr", show_default=True)
@click.option("--arch", type=click.Choice(FAMILY_NAMES),
              help="Whose demo weights for each task [default: the family that has them, MIRNet first].")
@click.option("--res", default="256,448x296", show_default=True,
              help="Held-out resolutions (448x296 fits both held-out photographs without enlarging them).")
@click.option("--targets", default=",".join(DEFAULT_TARGETS), show_default=True,
              help=f"Q/DQ targets, comma-separated, among {', '.join(TARGETS)}.")
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="plain (every layer INT8) and/or budget (the PSNR-budget search), comma-separated.")
@click.option("--budget-db", type=float, default=0.1, show_default=True)
@click.option("--calib", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The calibration set (.npz from `mirnet calibrate`) of the one task in --tasks "
                   "[default: each task's built-in set].")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_FOLDER,
              show_default=True, help="Where the ONNX models are written.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON here.")
def main(tasks: str, arch: str | None, res: str, targets: str, modes: str, budget_db: float,
         calib: Path | None, folder: Path, md_path: str | None, json_path: str | None) -> None:
    """INT8 task-PSNR drop of the demo models per Q/DQ target, plain and with the PSNR budget."""
    try:
        _report(tasks, arch, res, targets, modes, budget_db, calib, folder, md_path, json_path)
    except UserError as error:  # bad input (a set, a checkpoint): one line, no traceback
        raise click.ClickException(str(error)) from error


def _report(tasks: str, arch: str | None, res: str, targets: str, modes: str, budget_db: float,
            calib: Path | None, folder: Path, md_path: str | None, json_path: str | None) -> None:
    chosen_targets, chosen_modes = _choices(targets, TARGETS, "--targets"), _choices(modes, MODES, "--modes")
    chosen_targets = tuple(sorted(chosen_targets, key=TARGETS.index))  # a twin after the target it follows
    if calib:
        folder = folder / f"calib-{_calibration_for(calib, tasks)[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    resolutions = parse_resolutions(res)
    rows: list[dict] = []
    for task in tasks.split(","):  # published after each task: a run stopped later keeps what it made
        rows += task_rows(task, resolutions, budget_db, folder, arch=arch, calibration=calib,
                          modes=chosen_modes, targets=chosen_targets)
        publish_rows(to_markdown(rows, budget_db), rows, md_path, json_path)


def _calibration_for(calib: Path, tasks: str) -> str:
    """The sha256 of the set `calib`, refused unless it was built for the one task of `tasks`."""
    from calibration.dataset import CalibrationSet

    with CalibrationSet(calib) as calibration:
        if tasks.split(",") != [calibration.manifest.task]:
            raise click.BadParameter(f"{calib} was built for {calibration.manifest.task!r} inputs: pass it "
                                     f"with --tasks {calibration.manifest.task} alone.", param_hint="--calib")
        return calibration.sha256


def _choices(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    chosen = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise click.BadParameter(f"{text!r}: choose among {', '.join(allowed)}, comma-separated.",
                                 param_hint=option)
    return chosen


if __name__ == "__main__":
    main()
