"""Click commands of the export stage, one per `mirnet` verb (`mirnet lint`, ...).

Each command is registered by name in `mirnet_deploy/cli.py` (SUBCOMMANDS) and imported
only when invoked, so keep module-level imports light: no torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .lint import lint_onnx


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
