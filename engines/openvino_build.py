"""The OpenVINO "engine": the ONNX model compiled by OpenVINO for one device, exported once.

OpenVINO compiles a model for its device every time it loads one; its model cache keeps the
compiled form to skip that. `mirnet build --backend openvino` does the same explicitly, keyed like
the other engines: it compiles the ONNX model and saves `CompiledModel.export_model()` (the format
of OpenVINO's model cache) next to a manifest. Loading imports it (Python runner or C++ libmirnet).

Precision: on CPUs with BF16 support (AVX512-BF16, AMX) OpenVINO runs FP32 models in BF16 by
default, which parity against PyTorch FP32 would catch too late. The inference precision hint is
therefore always set, recorded in the manifest and part of the cache key: `f32` unless asked
(every ONNX precision runs its declared graph in f32 arithmetic; INT8 Q/DQ layers run in INT8), or
`bf16` for mirnet's `bf16` precision (the FP32 ONNX computed in BF16), which is refused on CPUs
without native BF16: OpenVINO would emulate it there, slower than f32 and less exact.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import openvino as ov

from mirnet_deploy.errors import UserError

from . import cache
from .cpu_graph import cache_option, cpu_graph
from .manifest import EngineManifest, publish_engine
from .openvino_int8_check import check_int8_layout

DEFAULT_DEVICE = "CPU"
#: The hint every engine is compiled with unless asked otherwise (see the module docstring).
DEFAULT_INFERENCE_PRECISION = "f32"
#: mirnet's compute precisions on OpenVINO -> OpenVINO's inference precision hints.
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino_version() -> str:
    """Release and build number, e.g. '2026.4.1-22982' (of '2026.4.1-22982-e213a147257-releases/2026/4'):
    compiled models load only on the build that compiled them. libmirnet reads it the same way."""
    return "-".join(ov.__version__.split("-")[:2])


def compile_properties(inference_precision: str) -> dict[str, Any]:
    """What the model is compiled (and imported) with: latency mode and the explicit precision hint."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": inference_precision}


def device_name(core: ov.Core, device: str) -> str:
    """The device's FULL_DEVICE_NAME; UserError if OpenVINO does not see the device here."""
    if device not in core.available_devices:
        raise UserError(f"OpenVINO {openvino_version()} sees no {device} device here (devices: "
                        f"{', '.join(core.available_devices) or 'none'}); use --device CPU.")
    return str(core.get_property(device, "FULL_DEVICE_NAME"))


def native_bf16(core: ov.Core, device: str) -> bool:
    """Whether `device` computes BF16 in hardware: OpenVINO lists BF16 among a CPU's optimization
    capabilities only with AVX512-BF16 or AMX (without them it still accepts the hint, and emulates)."""
    return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")


def check_inference_precision(core: ov.Core, device: str, inference_precision: str) -> None:
    """UserError for a hint mirnet does not offer, or BF16 on a device without BF16 arithmetic."""
    if inference_precision not in INFERENCE_PRECISIONS.values():
        raise UserError(f"Unknown OpenVINO inference precision {inference_precision!r}: use "
                        f"{' or '.join(INFERENCE_PRECISIONS.values())}.")
    if inference_precision == "bf16" and not native_bf16(core, device):
        raise UserError(f"This {device} ({device_name(core, device)}) has no BF16 arithmetic (AVX512-BF16 or "
                        f"AMX): OpenVINO would emulate BF16 here, slower than FP32 and less exact. Use "
                        f"--precision fp32 or int8 on this machine, or bf16 on a CPU that has it.")


def _request(onnx_info: cache.OnnxInfo, precision: str, device: str, full_name: str,
             inference_precision: str) -> cache.EngineRequest:
    return cache.EngineRequest(onnx_sha256=onnx_info.sha256, onnx_stem=onnx_info.path.stem,
                               precision=precision, backend="openvino", backend_version=openvino_version(),
                               device=full_name, compute_capability=None,
                               options={"device": device, "inference_precision": inference_precision,
                                        **cache_option(precision)})


def build_openvino_engine(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *,
                          precision: str | None = None, device: str = DEFAULT_DEVICE,
                          inference_precision: str = DEFAULT_INFERENCE_PRECISION) -> EngineManifest:
    """Compile an ONNX model with OpenVINO for `device`; save it atomically with its manifest (returned)."""
    onnx_info = cache.describe_onnx(onnx_path)
    precision = cache.resolve_precision(onnx_info, precision)
    core = ov.Core()
    full_name = device_name(core, device)
    check_int8_layout(onnx_info.metadata.get("precision"), device, onnx_info.path)
    check_inference_precision(core, device, inference_precision)
    request = _request(onnx_info, precision, device, full_name, inference_precision)
    properties = compile_properties(inference_precision)
    manifest = cache.new_manifest(request, onnx_info, Path(output_path), build_options=properties,
                            build_seconds=0.0, device=device, device_name=full_name,
                            inference_precision=inference_precision)

    def compile_to(tmp: Path) -> None:
        started = time.perf_counter()
        graph, manifest.build_options["graph_rewrites"] = cpu_graph(onnx_info.path, precision)
        try:
            model = str(onnx_info.path) if graph is None else core.read_model(graph.SerializeToString())
            compiled = core.compile_model(model, device, properties)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError subclasses for unreadable models
            raise UserError(f"OpenVINO {openvino_version()} could not compile {onnx_info.path}: "
                            f"{exc}") from None
        used = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if used != inference_precision:
            raise UserError(f"OpenVINO compiled {onnx_info.path} with inference precision {used}, not "
                            f"{inference_precision} as asked.")
        tmp.write_bytes(compiled.export_model().getvalue())
        manifest.build_seconds = round(time.perf_counter() - started, 3)  # written after this returns

    publish_engine(output_path, manifest, compile_to)
    return manifest


def build_openvino_cached(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, *,
                          precision: str | None = None, device: str = DEFAULT_DEVICE,
                          inference_precision: str = DEFAULT_INFERENCE_PRECISION) -> cache.CachedBuild:
    """`build_openvino_engine` into `cache_dir`, unless an engine for the same request is there."""
    onnx_info = cache.describe_onnx(onnx_path)
    core = ov.Core()
    check_inference_precision(core, device, inference_precision)
    request = _request(onnx_info, cache.resolve_precision(onnx_info, precision), device,
                       device_name(core, device), inference_precision)
    check_int8_layout(onnx_info.metadata.get("precision"), device, onnx_info.path)  # a cached one too
    return cache.build_or_reuse(request, cache_dir, lambda path: build_openvino_engine(
        onnx_path, path, precision=precision, device=device, inference_precision=inference_precision))
