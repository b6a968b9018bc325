"""Click commands of the export stage, one per `mirnet` verb (`mirnet lint`, ...).

Each command is registered by name in `mirnet_deploy/cli.py` (SUBCOMMANDS) and imported
only when invoked, so keep module-level imports light: no torch here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import onnx

from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_ref.tasks import FAMILY_NAMES, TASKS
from mirnet_ref.weights import default_weights

from .lint import lint_onnx
from .onnx_file import DEFAULT_OPSET, OPSETS, op_counts, read_metadata

if TYPE_CHECKING:
    from .verify import VerifyReport

#: The task label of an export whose checkpoint records no task and fits several.
UNLABELLED_EXPORT_TASK = "denoise"

#: The --arch option of every verb that loads a checkpoint or a task's demo weights.
ARCH_HELP = ("mirnet, mprnet or mirnetv2: the family a --checkpoint must hold (an error if its tensors say "
             "otherwise); without --checkpoint, whose demo weights for --task [default: the family that has "
             "them, MIRNet first].")

#: How many op types the text summary lists (the JSON has them all).
SHOWN_OP_TYPES = 8


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lint(model: Path, as_json: bool) -> None:
    """Check MODEL (an .onnx file) against TensorRT's ONNX support, without TensorRT or a GPU.

    Works on FP32, FP16 and INT8 Q/DQ models. It checks the opset, graph I/O types,
    every op against TensorRT's operator table, Resize and Pad attributes, computed
    Resize scales, Q/DQ zero points and scales, and training leftovers. Exits with
    status 1 when there is any error; warnings alone exit 0.

    \b
    Examples:
      mirnet lint model.fp32.onnx
      mirnet lint model.int8-tensorrt.onnx --json > lint.json
    """
    report = lint_onnx(model)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.format_table())
        click.echo(report.summary())
    if not report.ok:
        click.get_current_context().exit(1)


@click.command("export")
@click.option(
    "--task",
    type=click.Choice(TASKS),
    help="Export the task's demo weights (of --arch); with --checkpoint, the label in the metadata, checked "
    "against the task the checkpoint records or its input channels imply (default: that task, else denoise).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="A MIRNet, MPRNet or MIRNet-v2 checkpoint (official or ours); the family is recognised "
    "from its keys, the architecture inferred from its tensors.",
)
@click.option("--arch", type=click.Choice(FAMILY_NAMES), help=ARCH_HELP)
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), required=True, help="The .onnx file to write."
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp16: FP16 graph with FP32 I/O and FP32 reductions/softmax.",
)
@click.option(
    "--opset",
    type=click.IntRange(min(OPSETS), max(OPSETS)),
    default=DEFAULT_OPSET,
    show_default=True,
    help="ONNX opset; TensorRT 10.0 (the JetPack 6 generation) documents up to 20.",
)
@click.option(
    "--scale",
    type=click.IntRange(2, 8),
    help="sr only: upsample bicubically by this factor inside the graph, so it takes the "
    "low-resolution image.",
)
@click.option(
    "--fp32-node",
    "fp32_nodes",
    multiple=True,
    metavar="NAME",
    help="fp16 only: also keep this ONNX node in FP32 (repeatable; names from the FP32 export).",
)
@click.option(
    "--subpixel-upsample",
    is_flag=True,
    help="Rewrite each stride-2 ConvTranspose as Conv + DepthToSpace (exact, more MACs): INT8 then "
    "quantizes it like any conv, where ONNX Runtime has no INT8 ConvTranspose.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(
    task: str | None,
    checkpoint: Path | None,
    arch: str | None,
    output: Path,
    precision: str,
    opset: int,
    scale: int | None,
    fp32_nodes: tuple[str, ...],
    subpixel_upsample: bool,
    as_json: bool,
) -> None:
    """Export a checkpoint (MIRNet, MPRNet, MIRNet-v2) to ONNX, lint it for TensorRT and verify it.

    The graph takes float32 NCHW RGB in [0, 1] named `input`, with dynamic batch, height and
    width (any size: it reflect-pads to the model's size multiple and crops back), and returns
    `output`, unclamped. Metadata records task, config, scale, precision and checkpoint hash.
    The file is written only after the ONNX checker, the TensorRT lint and the comparison with
    PyTorch on ONNX Runtime CPU (several shapes, max |error| per shape) pass.

    \b
    Examples:
      mirnet export --task denoise --output build/onnx/denoise.fp32.onnx
      mirnet export --task denoise --precision fp16 --output build/onnx/denoise.fp16.onnx
      mirnet export --checkpoint model_best.pth --task enhance -o enhance.onnx --json
      mirnet export --checkpoint model_deblurring.pth -o mprnet_deblur.onnx   # MPRNet's final stage
      mirnet export --task sr --scale 4 -o sr_x4.onnx      # takes the low-resolution image
      mirnet export --task denoise --subpixel-upsample -o denoise.subpixel.fp32.onnx  # for INT8
    """
    task = _checked_task(task, checkpoint, precision, scale, fp32_nodes)
    check_writable(output, "--output")  # before the export's minute of work, not after it
    from .network import load_network
    from .verified import export_verified

    weights = checkpoint or default_weights(task, arch)
    network, spec = load_network(weights, task, arch, fallback_task="")
    if not spec.task:  # a 3-channel checkpoint that records no task: label it, and say so
        spec = replace(spec, task=UNLABELLED_EXPORT_TASK)
        click.echo(f"Note: {Path(weights).name} records no task and fits several; the ONNX is labelled "
                   f"{UNLABELLED_EXPORT_TASK}, which picks `mirnet quantize`'s calibration data and parity's "
                   f"degradation. Pass --task to label it otherwise.", err=True)
    _check_scale(scale, spec.task)
    verification = export_verified(network, spec, output, precision=precision, opset=opset, scale=scale,
                                   fp32_nodes=fp32_nodes, subpixel_upsample=subpixel_upsample)
    model = onnx.load(output)
    counts = op_counts(model)
    result = {
        "output": str(output),
        "size_bytes": output.stat().st_size,
        "node_count": sum(counts.values()),
        "op_counts": counts,
        "metadata": read_metadata(model),
        "lint": lint_onnx(model).to_dict(),
        "verification": verification.to_dict(),
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_summary(result, verification)


def _checked_task(
    task: str | None, checkpoint: Path | None, precision: str, scale: int | None, fp32_nodes: tuple[str, ...]
) -> str | None:
    """The task label (None: the checkpoint's), after rejecting option combinations that mean nothing."""
    if task is None and checkpoint is None:
        raise UserError(
            f"Nothing to export: pass --task {'|'.join(TASKS)} (demo weights) or --checkpoint PATH."
        )
    if task is not None:  # else checked once the checkpoint says its task
        _check_scale(scale, task)
    if fp32_nodes and precision != "fp16":
        raise UserError("--fp32-node chooses nodes of the FP16 graph to keep in FP32; add --precision fp16.")
    return task


def _check_scale(scale: int | None, task: str) -> None:
    if scale and task != "sr":
        raise UserError(f"--scale upsamples inside the graph for super-resolution; it needs --task sr, "
                        f"not {task}.")


def _print_summary(result: dict[str, Any], verification: VerifyReport) -> None:
    metadata, lint = result["metadata"], result["lint"]
    click.echo(
        f"Wrote {result['output']} ({result['size_bytes'] / 2**20:.1f} MiB, {metadata['precision']}, "
        f"opset {lint['opset']}, {result['node_count']} nodes)"
    )
    counts = list(result["op_counts"].items())
    shown = ", ".join(f"{op} {count}" for op, count in counts[:SHOWN_OP_TYPES])
    more = f", +{len(counts) - SHOWN_OP_TYPES} more types" if len(counts) > SHOWN_OP_TYPES else ""
    click.echo(f"  ops: {shown}{more}")
    if metadata["precision"] == "fp16":
        kept = json.loads(metadata["fp32_op_types"]) + json.loads(metadata["fp32_nodes"])
        click.echo(f"  kept in FP32: {', '.join(kept)}")
    click.echo(f"  lint: {lint['error_count']} error(s), {lint['warning_count']} warning(s)")
    for line in verification.format_lines():
        click.echo(f"  {line}")


@click.command(name="audit-fp16")
@click.option("--task", type=click.Choice(TASKS), default="denoise", show_default=True,
              help="The degradation of the held-out photographs the audit runs on.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Checkpoint of any family to audit (default: the task's demo weights).")
@click.option("--arch", type=click.Choice(FAMILY_NAMES), help=ARCH_HELP)
@click.option("--res", default="256,1080p", show_default=True,
              help="Resolutions: the calibration size and the largest deployment sizes (720p,1080p,4k).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Layers listed per resolution, most at risk first.")
@click.option("--method", type=click.Choice(["pytorch", "graph"]), default="pytorch", show_default=True,
              help="pytorch: every torch op rounded, with the per-layer table; graph: the FP16 ONNX itself "
                   "emulated on ONNX Runtime, PSNR and output inf/NaN only.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def audit_fp16_command(task: str, checkpoint: Path | None, arch: str | None, res: str, top: int,
                       method: str, as_json: bool) -> None:
    """Predict FP16 accuracy by emulation: FP16 storage of weights and every activation.

    ONNX Runtime on CPU cannot say whether an FP16 engine is accurate. This computes
    the model in float32 with weights and every intermediate tensor rounded to float16
    (reductions and softmax kept in FP32 as the FP16 ONNX does) on held-out photographs
    degraded for the task, and reports the emulated PSNR vs FP32. Method pytorch runs the
    PyTorch model and adds per layer the largest magnitude vs the FP16 range, overflows
    and underflows; method graph exports the FP16 ONNX and runs it so emulated on ONNX
    Runtime (inf/NaN per output instead of per layer). An estimate, not a TensorRT
    measurement. 4K needs about 8 GB of RAM.

    \b
    Examples:
      mirnet audit-fp16 --task denoise --res 720p,1080p
      mirnet audit-fp16 --checkpoint model_denoising.pth --res 256 --json
      mirnet audit-fp16 --task denoise --res 1080p --method graph
    """
    from mirnet_deploy.resolutions import parse_resolutions

    from .network import load_network

    _configure_audit_process(method)
    network, spec = load_network(checkpoint or default_weights(task, arch), task, arch)
    resolutions = parse_resolutions(res)
    if method == "graph":
        from .fp16_emulation import audit_network_graph

        reports: dict[str, Any] = audit_network_graph(network, spec, resolutions, task=task)
    else:
        from .fp16_audit import audit_at_resolutions

        reports = audit_at_resolutions(network, resolutions, task=task)
    if as_json:
        click.echo(json.dumps({name: report.to_dict() for name, report in reports.items()}, indent=2))
        return
    for report in reports.values():
        click.echo(report.format_table(top=top) + "\n")


def _configure_audit_process(method: str) -> None:
    """The host allocator each method needs (`mirnet_deploy/cli.py` leaves it to this verb).

    pytorch: `retain`, as every verb (each eager op's tensors would be page-faulted in again).
    graph: ONNX Runtime without its arena, under the system allocator: `retain` would keep every
    freed feature map resident beside the next (README, "The graph method"). The command's own
    process restarts once with `MALLOC_HUGE_PAGES`, which glibc reads only at start-up; a program
    calling the command in-process (a test) runs it as it is."""
    from mirnet_deploy.cli import is_command_process
    from mirnet_deploy.host_allocator import configure_host_allocator, reexec_with_malloc_huge_pages

    if method == "pytorch":
        configure_host_allocator("retain")
    elif is_command_process():
        reexec_with_malloc_huge_pages()
