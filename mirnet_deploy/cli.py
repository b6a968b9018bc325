"""The `mirnet` command: one click group, one subcommand per stage verb.

Subcommands live with their stage (`mirnet_ref/cli.py`, `export/cli.py`, ...)
and are imported only when invoked, so `mirnet lint` never imports torch and a
stage whose optional dependency is missing does not break the others.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import UserError
from .host_allocator import configure_host_allocator

#: subcommand name -> "module:attribute" of its click command.
SUBCOMMANDS: dict[str, str] = {
    "info": "mirnet_ref.cli:info",
    "train": "mirnet_ref.cli:train",
    "eval": "mirnet_ref.cli:evaluate_command",
    "lint": "export.cli:lint",
    "export": "export.cli:export",
    "build": "pipeline.cli:build",
    "cache": "pipeline.cache_cli:cache",
    "parity": "bench.cli:parity",
    "audit-fp16": "export.cli:audit_fp16_command",
    "calibrate": "calibration.cli:calibrate",
    "quantize": "calibration.cli:quantize",
    "infer": "pipeline.infer:infer",
    "doctor": "engines.cli:doctor",
    "triton-repo": "serving.cli:triton_repo",
    "serve": "serving.cli:serve_command",
}
#: Verbs that set their process's host allocator themselves (per option), instead of `retain`.
OWN_HOST_ALLOCATOR = frozenset({"audit-fp16"})


class LazyGroup(click.Group):
    """A click group that imports each subcommand on first use and turns UserError into a paragraph."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:  # the file system's answer (full disk, permissions): no traceback for it
            where = f" ({error.filename})" if error.filename else ""
            raise click.ClickException(f"{error.strerror or error}{where}.") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirnet-deploy")
@click.pass_context
def main(context: click.Context) -> None:
    """MIRNet from PyTorch to deployment: reference model, ONNX, FP16/INT8, engines, parity.

    Run `mirnet COMMAND --help` for each verb's options and examples.
    """
    if context.invoked_subcommand not in OWN_HOST_ALLOCATOR:
        configure_host_allocator("retain")  # PyTorch's eager runs would page-fault their tensors in again


def is_command_process() -> bool:
    """Whether this process is the `mirnet` command itself (its console script), not a program that
    calls `main` in-process (a test's CliRunner, a notebook): only the former may be restarted."""
    return getattr(sys.modules.get("__main__"), "main", None) is main
