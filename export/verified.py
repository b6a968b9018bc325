"""Export, optional rewrite and conversion, then verification against PyTorch, in a scratch folder.

`mirnet export` and every pipeline that chains stages (`mirnet build --task`) write an ONNX
file only through here, so a file on disk has always passed the checker, the TensorRT lint
and the comparison with PyTorch on ONNX Runtime CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import onnx

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.leftovers import scratch_folder

from .onnx_file import DEFAULT_OPSET, save_onnx

if TYPE_CHECKING:
    from torch import nn

    from .spec import ModelSpec
    from .verify import VerifyReport


def export_verified(
    network: nn.Module,
    spec: ModelSpec,
    output: Path,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    scale: int | None = None,
    fp32_nodes: tuple[str, ...] = (),
    subpixel_upsample: bool = False,
) -> VerifyReport:
    """Export (and convert) in a scratch folder; write `output` atomically only once verification passed."""
    from .onnx_export import export_onnx
    from .precision import convert_to_fp16
    from .subpixel import rewrite_transposed_convs
    from .verify import default_shapes, verify_onnx

    with scratch_folder("export") as folder:
        staged = folder / "model.fp32.onnx"
        click.echo(f"Exporting {spec.name} ({spec.task}) to ONNX opset {opset} ...", err=True)
        export_onnx(network, spec, staged, opset=opset, sr_scale=scale)
        if subpixel_upsample:
            rewritten_model, rewritten = rewrite_transposed_convs(onnx.load(staged))
            save_onnx(rewritten_model, staged)
            click.echo(f"Rewrote {rewritten} ConvTranspose node(s) as Conv + DepthToSpace.", err=True)
        if precision == "fp16":
            click.echo("Converting to FP16 ...", err=True)
            staged = convert_to_fp16(staged, Path(folder) / "model.fp16.onnx", fp32_nodes=fp32_nodes)
        click.echo("Verifying on ONNX Runtime CPU against PyTorch ...", err=True)
        verification = verify_onnx(staged, network, spec, sr_scale=scale, shapes=default_shapes(scale))
        verification.raise_if_failed()
        atomic_write_bytes(output, staged.read_bytes())
    return verification
