"""The engines stage's own verb: `mirnet doctor` (`mirnet build` orchestrates stages: pipeline/cli.py)."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """What this machine can run: CPU, NVIDIA driver, GPU, cuda-python, PyTorch, TensorRT, ONNX Runtime.

    For each missing piece, the one command that installs it. Only probes: safe on any machine.

    \b
    Examples:
      mirnet doctor
      mirnet doctor --json
    """
    from .environment import findings, findings_as_dicts, format_findings

    rows = findings()
    click.echo(json.dumps(findings_as_dicts(rows), indent=2) if as_json else format_findings(rows))
