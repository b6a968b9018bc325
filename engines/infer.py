"""The library behind `mirnet infer` (the verb is `pipeline/infer.py`): restore image files with any
artifact on any backend, tiled when large.

Modelled on Real-ESRGAN's inference script: a file or a folder in, a folder out, one
output per input named `<stem><suffix><ext>`, a progress bar, and a summary at the end.
A model of other than 3 input channels (MIRNet-v2's dual-pixel defocus model: 6) takes `.npy`
arrays H x W x C, as the C++ runner does; its output is RGB, written as an image (PNG).
A bad file (unreadable, corrupt, truncated, over the declared-size limit, unsupported
channels, or one the model turns into NaN/Inf) is reported by name and skipped, whatever
failed; the exit status is 1 if any file failed. Inputs are never overwritten: an output that would land
on an input is refused before anything runs, and every output is written atomically.

The activation memory per pixel that chooses a tile size is the model family's
(`peak_feature_maps` in the registry), found from the model's name and configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from export.network import UNNAMED_TASK
from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import scratch_folder
from mirnet_deploy.resolutions import format_resolution
from mirnet_ref.images import ARRAY_SUFFIX, DEFAULT_MAX_PIXELS, read_input, write_image
from mirnet_ref.weights import default_weights

from .cache import describe_onnx
from .manifest import load_manifest
from .runners import OpenVinoRunner, OrtRunner, Runner, TorchRunner, open_runner, select_backend
from .tiling import TiledRunner

if TYPE_CHECKING:
    from torch import nn

    from export.spec import ModelSpec

DEFAULT_MEMORY_BUDGET_MB = 2048
#: Engines that only TensorRT runs, and OpenVINO's compiled models.
ENGINE_SUFFIXES = (".engine", ".plan", ".ovblob")


def activation_bytes_per_pixel(model_name: str, config: Mapping[str, Any], scale: int = 1) -> float | None:
    """Peak host bytes per input pixel of a run of the family titled `model_name` (None when the name
    or the configuration is not a registered family's).

    Measured for PyTorch CPU eager (ONNX Runtime CPU needs less: 16-21 maps for MIRNet against 24);
    activations dominate, so this scales with n_feat and pixels; FP16 engines need less, so the
    estimate errs on the safe side. A graph that upsamples by `scale` inside runs the network on
    scale^2 pixels per input pixel.
    """
    from mirnet_ref.registry import family_titled

    family = family_titled(model_name)
    n_feat = config.get("n_feat")
    if family is None or not isinstance(n_feat, int):
        return None
    return 4.0 * family.peak_feature_maps * n_feat * scale**2


@dataclass
class LoadedModel:
    """A runner and what infer needs to know about the model behind it."""

    runner: Runner
    source: str
    task: str
    scale: int  # output size / input size
    size_multiple: int
    config: Mapping[str, Any]  # constructor arguments, for the memory estimate; empty if unknown
    precision: str = "fp32"  # as the ONNX metadata declares it, for messages
    model_name: str = ""  # the family's title (ONNX `model_name`), for the memory estimate


def open_model(task: str | None, checkpoint: Path | None, model: Path | None, backend: str,
               threads: int | None, sr_scale: int | None, arch: str | None = None) -> LoadedModel:
    """The runner for the chosen source and backend (see `infer --help` for the rules); `arch` is the
    family a checkpoint must hold, or whose demo weights to run."""
    if model is not None:
        if checkpoint is not None or sr_scale:
            raise UserError("--model runs an exported artifact as it is: --checkpoint and --scale apply only "
                            "to checkpoints (the ONNX graph already holds any upsampling).")
        return _open_artifact(model, task, backend, threads)
    if checkpoint is None:  # the demo weights, which record their task
        task = task or "denoise"
        checkpoint = default_weights(task, arch)
    return _open_checkpoint(checkpoint, task, backend, threads, sr_scale, arch)


def _open_artifact(path: Path, task: str | None, backend: str, threads: int | None) -> LoadedModel:
    """An ONNX model (ONNX Runtime) or an engine (TensorRT); task and scale from the ONNX metadata."""
    engine = path.suffix in ENGINE_SUFFIXES
    if backend == "torch":
        raise UserError(f"--backend torch runs the PyTorch reference from a checkpoint, not {path.name}: "
                        f"pass --checkpoint or --task, or drop --backend to run {path.name}.")
    own_engine = {"openvino": ".ovblob"}.get(backend)  # ONNX Runtime's optimized models are .onnx
    if backend in ("ort", "openvino") and engine and path.suffix != own_engine:
        raise UserError(f"{path.name} is an engine of another backend than {backend}: pass the ONNX model it "
                        f"was built from with --backend {backend}.")
    if backend == "tensorrt" and not engine:
        select_backend("tensorrt", path)  # explains what to install when TensorRT cannot run here
        raise UserError(f"TensorRT runs built engines: `mirnet build {path} --backend tensorrt`, then pass "
                        f"the engine it prints with --model.")
    metadata = artifact_metadata(path)
    declared = metadata.get("task")
    if task and declared and task != declared:
        raise UserError(f"{path.name} was exported for task {declared!r}, not {task!r}: drop --task (the "
                        f"model's metadata names it) or pass the {task} model.")
    try:
        config = json.loads(metadata.get("model_config", "{}"))
        scale, multiple = int(metadata.get("scale", "1")), int(metadata.get("size_multiple", "4"))
    except ValueError:
        raise UserError(f"The metadata of {path.name} is damaged (model_config, scale or size_multiple "
                        f"cannot be parsed): re-export the model.") from None
    runner = (OpenVinoRunner(path, threads=threads) if backend == "openvino"
              else open_runner(path, threads=threads))
    check_image_model(runner, path)
    return LoadedModel(runner, str(path), declared or task or UNNAMED_TASK, scale, multiple,
                       config if isinstance(config, dict) else {}, metadata.get("precision", "fp32"),
                       metadata.get("model_name", ""))


def check_image_model(runner: Runner, path: Path) -> None:
    """Refuse, before any file is read, a model whose input is not an NCHW batch of images (RGB, or the
    planes of another channel count, such as dual-pixel views)."""
    shape = runner.input_spec.shape
    if len(shape) != 4 or shape[1] == 0:
        runner.close()
        raise UserError(f"{path.name} takes {runner.input_spec.name!r} of shape {shape} (-1 = any), not an "
                        f"NCHW batch of images (N x C x H x W): it is not an image-restoration model "
                        f"export of this toolkit.")


def artifact_metadata(path: Path) -> dict[str, str]:
    """The artifact's ONNX `metadata_props`; an engine's are those of the ONNX its manifest names
    ({} when that file is gone)."""
    if path.suffix in ENGINE_SUFFIXES:
        path = Path(load_manifest(path).onnx_path)
        if not path.is_file():
            return {}
    return describe_onnx(path).metadata


def _open_checkpoint(checkpoint: Path, task: str | None, backend: str, threads: int | None,
                     sr_scale: int | None, arch: str | None) -> LoadedModel:
    """PyTorch (auto, torch) or ONNX Runtime on a fresh in-memory export (ort) of a checkpoint; without
    `task`, the one the checkpoint records or implies (export.network.load_network)."""
    from export.graph import DeploymentGraph
    from export.network import load_network

    if backend == "tensorrt":
        raise UserError(f"TensorRT runs built engines, not checkpoints: `mirnet export --checkpoint "
                        f"{checkpoint} -o model.onnx`, `mirnet build model.onnx --backend tensorrt`, then "
                        f"pass the engine with --model.")
    network, spec = load_network(checkpoint, task, arch)
    if sr_scale and spec.task != "sr":
        raise UserError(f"--scale upsamples inside the graph for super-resolution; {checkpoint.name} runs "
                        f"as {spec.task!r}: pass --task sr with an sr checkpoint.")
    if backend in ("ort", "openvino"):
        runner = _exported_runner(network, spec, sr_scale, threads, backend)
    else:
        if threads:
            import torch

            torch.set_num_threads(threads)
        runner = TorchRunner(DeploymentGraph(network, spec, sr_scale), name="pytorch-fp32")
    return LoadedModel(runner, str(checkpoint), spec.task, spec.scale * (sr_scale or 1), spec.size_multiple,
                       spec.config, model_name=spec.name)


def _exported_runner(network: nn.Module, spec: ModelSpec, sr_scale: int | None, threads: int | None,
                     backend: str) -> Runner:
    """Export to a scratch ONNX file; the session holds the model, so the file can go at once."""
    from export.onnx_export import export_onnx

    click.echo(f"Exporting the checkpoint to ONNX for {backend} ...", err=True)
    with scratch_folder("export") as folder:
        path = export_onnx(network, spec, folder / "model.onnx", sr_scale=sr_scale)
        if backend == "openvino":
            return OpenVinoRunner(path, threads=threads)
        return OrtRunner(path, providers="auto", threads=threads)


def tiled_runner(model: LoadedModel, tile: int | None, overlap: int,
                 memory_budget_mb: float) -> tuple[Runner, str]:
    """The runner infer uses and a description of its tiling: `tile` 0 = off, None = from the budget."""
    if tile == 0:
        return model.runner, "off"
    bytes_per_pixel = activation_bytes_per_pixel(model.model_name, model.config, model.scale)
    if tile is None and bytes_per_pixel is None:
        return model.runner, "off (no model config in the metadata to estimate memory from: pass --tile N)"
    runner = TiledRunner(model.runner, tile=tile, overlap=overlap, memory_budget_mb=memory_budget_mb,
                         bytes_per_pixel=bytes_per_pixel, scale=model.scale, multiple=model.size_multiple)
    height, width = runner.tile_limits()
    return runner, f"tiles up to {width}x{height}, overlap {overlap}"


def output_paths(inputs: list[Path], output_dir: Path, suffix: str, ext: str) -> dict[Path, Path]:
    """Input -> output path; refuses outputs that would overwrite an input or each other."""
    def output_suffix(src: Path) -> str:  # an array's restoration is an image: PNG
        return src.suffix if ext == "keep" and src.suffix.lower() != ARRAY_SUFFIX else ".png"

    outputs = {src: output_dir / f"{src.stem}{suffix}{output_suffix(src)}" for src in inputs}
    resolved_inputs = {src.resolve(): src for src in inputs}
    seen: dict[Path, Path] = {}
    for src, dst in outputs.items():
        target = dst.resolve()
        if target in resolved_inputs:
            raise UserError(f"Restoring {src} would overwrite the input {resolved_inputs[target]}: choose "
                            f"another output folder or a non-empty --suffix. Nothing was written.")
        if target in seen:
            raise UserError(f"{seen[target]} and {src} would both be written to {dst}: use --ext keep or "
                            f"rename one of them. Nothing was written.")
        seen[target] = src
    return outputs


def restore_file(runner: Runner, src: Path, dst: Path, precision: str = "fp32",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Restore one file (an image, or a `.npy` array for a model of other than 3 channels); 8-bit stays
    8-bit, 16-bit and float files are written as 16-bit."""
    started = time.perf_counter()
    loaded = read_input(src, max_pixels)
    check_channels(runner, loaded.pixels.shape[2], src)
    height, width = loaded.pixels.shape[:2]
    batch = np.ascontiguousarray(loaded.pixels.transpose(2, 0, 1)[None])
    restored = runner.run(batch)[0].transpose(1, 2, 0)
    check_finite_output(restored, f"{src.name} ({format_resolution((width, height))}, {precision})")
    bit_depth = 8 if loaded.bit_depth == 8 else 16
    write_image(dst, restored, bit_depth)  # clamps to [0, 1], atomic
    return {"input": str(src), "output": str(dst), "size": format_resolution((width, height)),
            "output_size": format_resolution((restored.shape[1], restored.shape[0])), "bit_depth": bit_depth,
            "seconds": round(time.perf_counter() - started, 3)}


def check_channels(runner: Runner, channels: int, src: Path) -> None:
    """Refuse, naming the file, an input whose channels are not the model's (an RGB image for the
    6-channel dual-pixel model, or an array of the wrong depth)."""
    wanted = runner.input_spec.shape[1]
    if wanted in (-1, channels):
        return
    held = "an image holds 3 (RGB)" if src.suffix.lower() != ARRAY_SUFFIX else f"the array holds {channels}"
    feed = ("an image file, or an H x W x 3 .npy array" if wanted == 3 else
            f"an H x W x {wanted} .npy array (for dual-pixel views: np.concatenate([left, right], axis=2))")
    raise UserError(f"The model takes {wanted} input channels, {held}: pass {feed}.")


def check_finite_output(output: np.ndarray, what: str) -> None:
    """Refuse a model output holding NaN or Inf: clamping would write it as a plausible-looking image."""
    nan, inf = int(np.isnan(output).sum()), int(np.isinf(output).sum())
    if nan or inf:
        raise UserError(f"The model produced {nan:,} NaN and {inf:,} infinite values for {what}, so "
                        "nothing was written for it. FP16 overflow is the usual cause: run the FP32 model, "
                        "or check the FP16 one with `mirnet audit-fp16` and `mirnet parity`.")
