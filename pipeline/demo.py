"""`make demo`'s own steps: the engines it built, listed for `mirnet-bench`; then the photo and the summary.

    python -m pipeline.demo engines --output-dir demo-output     # engines.json and engines.txt
    mirnet-bench --engine-list demo-output/engines.txt --res 256,512 --json latency.json
    python -m pipeline.demo summary --bench demo-output/latency.json --output-dir demo-output
    python -m pipeline.demo engines --task enhance --arch mirnetv2    # another family's demo weights

The Makefile runs the pipeline's own verbs first (`mirnet build --task denoise --precision
fp32,fp16,int8`), so a user sees exactly the commands they would type. `engines` asks the same
chain for the engines (every step is cached, so nothing is rebuilt; `--calib` must name the set
the build used, or INT8 would be quantized again) and records them with their parity in
`engines.json`, and their paths in `engines.txt`: `mirnet-bench --engine-list` then times exactly
those files, the ones parity checked (INT8: the runtime and Q/DQ form `auto` chose). `summary`
composes the picture (degraded | restored | clean, each labelled with its PSNR) with the last
engine, says which calibration set INT8 used, and points at the reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np

from mirnet_deploy.errors import UserError
from mirnet_ref.tasks import FAMILY_NAMES, TASKS

ENGINES_JSON = "engines.json"  # each precision's engine, backend, chain steps and parity
ENGINES_TXT = "engines.txt"  # their paths, one a line: what `mirnet-bench --engine` times
DEMO_IMAGE = "chelsea"  # held out from training and calibration
DEMO_SEED = 2020
GAP = 8  # white pixels between the panels


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """`text` in white on a dark band at the top left of a float RGB panel (8-bit: OpenCV draws on uint8)."""
    labelled = np.ascontiguousarray(np.round(np.clip(panel, 0, 1) * 255), dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, 0.5, 1)
    labelled[: height + baseline + 8, : width + 10] //= 3
    cv2.putText(labelled, text, (5, height + 4), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return labelled.astype(np.float32) / 255


def side_by_side(model_path: Path, output: Path, task: str = "denoise") -> dict[str, float | str]:
    """Restore the demo photograph degraded for `task` with the model file (engine or ONNX); write the
    comparison PNG."""
    from engines.runners import open_runner
    from mirnet_ref.datasets import builtin_images
    from mirnet_ref.degradations import degrade_pair, make_degradation
    from mirnet_ref.images import write_image
    from mirnet_ref.metrics import psnr

    photo = dict(builtin_images("heldout"))[DEMO_IMAGE]
    noisy, clean = degrade_pair(make_degradation(task), photo, np.random.default_rng(DEMO_SEED))
    with open_runner(model_path) as runner:
        restored = runner.run(noisy.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0)
    restored = np.clip(restored, 0.0, 1.0)
    scores = {"noisy_psnr_db": psnr(noisy, clean), "restored_psnr_db": psnr(restored, clean)}
    gap = np.ones((clean.shape[0], GAP, 3), np.float32)
    panels = [_label(noisy, f"degraded {scores['noisy_psnr_db']:.2f} dB"), gap,
              _label(restored, f"restored {scores['restored_psnr_db']:.2f} dB"), gap, _label(clean, "clean")]
    write_image(output, np.concatenate(panels, axis=1))
    return {**scores, "image": DEMO_IMAGE, "degradation": make_degradation(task).describe(),
            "model": str(model_path), "output": str(output)}


def _latency_lines(bench_json: Path) -> list[str]:
    report = json.loads(bench_json.read_text())
    lines = []
    for row in report["results"]:
        if row.get("p50_ms") is not None:
            lines.append(f"    {row['backend']:>8} {row['precision']:<18} {row['resolution']:>9}: "
                         f"p50 {row['p50_ms']:8.1f} ms, {row['mp_per_s']:.3f} MP/s, "
                         f"peak host {row['peak_host_mb']:.0f} MiB")
    return lines


def engines(precisions: tuple[str, ...], task: str = "denoise", arch: str | None = None,
            calibration: Path | None = None) -> dict[str, dict]:
    """The demo's engine per precision, from the chain `mirnet build --task` runs (cached); INT8 with the
    calibration set it was quantized with."""
    from engines.build import EngineSettings
    from mirnet_ref.weights import default_weights

    from .chain import ChainRequest, run_chain

    found = {}
    for precision in precisions:
        request = ChainRequest(task, default_weights(task, arch), precision, arch=arch,
                               calibration=calibration, engine=EngineSettings(progress=False))
        result = run_chain(request)
        found[precision] = {"engine": str(result.engine), "backend": result.backend,
                            "steps": {step.name: step.status for step in result.steps},
                            "parity": result.manifest.parity}
        calibrated = {step.details["calibration_set"] for step in result.steps
                      if step.name.startswith("int8")}
        if calibrated:
            found[precision]["calibration_set"] = calibrated.pop()  # every INT8 form shares the set
    return found


@click.group()
def main() -> None:
    """`make demo`'s steps after `mirnet build`: list the engines, then the photo and the summary."""


