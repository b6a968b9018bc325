"""`mirnet triton-repo`: the flags; the repository logic is in `triton_repo.py`."""

from __future__ import annotations

from pathlib import Path

import click

from mirnet_deploy.errors import UserError

from .triton_repo import PLATFORMS, TRT_EP_PRECISIONS, RepoOptions, write_repository


def _batch_sizes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--preferred-batch-sizes {text!r}: give positive integers, e.g. 2,4.") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--preferred-batch-sizes {text!r}: give positive integers, e.g. 2,4.")
    return sizes


@click.command("triton-repo")
@click.argument("artifact", metavar="ENGINE|MANIFEST.json|MODEL.onnx",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("model_repository"),
              show_default=True, help="The Triton model repository to write into.")
@click.option("--platform", type=click.Choice(["auto", *PLATFORMS]), default="auto", show_default=True,
              help="auto: the engine manifest's backend; onnxruntime for an ONNX model.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="ONNX Runtime: gpu adds the TensorRT execution accelerator. TensorRT plans: always gpu.")
@click.option("--name", help="Model name in the repository [default: from the file name].")
@click.option("--version", "version", type=click.IntRange(min=1),
              help="Version folder [default: one above the highest there].")
@click.option("--overwrite", is_flag=True, help="Replace an existing version folder.")
@click.option("--max-batch-size", type=click.IntRange(min=0),
              help="[default: what the TensorRT profiles take in each; 4 for ONNX models]")
@click.option("--preferred-batch-sizes", metavar="N,N",
              help="Dynamic batching [default: the profiles' opt batch sizes, else max batch size].")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=100, show_default=True,
              help="How long dynamic batching waits to fill a batch.")
@click.option("--no-dynamic-batching", is_flag=True)
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances per device.")
@click.option("--trt-precision", type=click.Choice(TRT_EP_PRECISIONS),
              help="ONNX Runtime --device gpu: the TensorRT provider's precision_mode [default: FP16; INT8 "
                   "for Q/DQ models].")
@click.option("--onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TensorRT plan: the ONNX it was built from, when the manifest's path is stale.")
def triton_repo(artifact: Path, repo: Path, platform: str, device: str, name: str | None, version: int | None,
                overwrite: bool, max_batch_size: int | None, preferred_batch_sizes: str | None,
                max_queue_delay_us: int, no_dynamic_batching: bool, instances: int, trt_precision: str | None,
                onnx: Path | None) -> None:
    """Write a Triton Inference Server model repository entry, its config validated by Triton's schema.

    \b
    Examples:
      mirnet triton-repo artifacts/engines/denoise-….fp16.tensorrt10.3….engine --repo models
      mirnet triton-repo artifacts/onnx/denoise-….fp32.onnx --device gpu --name denoise
      mirnet triton-repo artifacts/onnx/denoise-….fp32.onnx --platform openvino --name denoise-ov
    """
    options = RepoOptions(platform=platform, device=device, name=name, version=version,
                          max_batch_size=max_batch_size,
                          preferred_batch_sizes=_batch_sizes(preferred_batch_sizes),
                          max_queue_delay_us=max_queue_delay_us, dynamic_batching=not no_dynamic_batching,
                          instances=instances, trt_precision=trt_precision, onnx=onnx, overwrite=overwrite)
    result = write_repository(artifact, repo, options)
    click.echo(f"wrote {result.version_dir}/ and {result.config_path} (valid against Triton's ModelConfig)")
    for note in result.notes:
        click.echo(f"note: {note}")
