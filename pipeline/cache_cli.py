"""`mirnet cache list` / `mirnet cache prune`: the toolkit's cache folders, their sizes, and LRU pruning.

The folders are those the chain, `mirnet quantize` and `mirnet-bench` fill under `--artifacts`
(mirnet_deploy/caches.py says what an entry is and what a prune guarantees against a running build).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from mirnet_deploy.caches import Entry, entries, parse_age, parse_size, prune
from mirnet_deploy.errors import UserError

#: Cache folders under the artifacts folder, and what fills them.
KNOWN_CACHES: dict[str, str] = {
    "onnx": "the chain's exports, FP16 and INT8 models, with their step records",
    "engines": "engines and manifests (`mirnet build`), CPU choices, TensorRT timing caches",
    "calibration": "default calibration sets (`mirnet build --precision int8`, `mirnet quantize`)",
    "calibration-cache": "calibration ranges and FP32 reference outputs of the INT8 search",
    "bench": "`mirnet-bench`'s models, engines and calibration sets per configuration",
    "bench/calibration-cache": "calibration ranges and FP32 outputs of `mirnet-bench`'s INT8 models",
}


def _folders(artifacts: Path, folders: tuple[Path, ...]) -> list[Path]:
    """The FOLDERs given, else the known caches under `artifacts` (those not made yet hold 0 entries).

    A folder named that does not exist is a typo or another working directory, not an empty cache:
    refused, so that a listing of zeros never reads as "nothing cached"."""
    for folder in folders or (artifacts,):
        if not folder.is_dir():
            where = "--artifacts folder" if not folders else "cache folder"
            raise UserError(f"The {where} {folder} does not exist: nothing was listed or removed. Pass the "
                            "artifacts folder the builds used (`--artifacts DIR`; default `artifacts` in "
                            "the directory they ran from) or an existing cache FOLDER.")
    return list(folders) or [artifacts / name for name in KNOWN_CACHES]


def _size(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def _age(entry: Entry, now: float) -> str:
    days = (now - entry.last_used) / 86400
    return f"{days:.1f} d" if days >= 1 else f"{days * 24:.1f} h"


@click.group()
def cache() -> None:
    """The cache folders the chain, `mirnet quantize` and `mirnet-bench` fill: list them, prune them.

    Nothing is removed unless `prune` is asked to. Each FOLDER given replaces the default list
    (the known folders under --artifacts).
    """


artifacts_option = click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path),
                                 default=Path("artifacts"), show_default=True,
                                 help="The artifacts folder whose known caches are listed or pruned.")
folders_argument = click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))


@cache.command("list")
@artifacts_option
@folders_argument
def list_command(artifacts: Path, folders: tuple[Path, ...]) -> None:
    """Each cache folder's entries, size and least recent use.

    \b
    Examples:
      mirnet cache list
      mirnet cache list build/full/cache-nobudget
    """
    now, chosen = time.time(), _folders(artifacts, folders)
    width = max(len(str(folder)) for folder in chosen)
    click.echo(f"{'folder':<{width}} {'entries':>7} {'size':>10}  least recently used")
    for folder in chosen:
        found = entries(folder)
        oldest = f"{found[0].name} ({_age(found[0], now)} ago)" if found else "-"
        click.echo(f"{folder!s:<{width}} {len(found):>7} {_size(sum(e.size for e in found)):>10}  {oldest}")


@cache.command("prune")
@artifacts_option
@click.option("--older-than", "older_than_text", metavar="AGE",
              help="Remove entries not used for longer than AGE (30d, 12h, 90m, 2w).")
@click.option("--max-size", "max_size_text", metavar="SIZE",
              help="Then remove the least recently used entries until each folder holds at most SIZE "
                   "(500M, 2G).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@folders_argument
def prune_command(artifacts: Path, older_than_text: str | None, max_size_text: str | None, dry_run: bool,
                  folders: tuple[Path, ...]) -> None:
    """Remove cache entries, least recently used first; refused for a folder a running build,
    quantization, benchmark or server of this toolkit uses (nothing removed there).

    \b
    Examples:
      mirnet cache prune --older-than 30d
      mirnet cache prune --max-size 2G --dry-run
    """
    older_than = parse_age(older_than_text) if older_than_text else None
    max_size = parse_size(max_size_text) if max_size_text else None
    verb = "would remove" if dry_run else "removed"
    for folder in _folders(artifacts, folders):
        removed = prune(folder, older_than=older_than, max_size=max_size, dry_run=dry_run)
        for entry in removed:
            click.echo(f"{verb} {entry.files[0]} ({_size(entry.size)}, {len(entry.files)} file(s))")
        kept = entries(folder) if not dry_run else None
        left = f"; {len(kept)} entries, {_size(sum(e.size for e in kept))} left" if kept is not None else ""
        click.echo(f"{folder}: {verb} {len(removed)} entries, {_size(sum(e.size for e in removed))}{left}")
