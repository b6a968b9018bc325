"""Engine cache: an unchanged build request reuses its engine, a changed one builds a new file.

The key is a sha256 over everything that makes two engines differ: the ONNX
model's bytes, the precision, the optimization profiles, the build options that
change the plan, the backend and its exact version, and the GPU model and
compute capability (or the CPU, for ONNX Runtime). File names stay readable,
vs-mlrt style, with the key's first 12 hex digits at the end, e.g.
``denoise.fp16.tensorrt10.3.0.30.nvidia-rtx-a4000-sm86.1280x720+1920x1080.3f9c0a1b2c4d.engine``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from export.onnx_read import load_onnx
from mirnet_deploy.caches import use_cache
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256
from mirnet_deploy.locks import artifact_lock

from .manifest import EngineManifest, Profile, load_manifest

#: Precision families; an ONNX may say e.g. ``int8-tensorrt``, whose family is ``int8``.
PRECISIONS = ("fp32", "fp16", "int8")

#: File name endings per backend: TensorRT plans, ONNX Runtime's optimized ONNX models, OpenVINO's
#: exported compiled models.
ENGINE_SUFFIX = {"tensorrt": ".engine", "onnxruntime": ".ort.onnx", "openvino": ".ovblob"}


@dataclass(frozen=True)
class OnnxInfo:
    """What the build needs to know about an ONNX model, read once without its weights."""

    path: Path
    sha256: str  # of the .onnx file, combined with its external-data files if it has any
    input_name: str
    input_shape: tuple[int, ...]  # -1 for dynamic dims
    output_name: str
    metadata: dict[str, str]


def _external_files(model: onnx.ModelProto, folder: Path) -> list[Path]:
    locations = {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    return [folder / location for location in sorted(locations)]


def describe_onnx(path: str | os.PathLike) -> OnnxInfo:
    """Read the graph's I/O, metadata and identity; weights stored outside the file count in the hash."""
    path = Path(path)
    model = load_onnx(path, load_external_data=False)
    digest = file_sha256(path)
    external = _external_files(model, path.parent)
    if external:
        combined = hashlib.sha256(digest.encode())
        for data_file in external:
            combined.update(file_sha256(data_file).encode())
        digest = combined.hexdigest()
    first_input = model.graph.input[0]
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1
                 for d in first_input.type.tensor_type.shape.dim)
    return OnnxInfo(path, digest, first_input.name, dims, model.graph.output[0].name,
                    {prop.key: prop.value for prop in model.metadata_props})


def precision_family(precision: str) -> str:
    """'int8-tensorrt' -> 'int8'; UserError for anything that is not fp32/fp16/int8[-...]."""
    family = precision.split("-", 1)[0].lower()
    if family not in PRECISIONS:
        raise UserError(f"Unknown precision {precision!r}: use fp32, fp16 or int8 (an INT8 Q/DQ model).")
    return family


def resolve_precision(onnx_info: OnnxInfo, requested: str | None) -> str:
    """The precision is the ONNX model's (its `precision` metadata); a contradicting request is an error."""
    declared = onnx_info.metadata.get("precision")
    if requested and declared and precision_family(requested) != precision_family(declared):
        raise UserError(
            f"{onnx_info.path} declares precision {declared} but {requested} was asked for. Precision "
            f"lives in the ONNX graph, not in build flags (TensorRT 11 builds strongly typed networks "
            f"only): build the {requested} ONNX variant instead (`mirnet export --precision {requested}` "
            f"or `mirnet quantize`).")
    precision = requested or declared or "fp32"
    precision_family(precision)
    return precision


