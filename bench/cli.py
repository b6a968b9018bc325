"""`mirnet parity`: an artifact against the PyTorch FP32 reference (`mirnet-bench` is in latency_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import format_resolution, parse_resolutions

from .parity import THRESHOLDS, ParityCase, format_table, rows_to_dict, run_parity


def parity_cases(task: str, resolutions: list[tuple[int, int]], images: int,
                 sr_scale: int) -> list[ParityCase]:
    """Built-in held-out photographs at each resolution, degraded for the task (seeded).

    For a graph that upsamples inside (`sr_scale` > 1) the input is the bicubic-reduced image
    and the resolution names the output size.
    """
    from mirnet_ref.datasets import builtin_images, image_at_resolution
    from mirnet_ref.degradations import bicubic_resize, degrade_pair, make_degradation

    degradation = make_degradation(task)
    cases = []
    for width, height in resolutions:
        for index, (name, photo) in enumerate(builtin_images("heldout")[:images]):
            if sr_scale > 1:
                out_w, out_h = width // sr_scale * sr_scale, height // sr_scale * sr_scale
                clean = image_at_resolution(photo, out_w, out_h)
                degraded = bicubic_resize(clean, clean.shape[0] // sr_scale, clean.shape[1] // sr_scale)
            else:
                rng = np.random.default_rng((2020, index))
                degraded, clean = degrade_pair(degradation, image_at_resolution(photo, width, height), rng)
            batch = np.ascontiguousarray(degraded.transpose(2, 0, 1)[None], dtype=np.float32)
            cases.append(ParityCase(name, format_resolution((width, height)), batch, clean))
    return cases


@click.command()
@click.option("--onnx", "artifact", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The artifact: an ONNX model (FP32, FP16 or INT8 Q/DQ) or an engine with its manifest.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="The PyTorch checkpoint it was exported from (default: the task's demo weights).")
@click.option("--res", default="256,720p", show_default=True, help="Resolutions, comma-separated.")
@click.option("--images", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Held-out photographs per resolution.")
@click.option("--precision", type=click.Choice(sorted(THRESHOLDS)),
              help="Thresholds to apply (default: the artifact's own precision).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def parity(artifact: str, checkpoint: str | None, res: str, images: int, precision: str | None,
           as_json: bool) -> None:
    """Compare an exported artifact with the PyTorch FP32 reference on real images.

    Reports per resolution: PSNR/SSIM and max |error| against the reference output,
    NaN/Inf counts, the task PSNR (vs the clean image) of both and its drop, and
    pass/fail against the precision's thresholds. Exits 1 when a resolution fails.

    \b
    Examples:
      mirnet parity --onnx denoise.fp16.onnx --res 256,720p,1080p
      mirnet parity --onnx model.onnx --checkpoint model_denoising.pth --json
    """
    from engines.infer import artifact_metadata
    from engines.runners import TorchRunner, as_polygraphy_runner, open_runner
    from export.cli import mirnet_network
    from export.graph import DeploymentGraph
    from mirnet_ref.weights import default_weights

    metadata = artifact_metadata(Path(artifact))
    if not metadata:
        raise UserError(f"{artifact} carries no mirnet metadata (task, scale, precision), and for an engine "
                        "the ONNX model its manifest names is gone: run parity on the ONNX model, or rebuild "
                        "the engine from it.")
    task = metadata.get("task", "denoise")
    precision = precision or metadata.get("precision", "fp32").split("-")[0]
    checkpoint_path = Path(checkpoint) if checkpoint else default_weights(task)
    network, spec = mirnet_network(checkpoint_path, task)
    exported_from = metadata.get("checkpoint_sha256")
    if exported_from and exported_from != spec.checkpoint_sha256:
        raise UserError(f"{artifact} was exported from a checkpoint with sha256 {exported_from[:12]}..., "
                        f"not from {checkpoint_path} ({spec.checkpoint_sha256[:12]}...): pass the matching "
                        "--checkpoint, or re-export.")
    sr_scale = int(metadata.get("scale", "1")) // spec.scale
    cases = parity_cases(task, parse_resolutions(res), images, sr_scale)
    reference = TorchRunner(DeploymentGraph(network, spec, sr_scale), name="pytorch-fp32")
    with open_runner(artifact) as runner:
        rows = run_parity(as_polygraphy_runner(reference), as_polygraphy_runner(runner), cases, precision)
    report = {"artifact": artifact, "checkpoint": str(checkpoint_path), "task": task, "precision": precision,
              "thresholds": THRESHOLDS[precision], "passed": all(r.passed for r in rows),
              "results": rows_to_dict(rows)}
    click.echo(json.dumps(report, indent=2) if as_json else format_table(rows, precision))
    if not report["passed"]:
        raise SystemExit(1)

