"""What tiling costs in quality: PSNR of tiled against untiled output, per resolution and overlap.

    python -m bench.seam_report --task denoise --res 4k --tile 512 --overlaps 0,32 --md reports/seams.md

The input is a held-out built-in photograph at each resolution (enlarged when it is smaller),
degraded for the task with a fixed seed, so the numbers are reproducible. The model is any
`mirnet infer` source (the task's demo weights by default, a checkpoint, ONNX or an engine)
on any backend. The untiled run is the expensive part (a 4K image on the `small` preset holds
about 10 GB of activations on the CPU) and is made once per resolution for all overlaps.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from export.cli import ARCH_HELP
from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import parse_resolutions
from mirnet_ref.tasks import FAMILY_NAMES, TASKS

from .report import publish_rows

#: The seed of the degradation applied to every input (any fixed value; 2020 as the tests use).
SEED = 2020


def seam_rows(task: str | None, checkpoint: Path | None, model: Path | None, backend: str,
              threads: int | None, resolutions: list[tuple[int, int]], tile: int,
              overlaps: list[int], arch: str | None = None) -> list[dict]:
    """One row per (resolution, overlap): the tiled-vs-untiled PSNR of the delivered images."""
    from engines.infer import open_model
    from engines.tiling import seam_psnr
    from mirnet_ref.datasets import builtin_images, image_at_resolution
    from mirnet_ref.degradations import degrade_pair, make_degradation

    loaded = open_model(task, checkpoint, model, backend, threads, sr_scale=None, arch=arch)
    name, photo = builtin_images("heldout")[0]
    rows = []
    try:
        for width, height in resolutions:
            click.echo(f"{width}x{height}: untiled, then tiles of {tile} with overlaps "
                       f"{', '.join(map(str, overlaps))} ...", err=True)
            clean = image_at_resolution(photo, width, height)
            degraded, _ = degrade_pair(make_degradation(loaded.task), clean, np.random.default_rng(SEED))
            measured = seam_psnr(loaded.runner, degraded, tile=tile, overlaps=overlaps, scale=loaded.scale)
            rows += [{"task": loaded.task, "model": loaded.source, "backend": loaded.runner.name,
                      "image": name, "resolution": f"{width}x{height}", "tile": tile, "overlap": overlap,
                      "psnr_tiled_vs_untiled_db": round(value, 2)}
                     for overlap, value in measured.items()]
    finally:
        loaded.runner.close()
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["| task | image | resolution | tile | overlap | PSNR tiled vs untiled (dB) |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['task']} | {r['image']} | {r['resolution']} | {r['tile']} | {r['overlap']} | "
              f"{r['psnr_tiled_vs_untiled_db']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--task", type=click.Choice(TASKS),
              help="Default: from the model, else denoise.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A checkpoint of any family (default: the task's demo weights).")
@click.option("--arch", type=click.Choice(FAMILY_NAMES), help=ARCH_HELP)
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An exported ONNX model or TensorRT engine instead of a checkpoint.")
@click.option("--backend", type=click.Choice(["auto", "torch", "ort", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: the library's).")
@click.option("--res", default="4k", show_default=True, help="Resolutions, e.g. 4k,1080p,384x384.")
@click.option("--tile", type=click.IntRange(min=4), default=512, show_default=True)
@click.option("--overlaps", default="0,32", show_default=True, help="Comma-separated overlaps in pixels.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON here.")
def main(task: str | None, checkpoint: Path | None, arch: str | None, model: Path | None, backend: str,
         threads: int | None, res: str, tile: int, overlaps: str, md_path: str | None,
         json_path: str | None) -> None:
    """Seam PSNR of tiled inference against untiled, on a held-out photograph."""
    try:
        overlap_values = [int(value) for value in overlaps.split(",")]
    except ValueError:
        raise click.BadParameter(f"{overlaps!r} is not a comma-separated list of integers.",
                                 param_hint="--overlaps") from None
    try:
        rows = seam_rows(task, checkpoint, model, backend, threads, parse_resolutions(res), tile,
                         overlap_values, arch)
    except UserError as error:
        raise click.ClickException(str(error)) from None
    table = to_markdown(rows)
    publish_rows(table, rows, md_path, json_path)


if __name__ == "__main__":
    main()