@dataclass(frozen=True)
class EngineRequest:
    """Everything an engine depends on; equal requests mean interchangeable engines."""

    onnx_sha256: str
    onnx_stem: str  # for the file name only: renaming the ONNX does not change the engine
    precision: str
    backend: str  # "tensorrt" | "onnxruntime"
    backend_version: str
    device: str  # GPU name, or CPU model for ONNX Runtime, or the OpenVINO device's full name
    compute_capability: str | None
    profiles: tuple[Profile, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # only options that change the engine


def cache_key(request: EngineRequest) -> str:
    identity = {
        "onnx_sha256": request.onnx_sha256,
        "precision": request.precision,
        "backend": request.backend,
        "backend_version": request.backend_version,
        "device": request.device,
        "compute_capability": request.compute_capability,
        "profiles": [profile.to_dict() for profile in request.profiles],
        "options": dict(request.options),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def slug(text: str, limit: int = 32) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090', for file names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "unknown"


def _profiles_summary(profiles: Sequence[Profile]) -> str:
    """'1280x720+1920x1080' (the max W x H of each profile), 'b4-...' when batched, 'dynamic' for none."""
    if not profiles:
        return "dynamic"
    sizes = "+".join(f"{p.max[3]}x{p.max[2]}" for p in profiles)
    batch = max(p.max[0] for p in profiles)
    return f"b{batch}-{sizes}" if batch > 1 else sizes


def engine_filename(request: EngineRequest) -> str:
    device = slug(request.device)
    if request.compute_capability:
        device += "-sm" + request.compute_capability.replace(".", "")
    else:
        device = "cpu-" + device
    parts = [request.onnx_stem]
    if request.precision not in request.onnx_stem.split("."):  # 'denoise.fp16' already says it
        parts.append(request.precision)
    parts += [f"{request.backend}{request.backend_version}", device, _profiles_summary(request.profiles),
              cache_key(request)[:12]]
    return ".".join(parts) + ENGINE_SUFFIX[request.backend]


def new_manifest(request: EngineRequest, onnx_info: OnnxInfo, engine_path: Path, *,
                 build_options: Mapping[str, Any], build_seconds: float, **details: Any) -> EngineManifest:
    """The manifest of an engine just built for `request` (carrying its cache key and the ONNX metadata
    a runner needs: task, size multiple, scale; a graph without them is taken as multiple 1, scale 1)."""
    return EngineManifest(
        engine_file=engine_path.name,
        backend=request.backend,
        backend_version=request.backend_version,
        precision=request.precision,
        onnx_path=str(onnx_info.path),
        onnx_sha256=onnx_info.sha256,
        profiles=[profile.to_dict() for profile in request.profiles],
        build_options=dict(build_options),
        build_seconds=round(build_seconds, 3),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cache_key=cache_key(request),
        task=onnx_info.metadata.get("task"),
        size_multiple=_metadata_count(onnx_info, "size_multiple"),
        scale=_metadata_count(onnx_info, "scale"),
        **details,
    )


def _metadata_count(onnx_info: OnnxInfo, key: str) -> int:
    """A positive integer of the ONNX metadata (1 when absent); UserError naming the file otherwise."""
    value = onnx_info.metadata.get(key, "1")
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"The ONNX metadata of {onnx_info.path} says {key}={value!r}, not a positive "
                        f"integer; re-export it with `mirnet export`.")
    return int(value)


def cached_engine(request: EngineRequest, cache_dir: str | os.PathLike) -> Path | None:
    """The cached engine for this request, if its file exists and its manifest carries the same key."""
    path = Path(cache_dir) / engine_filename(request)
    if not path.is_file():
        return None
    try:
        manifest = load_manifest(path)
    except UserError:  # no or broken manifest: the engine cannot be trusted, build again
        return None
    return path if manifest.cache_key == cache_key(request) else None


@dataclass(frozen=True)
class CachedBuild:
    path: Path
    manifest: EngineManifest
    reused: bool


def build_or_reuse(request: EngineRequest, cache_dir: str | os.PathLike,
                   build: Callable[[Path], EngineManifest]) -> CachedBuild:
    """Return the cached engine for `request`, or call `build(path)` to create it in the cache.

    Under the engine's lock: of concurrent runs asking for the same engine, one builds it.
    """
    use_cache(cache_dir)  # no prune removes the engine while this process may use it
    path = Path(cache_dir) / engine_filename(request)
    with artifact_lock(path):
        cached = cached_engine(request, cache_dir)
        if cached is not None:
            return CachedBuild(cached, load_manifest(cached), reused=True)
        return CachedBuild(path, build(path), reused=False)
