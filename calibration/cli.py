"""`mirnet calibrate` (a calibration set) and `mirnet quantize` (an INT8 Q/DQ model from an FP32 ONNX)."""

from __future__ import annotations

import json

import click

from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_ref.tasks import TASKS

from .dataset import DEFAULT_COUNT, DEFAULT_CROP, MAX_COUNT, default_calibration_set, manifest_path
from .mixed_precision import DEFAULT_BUDGET_DB, DEFAULT_EVAL_SAMPLES, SCREEN_CROP
from .quantize import DEFAULT_CACHE_DIR, HIGH_PRECISIONS, METHODS, TARGETS, median_cpu_ms


@click.command()
@click.option("--task", type=click.Choice(TASKS), required=True,
              help="The task's degradation is applied to every crop (a denoiser calibrates on noisy inputs).")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of clean photographs (default: the built-in training photographs).")
@click.option("--count", type=click.IntRange(1, MAX_COUNT), default=DEFAULT_COUNT, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=DEFAULT_CROP, show_default=True,
              help="Square crop side in pixels: deployment-like, and a multiple of 4.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="The set (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def calibrate(task: str, images_dir: str | None, count: int, crop: int, seed: int, output: str,
              as_json: bool) -> None:
    """Build a calibration set: seeded, degraded crops for TASK, with a JSON manifest beside it.

    The manifest (OUTPUT with .json) records the degradation, every source file and its
    sha256, every crop and the sha256 of the .npz. Samples are stored and read one at a
    time, so large sets never live in memory.

    \b
    Examples:
      mirnet calibrate --task denoise -o artifacts/calibration/denoise.npz
      mirnet calibrate --task enhance --images ~/photos --count 128 --crop 512 -o enhance.npz
      mirnet calibrate --task defocus -o defocus.npz     # 6-channel dual-pixel views, RGB targets
    """
    from .dataset import build_calibration_set

    if not output.endswith(".npz"):
        raise UserError(f"--output {output}: a calibration set is an .npz file (its manifest gets .json).")
    check_writable(output, "--output")
    manifest = build_calibration_set(task, output, images_dir=images_dir, count=count, crop=crop, seed=seed,
                                     progress=not as_json)
    if as_json:
        click.echo(manifest.to_json())
        return
    click.echo(f"Wrote {output}: {count} crops {crop}x{crop} from {len(manifest.sources)} image(s), "
               f"degradation {manifest.degradation}")
    click.echo(f"manifest: {manifest_path(output)}")


@click.command()
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The FP32 ONNX model (`mirnet export`).")
@click.option("--target", type=click.Choice(TARGETS), required=True,
              help="tensorrt: symmetric Q/DQ for TensorRT's explicit quantization; cpu: ONNX Runtime's "
                   "QLinearConv layout.")
@click.option("--calib", "calibration", type=click.Path(exists=True, dir_okay=False),
              help="Calibration set (.npz from `mirnet calibrate`); default: the task's built-in set.")
@click.option("--task", type=click.Choice(TASKS),
              help="Task of the default set (default: the ONNX metadata's).")
@click.option("--method", type=click.Choice(sorted(METHODS)), default="minmax", show_default=True)
@click.option("--high-precision", type=click.Choice(HIGH_PRECISIONS), default="fp16", show_default=True,
              help="tensorrt: precision of everything outside the INT8 Q/DQ pairs.")
@click.option("--budget-db", type=click.FloatRange(min=0), default=DEFAULT_BUDGET_DB, show_default=True,
              help="Largest task PSNR drop vs FP32 allowed (the mean of each sample's drop, a gain "
                   "counting at most half the budget): the most sensitive layers stay in high precision "
                   "until it holds.")
@click.option("--no-budget", is_flag=True, help="Quantize every layer (plain calibration, no search).")
@click.option("--keep", "keep_nodes", multiple=True, metavar="NODE",
              help="With --no-budget: keep this node in high precision (repeatable).")
@click.option("--op-type", "op_types", multiple=True, metavar="OP",
              help="Quantize only these op types (repeatable; default: the target's DEFAULT_OP_TYPES).")
@click.option("--subpixel/--no-subpixel", default=None,
              help="Rewrite stride-2 ConvTranspose as Conv + DepthToSpace first (default: on for cpu).")
@click.option("--eval-samples", type=click.IntRange(min=1), default=DEFAULT_EVAL_SAMPLES, show_default=True,
              help="Calibration samples the PSNR budget is measured on.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=str(DEFAULT_CACHE_DIR),
              show_default=True, help="Calibration ranges are cached here.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def quantize(onnx_path: str, target: str, calibration: str | None, task: str | None, method: str,
             high_precision: str, budget_db: float, no_budget: bool, keep_nodes: tuple[str, ...],
             op_types: tuple[str, ...], subpixel: bool | None, eval_samples: int, cache_dir: str, output: str,
             as_json: bool) -> None:
    """Quantize an FP32 ONNX model to INT8 Q/DQ for TensorRT or for CPUs, within a PSNR budget.

    By default the whole network is quantized, its task PSNR drop against FP32 measured on
    calibration samples, and, if over --budget-db, the layers that hurt most alone are kept
    in high precision until the budget holds. The report lists them, the drop before and
    after, and a quick CPU latency against FP32.

    \b
    Examples:
      mirnet quantize --onnx denoise.fp32.onnx --target tensorrt -o denoise.int8-tensorrt.onnx
      mirnet quantize --onnx denoise.fp32.onnx --target cpu --calib set.npz -o denoise.int8-cpu.onnx
      mirnet quantize --onnx m.onnx --target cpu --no-budget --method percentile -o m.int8.onnx
    """
    from .dataset import CalibrationSet
    from .mixed_precision import search_mixed_precision
    from .quantize import quantizable_metadata, quantize_onnx

    if keep_nodes and not no_budget:
        raise UserError("--keep chooses layers by hand; it goes with --no-budget (the budget search "
                        "chooses them otherwise).")
    check_writable(output, "--output")
    check_writable(cache_dir, "--cache-dir", folder=True)
    metadata = quantizable_metadata(onnx_path)  # a file that cannot be quantized costs no calibration work
    recorded = metadata.get("task")
    if task and recorded and task != recorded:
        raise UserError(f"--task {task} contradicts {onnx_path}, exported for {recorded}: its calibration "
                        f"and PSNR budget need {recorded} samples. Drop --task, or pass the model exported "
                        f"for {task}.")
    task = task or recorded
    if calibration is None:
        if task is None:
            raise UserError(f"{onnx_path} records no task: pass --task or a --calib set.")
        calibration = str(default_calibration_set(task))
    common = {"target": target, "calibration": calibration, "method": method,
              "high_precision": high_precision, "cache_dir": cache_dir, "subpixel": subpixel,
              "op_types": op_types or None}
    if no_budget:
        report = quantize_onnx(onnx_path, output, exclude_nodes=keep_nodes, **common).to_dict()
        search = None
    else:
        search = search_mixed_precision(onnx_path, output, budget_db=budget_db, eval_samples=eval_samples,
                                        progress=not as_json, **common)
        report = search.quantize.to_dict()
        for warning in search.warnings:  # on stderr in --json mode too, where it is also in the report
            click.echo(f"WARNING: {warning}", err=True)
    with CalibrationSet(calibration) as calib:
        batch = next(calib.inputs())
    result = {**report, "mixed_precision": _search_summary(search),
              "cpu_ms": {"fp32": median_cpu_ms(onnx_path, batch), "int8": median_cpu_ms(output, batch),
                         "input": "x".join(map(str, batch.shape))}}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print_report(result)


def _search_summary(search) -> dict | None:
    if search is None:
        return None
    summary = search.to_dict()
    del summary["quantize"]
    summary["sensitivity"] = summary["sensitivity"][:10]  # the 10 most sensitive units (layers first)
    return summary


def _print_report(result: dict) -> None:
    cached = ", cached ranges" if result["ranges_cached"] else ""
    click.echo(f"Wrote {result['output']} (int8-{result['target']}, {result['method']}, "
               f"{len(result['quantized_layers'])} convs quantized; calibration {result['calibration_set']}, "
               f"{result['calibration_samples']} samples{cached})")
    for name, count in result["rewrites"].items():
        click.echo(f"  rewrite {name}: {count} node(s)")
    search = result["mixed_precision"]
    if search:
        click.echo(f"  task PSNR drop vs FP32 ({search['fp32_task_psnr_db']:.2f} dB): all INT8 "
                   f"{search['full_int8']['drop_db']:+.3f} dB -> {search['final']['drop_db']:+.3f} dB "
                   f"(budget {search['budget_db']} dB)")
        if search["layer_count"]:
            click.echo(f"  ranking: {search['ranking_probes']} probes over {search['layer_count']} layers "
                       "(blocks first, then inside the most sensitive ones)")
        if search["screened"]:
            screened = ", ".join(f"{k} ({drop:+.3f} dB)" for k, drop in search["screened"])
            click.echo(f"  bracketing evaluations on {SCREEN_CROP}x{SCREEN_CROP} centre crops of the "
                       f"calibration samples, nodes kept (drop): {screened}")
        tried = ", ".join(f"{k} ({drop:+.3f} dB)" for k, drop in search["candidates_tried"])
        click.echo(f"  real evaluations, most sensitive nodes kept (drop on calibration samples): {tried}")
        click.echo("  search CPU seconds: " + ", ".join(f"{part} {seconds:.0f}"
                                                       for part, seconds in search["cpu_seconds"].items()))
        kept = search["kept_high_precision"]
        click.echo(f"  kept in high precision: {len(kept)} node(s)" + (":" if kept else ""))
        for name in kept:
            click.echo(f"    {name}")
    cpu = result["cpu_ms"]
    click.echo(f"  ONNX Runtime CPU at {cpu['input']}: FP32 {cpu['fp32']:.0f} ms, INT8 {cpu['int8']:.0f} ms "
               f"({cpu['fp32'] / cpu['int8']:.2f}x; quick median of 3 — `mirnet-bench` for real numbers)")
