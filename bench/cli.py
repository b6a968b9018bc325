"""`mirnet parity`: an artifact against the PyTorch FP32 reference (`mirnet-bench` is in latency_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import parse_resolutions
from mirnet_ref.tasks import FAMILY_NAMES

from .parity import THRESHOLDS, format_table, parity_cases, rows_to_dict, run_parity


@click.command()
@click.option("--onnx", "artifact", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The artifact: an ONNX model (FP32, FP16 or INT8 Q/DQ) or an engine with its manifest.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="The PyTorch checkpoint (any family) it was exported from (default: the task's demo "
                   "weights).")
@click.option("--arch", type=click.Choice(FAMILY_NAMES),
              help="The family the checkpoint must hold; without --checkpoint, whose demo weights.")
@click.option("--res", default="256,720p", show_default=True, help="Resolutions, comma-separated.")
@click.option("--images", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Held-out photographs per resolution.")
@click.option("--precision", type=click.Choice(sorted(THRESHOLDS)),
              help="Thresholds to apply (default: the artifact's own precision).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def parity(artifact: str, checkpoint: str | None, arch: str | None, res: str, images: int,
           precision: str | None, as_json: bool) -> None:
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
    from export.graph import DeploymentGraph
    from export.network import load_network
    from mirnet_ref.weights import default_weights

    metadata = artifact_metadata(Path(artifact))
    if not metadata:
        raise UserError(f"{artifact} carries no mirnet metadata (task, scale, precision), and for an engine "
                        "the ONNX model its manifest names is gone: run parity on the ONNX model, or rebuild "
                        "the engine from it.")
    task = metadata.get("task", "denoise")
    precision = precision or metadata.get("precision", "fp32").split("-")[0]
    checkpoint_path = Path(checkpoint) if checkpoint else default_weights(task, arch)
    network, spec = load_network(checkpoint_path, task, arch)
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

