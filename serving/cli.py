"""`mirnet triton-repo` and `mirnet serve`: the flags; the logic is in `triton_repo.py` and `server.py`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from mirnet_deploy.errors import UserError
from mirnet_ref.tasks import TASKS

from .server import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DELAY_US
from .triton_repo import PLATFORMS, TRT_EP_PRECISIONS, RepoOptions, write_repository

#: Our runners behind the server (PyTorch is the reference, not a serving backend).
SERVE_BACKENDS = ("auto", "ort", "openvino", "tensorrt")


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


@click.command("serve")
@click.option("--task", type=click.Choice(TASKS), help="Serve the task's demo weights (default: denoise).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A checkpoint, exported to ONNX in memory and served by --backend.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An exported .onnx, a TensorRT .engine or an OpenVINO .ovblob with its manifest.")
@click.option("--backend", type=click.Choice(SERVE_BACKENDS), default="auto", show_default=True,
              help="auto: by the file for --model (as `mirnet infer`); OpenVINO for checkpoints.")
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads.")
@click.option("--name", help="Model name clients ask for [default: the task].")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address the three endpoints listen on.")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002, show_default=True)
@click.option("--max-batch-size", type=click.IntRange(min=1), default=DEFAULT_MAX_BATCH, show_default=True,
              help="Largest batch Triton forms (within a TensorRT engine's profiles).")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=DEFAULT_QUEUE_DELAY_US,
              show_default=True, help="How long the dynamic batcher waits to fill a batch.")
@click.option("--no-dynamic-batching", is_flag=True, help="Run each request on its own.")
@click.option("--exit-timeout", type=click.IntRange(min=0), default=10, show_default=True,
              help="Seconds requests in flight may take to finish after SIGTERM.")
def serve_command(task: str | None, checkpoint: Path | None, model: Path | None, backend: str,
                  threads: int | None, name: str | None, host: str, http_port: int, grpc_port: int,
                  metrics_port: int, max_batch_size: int, max_queue_delay_us: int, no_dynamic_batching: bool,
                  exit_timeout: int) -> None:
    """Serve a model with Triton Inference Server (PyTriton): HTTP, gRPC, dynamic batching, metrics.

    Needs the serving venv (`make setup SERVE=1`, then `.venv-serve/bin/mirnet serve`). Clients:
    `mirnet infer --server HOST:GRPC_PORT`, `mirnet-bench --server HOST:GRPC_PORT`, or any Triton
    client; readiness is GET /v2/health/ready on the HTTP port, metrics GET /metrics on the metrics
    port. SIGTERM or Ctrl-C stops it after the requests in flight.

    \b
    Examples:
      .venv-serve/bin/mirnet serve --task denoise
      .venv-serve/bin/mirnet serve --model artifacts/onnx/denoise-….fp32.onnx --backend ort
      .venv-serve/bin/mirnet serve --model denoise.fp16.engine --max-batch-size 4   # GPU
    """
    from engines.infer import open_model

    from .interpreter import check_serving_interpreter
    from .server import ServeOptions, check_ports_free, serve

    check_serving_interpreter()  # before minutes of export or engine loading
    options = ServeOptions(model_name="", host=host, http_port=http_port, grpc_port=grpc_port,
                           metrics_port=metrics_port, max_batch_size=max_batch_size,
                           dynamic_batching=not no_dynamic_batching, max_queue_delay_us=max_queue_delay_us,
                           exit_timeout_s=exit_timeout)
    check_ports_free(host, options.ports())
    opened_with = "openvino" if backend == "auto" and model is None else backend
    loaded = open_model(task, checkpoint, model, opened_with, threads, None)
    with loaded.runner as runner:
        serve(runner, replace(options, model_name=name or loaded.task),
              on_ready=lambda line: click.echo(line, err=True))
    click.echo("stopped", err=True)