@main.command("engines")
@click.option("--task", type=click.Choice(TASKS), default="denoise", show_default=True)
@click.option("--arch", type=click.Choice(FAMILY_NAMES),
              help="The family whose demo weights for --task [default: the one that has them, MIRNet first].")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True,
              help="Engines to collect; the last one restores the demo photograph.")
@click.option("--calib", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The INT8 calibration set `mirnet build --calib` was given [default: the task's built-in "
                   "set, as there].")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True)
def list_engines(task: str, arch: str | None, precisions: str, calib: Path | None, output_dir: Path) -> None:
    """Write engines.json (each precision's engine and its parity) and engines.txt (the engine paths, one a
    line, in the same order: what `mirnet-bench --engine-list` times)."""
    from mirnet_deploy.atomic import atomic_write_text

    built = engines(tuple(precisions.split(",")), task, arch, calib)
    atomic_write_text(output_dir / ENGINES_JSON, json.dumps(built, indent=2) + "\n")
    atomic_write_text(output_dir / ENGINES_TXT, "".join(f"{engine['engine']}\n" for engine in built.values()))
    for precision, engine in built.items():
        click.echo(f"{precision:>4}: {engine['engine']} ({engine['backend']})")


@main.command("summary")
@click.option("--task", type=click.Choice(TASKS), default="denoise", show_default=True,
              help="The task the engines restore (as `engines` was given).")
@click.option("--bench", "bench_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="mirnet-bench JSON report to summarize.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Where `engines` wrote engines.json; the picture goes here too.")
def summary(task: str, bench_json: Path | None, output_dir: Path) -> None:
    """Write <task>_side_by_side.png with the last engine of engines.json; print where every report is."""
    built = _read_engines(output_dir / ENGINES_JSON)
    model_path = Path(list(built.values())[-1]["engine"])
    result = side_by_side(model_path, output_dir / f"{task}_side_by_side.png", task)
    click.echo("\n=== mirnet-deploy demo: summary ===")
    for precision, engine in built.items():
        rows = (engine["parity"] or {}).get("results", [])
        parity = ", ".join(f"{row['resolution']} {row['psnr_vs_reference_db']:.1f} dB vs PyTorch, "
                           f"task drop {row['task_drop_db']:+.3f} dB" for row in rows)
        verdict = "pass" if (engine["parity"] or {}).get("passed") else "FAIL"
        click.echo(f"  {precision:>4} engine ({engine['backend']}): parity {verdict} ({parity})")
        click.echo(f"       {engine['engine']}")
        if "calibration_set" in engine:
            click.echo(f"       calibrated on {_describe_set(Path(engine['calibration_set']))}")
    click.echo(f"  engines and their parity: {output_dir / ENGINES_JSON}")
    click.echo(f"  {result['image']} (held out), {result['degradation']['kind']}: "
               f"degraded {result['noisy_psnr_db']:.2f} dB -> restored {result['restored_psnr_db']:.2f} dB "
               f"by {model_path.name}")
    click.echo(f"  side by side (degraded | restored | clean): {result['output']}")
    if bench_json:
        click.echo(f"  latency ({bench_json}; also .md, .csv, .png beside it):")
        for line in _latency_lines(bench_json):
            click.echo(line)


def _describe_set(path: Path) -> str:
    """`<set> (8 crops of 384x384)`, from the set's manifest; the path alone when that is unreadable."""
    from calibration.dataset import manifest_path, read_manifest

    try:
        manifest = read_manifest(manifest_path(path))
    except UserError:
        return f"{path} (its manifest cannot be read)"
    return f"{path} ({manifest.count} crops of {manifest.crop}x{manifest.crop})"


def _read_engines(path: Path) -> dict[str, dict]:
    try:
        built = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({exc}): run `python -m pipeline.demo engines` first (make "
                        f"demo does).") from None
    if not isinstance(built, dict) or not built:
        raise UserError(f"{path} lists no engine: run `python -m pipeline.demo engines` again.")
    return built


if __name__ == "__main__":
    try:
        main()
    except UserError as error:  # one paragraph, no traceback
        raise SystemExit(f"Error: {error}") from None
