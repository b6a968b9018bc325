"""`mirnet-bench`: latency per resolution (being built; see the README's support matrix)."""

from __future__ import annotations

import click

from mirnet_deploy.errors import UserError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--res", default="256", show_default=True, help="Resolutions, comma-separated.")
def _bench(res: str) -> None:
    """Benchmark MIRNet latency per resolution (not implemented yet)."""
    raise UserError(
        "mirnet-bench is not implemented yet in this version of mirnet-deploy; "
        "`mirnet info MODEL --res RES` gives the multiply-accumulates per resolution meanwhile."
    )


def main() -> None:
    try:
        _bench(standalone_mode=True)
    except UserError as error:
        raise SystemExit(f"Error: {error}") from None
