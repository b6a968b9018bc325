"""`mirnet infer`: restore an image or a folder with a local model (engines.infer) or served replicas
(serving.client, `--server`). The verb sits above both, as orchestration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from engines.infer import DEFAULT_MEMORY_BUDGET_MB, open_model, output_paths, restore_file, tiled_runner
from engines.runners import BACKENDS
from engines.tiling import DEFAULT_OVERLAP
from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_ref.datasets import list_images
from mirnet_ref.images import ARRAY_SUFFIX, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

from .options import weights_options


@click.command()
@click.option("-i", "--input", "input_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="An image file, or a folder whose images (PNG, JPEG, TIFF, WebP, BMP) are restored; for a "
                   "model of other than 3 input channels (MIRNet-v2 defocus: 6), .npy arrays H x W x C.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the restored images (created if missing).")
@weights_options(
    task_help="Run the task's demo weights (default: denoise); with --checkpoint, a check against the task "
              "the checkpoint records or its input channels imply (MIRNet-v2 with 6: defocus); with --model, "
              "a check of its metadata.",
    checkpoint_help="A checkpoint of any family (MIRNet, MPRNet, MIRNet-v2; official or ours), run by "
                    "PyTorch or, with --backend ort, by ONNX Runtime after an export to a scratch file.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An exported .onnx (ONNX Runtime, or OpenVINO with --backend openvino), a TensorRT "
                   ".engine or an OpenVINO .ovblob with its manifest; task and scale come from the ONNX "
                   "metadata.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: PyTorch for checkpoints, ONNX Runtime for .onnx, TensorRT for .engine, OpenVINO "
                   "for .ovblob.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (PyTorch or ONNX Runtime intra-op).")
@click.option("--scale", "sr_scale", type=click.IntRange(2, 8),
              help="sr checkpoints: upsample bicubically by this factor first, so the input is the "
                   "low-resolution image (as `mirnet export --scale`); without it sr refines at the same "
                   "size.")
@click.option("--tile", type=click.IntRange(min=0),
              help="Tile edge in pixels, a multiple of 4; 0: never tile. Default: the largest tile whose "
                   "run fits --memory-budget-mb (images that fit run whole).")
@click.option("--overlap", type=click.IntRange(min=0), default=DEFAULT_OVERLAP, show_default=True,
              help="Overlap between tiles in pixels, blended with linear ramps.")
@click.option("--memory-budget-mb", type=click.FloatRange(min=1), default=DEFAULT_MEMORY_BUDGET_MB,
              show_default=True, help="Host memory the model's activations may use per tile (estimated).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Largest image accepted, in pixels (width x height) as its header declares them; "
                   "larger ones are refused before decoding (decompression bombs, memory).")
@click.option("--suffix", help="Appended to each output's stem (default: _<task>).")
@click.option("--ext", type=click.Choice(["keep", "png"]), default="keep", show_default=True,
              help="Output format: the input's, or PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--server", "servers", multiple=True, metavar="HOST:PORT",
              help="Send the tiles to `mirnet serve` (Triton gRPC) instead of running a model here; repeat "
                   "for replicas: requests are spread over them and retried on another while one is down. "
                   "Tiles are 256 unless --tile says otherwise.")
@click.option("--server-model", help="With --server: the served model's name [default: --task].")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --server: tiles in flight at once (the server batches them).")
@click.option("--retry-window", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="With --server: seconds a request is retried while no server can take it.")
def infer(input_path: Path, output_dir: Path, task: str | None, checkpoint: Path | None, arch: str | None,
          model: Path | None, backend: str, threads: int | None, sr_scale: int | None, tile: int | None,
          overlap: int, memory_budget_mb: float, max_pixels: int, suffix: str | None, ext: str,
          as_json: bool, servers: tuple[str, ...], server_model: str | None, concurrency: int,
          retry_window: float) -> None:
    """Restore an image or a folder of images into OUTPUT with any model on any backend.

    8-bit inputs give 8-bit outputs; 16-bit PNG/TIFF (and float TIFF) inputs give 16-bit
    outputs. A model of other than 3 input channels (MIRNet-v2's dual-pixel defocus model takes
    the left and right views, 6 channels) takes .npy arrays H x W x C (uint8, uint16, or float in
    [0, 1], as the C++ runner); its RGB output is written as PNG, 16-bit for uint16 and float
    arrays. Outputs are clamped to [0, 1]; an output with NaN or Inf is refused, not written.
    Images whose header declares more than --max-pixels are refused unread. Large images are cut
    into overlapping tiles streamed from host memory (only a tile reaches the model or the
    GPU), within a TensorRT engine's optimization profile. Files that cannot be restored
    are listed at the end and the exit status is 1; the others are still written.

    \b
    Examples:
      mirnet infer -i photo.png -o restored/ --task denoise
      mirnet infer -i shots/ -o out/ --model denoise.fp16.onnx --threads 2
      mirnet infer -i shots/ -o out/ --model denoise.fp16.engine --tile 512 --overlap 32
      mirnet infer -i scans/ -o out/ --checkpoint model_denoising.pth --backend ort --json
      mirnet infer -i small/ -o big/ --task sr --scale 4 --ext png
      mirnet infer -i pairs/ -o sharp/ --task defocus --checkpoint defocus.pth   # H x W x 6 .npy views
      mirnet infer -i shots/ -o out/ --task denoise --server localhost:8001 --server otherhost:8001
    """
    inputs = list_images(input_path, (*IMAGE_SUFFIXES, ARRAY_SUFFIX)) if input_path.is_dir() else [input_path]
    if not inputs:
        raise UserError(f"No images in {input_path}: it holds no files ending in .png, .jpg, .tif, .webp, "
                        f".bmp or .npy. Point -i at an image or a folder of images.")
    check_writable(output_dir, "--output", folder=True)  # before a model is loaded or an image read
    if servers:
        from serving.client import open_remote_model, remote_tiled_runner

        if checkpoint or arch or model or backend != "auto" or threads or sr_scale:
            raise UserError("--server sends the images to a served model: --checkpoint, --arch, --model, "
                            "--backend, --threads and --scale belong to `mirnet serve` there.")
        if not (server_model or task):
            raise UserError("--server needs the served model's name: --task (the name `mirnet serve --task` "
                            "gives it) or --server-model NAME.")
        loaded = open_remote_model(servers, server_model or task, retry_window)
        runner, tiling = remote_tiled_runner(loaded, tile, overlap, concurrency)
    else:
        loaded = open_model(task, checkpoint, model, backend, threads, sr_scale, arch)
        runner, tiling = tiled_runner(loaded, tile, overlap, memory_budget_mb)
    output_dir.mkdir(parents=True, exist_ok=True)  # once the model is loaded: a refused model makes none
    outputs = output_paths(inputs, output_dir, f"_{loaded.task}" if suffix is None else suffix, ext)
    restored, failed = [], []
    with runner:
        for src in tqdm(inputs, desc="infer", unit="image", disable=as_json):
            try:
                restored.append(restore_file(runner, src, outputs[src], loaded.precision, max_pixels))
            except UserError as error:
                failed.append({"input": str(src), "error": str(error)})
            except Exception as error:  # a backend's own failure on this file: named, and the run goes on
                failed.append({"input": str(src), "error": f"unexpected {type(error).__name__}: {error}"})
    summary = {"model": loaded.source, "task": loaded.task, "backend": loaded.runner.name,
               "scale": loaded.scale, "tiling": tiling, "output_dir": str(output_dir), "restored": restored,
               "failed": failed}
    if servers:
        summary["servers"] = loaded.runner.replicas.report()
    click.echo(json.dumps(summary, indent=2) if as_json else _summary_text(summary))
    if failed:
        raise SystemExit(1)


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [f"{summary['backend']} ({summary['model']}, task {summary['task']}, scale {summary['scale']}), "
             f"tiling: {summary['tiling']}",
             f"restored {len(summary['restored'])} of {len(summary['restored']) + len(summary['failed'])} "
             f"images into {summary['output_dir']}"]
    for url, tally in summary.get("servers", {}).items():
        lines.append(f"server {url}: answered {tally['answered']} requests, refused {tally['refused']}")
    if summary["failed"]:
        lines.append(f"failed {len(summary['failed'])}:")
        lines += [f"  {Path(f['input']).name}: {f['error']}" for f in summary["failed"]]
    return "\n".join(lines)
