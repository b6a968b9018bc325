"""`mirnet build`: an ONNX model into a cached engine (TensorRT where usable, else ONNX Runtime)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from .manifest import manifest_path
from .ort_build import build_ort_cached
from .runners import select_backend
from .tensorrt_build import HARDWARE_COMPATIBILITY, build_tensorrt_cached, profiles_from_resolutions

DEFAULT_CACHE_DIR = Path("artifacts") / "engines"


@click.command()
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "ort"]), default="auto", show_default=True,
              help="auto: TensorRT when a GPU and TensorRT are usable, else ONNX Runtime.")
@click.option("--res", default="720p", show_default=True,
              help="TensorRT: one optimization profile per resolution bucket (720p,1080p,WxH).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workspace-mb", type=click.IntRange(min=1), help="TensorRT workspace limit.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimization level.")
@click.option("--version-compatible", is_flag=True, help="TensorRT: engine runs on later 10.x/11.x runtimes.")
@click.option("--hardware-compatibility", type=click.Choice(HARDWARE_COMPATIBILITY),
              help="TensorRT: engine runs on other GPUs of this family.")
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=str(DEFAULT_CACHE_DIR),
              show_default=True, help="Engines are cached here under names that encode the request.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def build(onnx_path: str, backend: str, res: str, batch: int, workspace_mb: int | None, opt_level: int,
          version_compatible: bool, hardware_compatibility: str | None, threads: int | None, cache_dir: str,
          as_json: bool) -> None:
    """Build MODEL.onnx into an engine with a manifest, or reuse the cached one.

    The precision is the ONNX file's own (FP32, FP16 or Q/DQ INT8 graphs): TensorRT
    builds it as a strongly typed network. Without TensorRT, ONNX Runtime's
    optimized model plus the same manifest is the engine.

    \b
    Examples:
      mirnet build model.fp16.onnx --res 720p,1080p
      mirnet build model.int8-cpu.onnx --backend ort --threads 2
    """
    chosen, reason = select_backend(backend, onnx_path)
    if chosen == "tensorrt":
        profiles = profiles_from_resolutions(res.split(","), batch=batch)
        result = build_tensorrt_cached(onnx_path, cache_dir, profiles=profiles, workspace_mb=workspace_mb,
                                       optimization_level=opt_level, version_compatible=version_compatible,
                                       hardware_compatibility=hardware_compatibility, progress=not as_json)
    else:
        result = build_ort_cached(onnx_path, cache_dir, threads=threads)
    if as_json:
        click.echo(json.dumps({"backend": chosen, "reason": reason, "engine": str(result.path),
                               "reused": result.reused, "manifest": asdict(result.manifest)}, indent=2))
        return
    click.echo(f"backend: {chosen} ({reason})")
    verb = "reused cached engine" if result.reused else f"built in {result.manifest.build_seconds:.1f} s"
    click.echo(f"{verb}: {result.path}")
    click.echo(f"manifest: {manifest_path(result.path)} (precision {result.manifest.precision})")
