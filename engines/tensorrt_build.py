"""Build TensorRT engines from ONNX, the way that works on both TensorRT 10.x and 11.x.

Precision lives in the ONNX graph (FP16 types, INT8 Q/DQ), and the network is
strongly typed: TensorRT 11 removed the FP16/INT8 builder flags and calibrators,
and TensorRT 10 (JetPack 6) needs the STRONGLY_TYPED flag to honour the graph's
types (DEPLOY_STACK.md §1). Because a silently-FP32 "fp16" engine is the classic
failure of that migration, every build is checked with the engine inspector.

`tensorrt` is imported only inside functions, after the GPU probe (`probe.py`).
API names used here, per TensorRT version: `TRT_API.md`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from filelock import FileLock

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import parse_resolution

from .cache import (
    CachedBuild,
    EngineRequest,
    OnnxInfo,
    build_or_reuse,
    describe_onnx,
    new_manifest,
    precision_family,
    resolve_precision,
    slug,
)
from .manifest import EngineManifest, Profile, Shape, publish_engine
from .probe import GpuInfo, import_tensorrt, probe_cuda, version_tuple

#: `hardware_compatibility` values -> `trt.HardwareCompatibilityLevel` members.
HARDWARE_COMPATIBILITY = {"ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}

#: Inspector layer types that only move or relabel data; they say nothing about compute precision.
BOOKKEEPING_LAYERS = {"Reformat", "NoOp"}


# ---------------------------------------------------------------------------------------------------
# Optimization profiles


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def profiles_from_resolutions(resolutions: Sequence[str | tuple[int, int]], *, batch: int = 1,
                              channels: int = 3, size_multiple: int = 4) -> list[Profile]:
    """One profile per resolution bucket: opt = max = the bucket, min = a quarter of it (rounded up).

    Resolutions are names or WxH strings (`'720p'`, `'1920x1080'`) or (width, height) pairs. Kernels
    are tuned at `opt`, so each bucket gets kernels tuned for its own size (DEPLOY_STACK.md §5).
    """
    profiles = []
    for resolution in resolutions:
        width, height = parse_resolution(resolution) if isinstance(resolution, str) else resolution
        low = (1, channels, _round_up(height / 4, size_multiple), _round_up(width / 4, size_multiple))
        high = (batch, channels, height, width)
        profiles.append(Profile(tuple(min(a, b) for a, b in zip(low, high, strict=True)), high, high))
    return profiles


def static_profile(shape: Shape) -> Profile:
    """A fixed input shape (fastest; the only choice for DLA)."""
    return Profile(tuple(shape), tuple(shape), tuple(shape))


def check_profiles(profiles: Sequence[Profile], onnx_info: OnnxInfo) -> None:
    """Refuse profiles TensorRT would reject, before minutes of building, with the input's real shape."""
    if not profiles:
        raise UserError("A TensorRT build needs at least one optimization profile: give resolutions "
                        "(e.g. 720p,1080p) or a static input shape.")
    for profile in profiles:
        fits = all(len(s) == len(onnx_info.input_shape) for s in profile) and all(
            lo >= 1 and lo <= opt <= hi for lo, opt, hi in zip(*profile, strict=True))
        fixed = all(d == -1 or all(s[i] == d for s in profile) for i, d in enumerate(onnx_info.input_shape))
        if not (fits and fixed):
            raise UserError(
                f"Optimization profile min={profile.min} opt={profile.opt} max={profile.max} does not "
                f"fit the input {onnx_info.input_name!r} of {onnx_info.path}, shape "
                f"{onnx_info.input_shape} (-1 = dynamic): it needs min <= opt <= max in every dimension, "
                f"all >= 1, and the fixed dimensions.")


# ---------------------------------------------------------------------------------------------------
# Checking the built engine's precision (pure Python, testable without a GPU)


#: Inspector tensor keys that carry the data type, lower-cased: "Format/Datatype" (TensorRT 8.x-10.x,
#: one string such as "Row major linear FP16 format"), "Datatype" / "DataType" and "Format" (TensorRT 11).
TYPE_KEYS = ("format/datatype", "datatype", "format")


def _tensor_type(tensor: dict[str, Any]) -> str | None:
    """'Half', 'Int8', ... from an inspector tensor entry; None when TensorRT did not say or said
    something this parser does not recognise (which must not read as "FP32")."""
    by_key = {str(key).lower(): str(value) for key, value in tensor.items()}
    upper = " ".join(by_key.get(key, "") for key in TYPE_KEYS).upper()
    if "N/A" in upper:
        return None
    for name, needles in (("Int8", ("INT8",)), ("FP8", ("FP8", "FLOAT8", "E4M3", "E5M2")),
                          ("BFloat16", ("BF16", "BFLOAT16")), ("Half", ("HALF", "FP16", "FLOAT16")),
                          ("Float", ("FLOAT", "FP32"))):
        if any(needle in upper for needle in needles):
            return name
    return None


def _compute_layers(inspector_json: dict | str) -> list[dict[str, Any]]:
    data = json.loads(inspector_json) if isinstance(inspector_json, str) else inspector_json
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    return [layer for layer in layers if isinstance(layer, dict)
            and layer.get("LayerType") not in BOOKKEEPING_LAYERS]


def layer_precision_counts(inspector_json: dict | str) -> dict[str, int]:
    """Compute layers per data type of their tensors (a layer with Float in and Half out counts in both)."""
    counts: Counter[str] = Counter()
    for layer in _compute_layers(inspector_json):
        types = {_tensor_type(t) for t in [*layer.get("Inputs", []), *layer.get("Outputs", [])]}
        known = types - {None}
        counts.update(known or {"unknown"})
    return dict(sorted(counts.items()))


def check_engine_precision(inspector_json: dict | str, precision: str) -> list[str]:
    """Problems with an engine's precision, from `IEngineInspector.get_engine_information(JSON)`; [] if none.

    An fp16 engine must have FP16 layers and an int8 engine INT8 layers; an fp32 engine must have
    neither. Catches the silent FP32 fallback when precision was asked for by builder flags that
    TensorRT 11 no longer has.
    """
    data = json.loads(inspector_json) if isinstance(inspector_json, str) else inspector_json
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        return ["the engine inspector gave no per-layer details: the engine must be built with "
                "ProfilingVerbosity.DETAILED to check its precision"]
    counts = layer_precision_counts(data)
    if set(counts) == {"unknown"}:
        return ["the engine inspector reported no data type this check recognises (with dynamic shapes it "
                "needs an execution context whose input shapes are set; a newer TensorRT may use other "
                "keys): the precision is unknown, not FP32"]
    family = precision_family(precision)
    listed = ", ".join(f"{n} {t}" for t, n in counts.items())
    if family == "fp16" and not counts.get("Half"):
        return [f"the {precision} engine has no FP16 layer ({listed}): the ONNX model is probably FP32. "
                f"TensorRT 11 has no FP16 builder flag; FP16 must be in the ONNX graph (the fp16 export)"]
    if family == "int8" and not counts.get("Int8"):
        return [f"the {precision} engine has no INT8 layer ({listed}): INT8 needs Q/DQ nodes in the ONNX "
                f"graph (`mirnet quantize`); TensorRT 11 has no INT8 flag or calibrator"]
    reduced = sum(counts.get(t, 0) for t in ("Half", "BFloat16", "Int8", "FP8"))
    if family == "fp32" and reduced:
        return [f"the {precision} engine has {reduced} reduced-precision layers ({listed}): the ONNX model "
                f"is not FP32"]
    return []


# ---------------------------------------------------------------------------------------------------
# The build


@dataclass(frozen=True)
class TensorRTOptions:
    """Build options that change the engine (and therefore its cache key)."""

    workspace_mb: int | None = None  # None: TensorRT's default (the GPU's memory)
    optimization_level: int = 3  # builder_optimization_level 0..5; higher = longer build, maybe faster
    version_compatible: bool = False  # runs on later TensorRT of the same major (lean runtime inside)
    hardware_compatibility: str | None = None  # None | "ampere_plus" | "same_compute_capability"

    def __post_init__(self) -> None:
        if self.hardware_compatibility not in (None, *HARDWARE_COMPATIBILITY):
            raise UserError(f"Unknown hardware compatibility {self.hardware_compatibility!r}: use "
                            f"{' or '.join(HARDWARE_COMPATIBILITY)}, or none.")
        if not 0 <= self.optimization_level <= 5:
            raise UserError(f"Builder optimization level {self.optimization_level} is out of range 0..5.")


@dataclass(frozen=True)
class _Target:
    trt: ModuleType
    gpu: GpuInfo
    driver: str | None


def _resolve(onnx_path: str | os.PathLike, precision: str | None,
             profiles: Sequence[Profile]) -> tuple[OnnxInfo, str]:
    """The ONNX model's facts and precision, with the profiles checked against its input."""
    onnx_info = describe_onnx(onnx_path)
    precision = resolve_precision(onnx_info, precision)
    check_profiles(profiles, onnx_info)
    return onnx_info, precision


def _target() -> _Target:
    trt = import_tensorrt()  # probes first; UserError naming what to install
    cuda = probe_cuda()
    return _Target(trt, cuda.devices[0], cuda.driver_version)


def _request(onnx_info: OnnxInfo, precision: str, profiles: Sequence[Profile], options: TensorRTOptions,
             target: _Target) -> EngineRequest:
    return EngineRequest(onnx_sha256=onnx_info.sha256, onnx_stem=onnx_info.path.stem, precision=precision,
                         backend="tensorrt", backend_version=str(target.trt.__version__),
                         device=target.gpu.name, compute_capability=target.gpu.compute_capability,
                         profiles=tuple(profiles), options=asdict(options))


def _logger(trt: ModuleType) -> Any:
    """A TensorRT logger that prints warnings and keeps errors, so a failed build can quote them."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            levels = trt.ILogger.Severity
            if severity in (levels.INTERNAL_ERROR, levels.ERROR):
                self.errors.append(msg)
            if severity in (levels.INTERNAL_ERROR, levels.ERROR, levels.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return Logger()


def _progress_monitor(trt: ModuleType) -> Any:
    """An IProgressMonitor drawing one tqdm bar per build phase; it never cancels the build."""
    from tqdm import tqdm

    class TqdmProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}
            self._lock = threading.Lock()  # TensorRT may report from several threads

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, position=len(self._bars),
                                              leave=parent_phase is None, file=sys.stderr)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return TqdmProgress()


def _network_flags(trt: ModuleType) -> int:
    """STRONGLY_TYPED: required on 10.x for typed ONNX; on 11.x always on and the flag is ignored."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is not None:
        return 1 << int(flag)
    if version_tuple(trt.__version__)[0] >= 11:  # should a later 11.x drop the deprecated flag
        return 0
    raise UserError(f"TensorRT {trt.__version__} cannot build strongly typed networks; install 10.x or 11.x.")


def _parse(trt: ModuleType, network: Any, logger: Any, onnx_info: OnnxInfo) -> Any:
    """Parse the ONNX file (external weights next to it are found); errors are reported per node.

    Returns the parser, which owns the imported weights and must outlive the build.
    """
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_info.path)):
        return parser
    errors = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node()
        if node >= 0:
            name = getattr(error, "node_name", lambda: "")()
            operator = getattr(error, "node_operator", lambda: "")()
            errors.append(f"node {node} {name!r} ({operator}): {error.desc()}")
        else:
            errors.append(error.desc())
    raise UserError(
        f"TensorRT {trt.__version__}'s ONNX parser rejected {onnx_info.path}: "
        f"{'; '.join(errors) or 'no details'}. "
        f"Run `mirnet lint {onnx_info.path}` for the static TensorRT check, and re-export the model if an "
        f"operator or attribute is unsupported.")


def _configure(trt: ModuleType, builder: Any, onnx_info: OnnxInfo, profiles: Sequence[Profile],
               options: TensorRTOptions) -> Any:
    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector check needs it
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compatibility:
        member = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
        if not hasattr(trt.HardwareCompatibilityLevel, member):
            raise UserError(f"TensorRT {trt.__version__} has no HardwareCompatibilityLevel.{member}; "
                            f"upgrade TensorRT or choose another level.")
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, member)
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(onnx_info.input_name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
    return config


def _read_timing_cache(config: Any, cache_file: Path) -> Any:
    """The timing cache in `cache_file` as TensorRT's object; None where the file is absent or unreadable."""
    try:
        data = cache_file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        print(f"[mirnet] timing cache {cache_file} unreadable ({error}); building without it",
              file=sys.stderr)
        return None
    return config.create_timing_cache(data) if data else None  # None for a corrupt file


def attach_timing_cache(config: Any, cache_file: Path) -> None:
    """Load the timing cache in `cache_file` into `config`; a missing, corrupt or rejected file (another
    TensorRT or GPU) falls back to a fresh cache, which `save_timing_cache` merges back afterwards."""
    cache = _read_timing_cache(config, cache_file)
    if cache is not None and config.set_timing_cache(cache, False):
        return
    if cache_file.exists():
        print(f"[mirnet] timing cache {cache_file} was rejected by TensorRT (corrupt, or from another "
              f"TensorRT version or GPU); building with a fresh one", file=sys.stderr)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        print("[mirnet] TensorRT refused an empty timing cache; building without one", file=sys.stderr)


def save_timing_cache(config: Any, cache_file: Path) -> None:
    """Merge the build's timings into `cache_file`, under a file lock so that concurrent builds add to
    each other's timings instead of overwriting them; the file is replaced atomically."""
    built = config.get_timing_cache()
    if built is None:
        print(f"[mirnet] the build had no timing cache; {cache_file} is left as it was", file=sys.stderr)
        return
    with FileLock(f"{cache_file}.lock"):
        on_disk = _read_timing_cache(config, cache_file)  # another build may have saved meanwhile
        if on_disk is not None and not built.combine(on_disk, False):
            print(f"[mirnet] could not merge {cache_file} (another TensorRT or GPU); replacing it",
                  file=sys.stderr)
        atomic_write_bytes(cache_file, bytes(built.serialize()))


def _inspect(trt: ModuleType, logger: Any, plan: Any, onnx_info: OnnxInfo, profile: Profile,
             options: TensorRTOptions) -> str:
    """The engine inspector's JSON, with input shapes set so that data types are reported."""
    runtime = trt.Runtime(logger)
    if options.version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    context.set_input_shape(onnx_info.input_name, profile.opt)
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    del inspector, context, engine  # before the runtime that deserialized them
    return info


def build_tensorrt_engine(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *,
                          profiles: Sequence[Profile], precision: str | None = None,
                          workspace_mb: int | None = None, optimization_level: int = 3,
                          timing_cache_path: str | os.PathLike | None = None,
                          version_compatible: bool = False, hardware_compatibility: str | None = None,
                          progress: bool = True) -> EngineManifest:
    """Build a TensorRT plan from an ONNX model and publish it with its manifest; returns the manifest.

    `precision` defaults to the ONNX model's `precision` metadata (fp32 if absent) and is checked
    against the built engine. The timing cache at `timing_cache_path` is loaded if it exists (a
    rejected one is replaced) and merged back after the build, which makes rebuilds (other profiles,
    other precisions) much faster.
    """
    options = TensorRTOptions(workspace_mb, optimization_level, version_compatible, hardware_compatibility)
    onnx_info, precision = _resolve(onnx_path, precision, profiles)
    target = _target()
    trt = target.trt
    started = time.perf_counter()

    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = _parse(trt, network, logger, onnx_info)
    config = _configure(trt, builder, onnx_info, profiles, options)
    cache_file = Path(timing_cache_path) if timing_cache_path else None
    if cache_file:
        attach_timing_cache(config, cache_file)
    monitor = _progress_monitor(trt) if progress else None  # must outlive the build
    if monitor is not None:
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    del parser  # it held the weights until here
    if plan is None:
        raise UserError(f"TensorRT {trt.__version__} could not build {onnx_info.path}: "
                        f"{' '.join(logger.errors[-3:]) or 'see the log above'}. Try a larger workspace "
                        f"(--workspace-mb), smaller profiles, or check the model with `mirnet lint`.")
    if cache_file:
        save_timing_cache(config, cache_file)

    inspector_json = _inspect(trt, logger, plan, onnx_info, profiles[0], options)
    problems = check_engine_precision(inspector_json, precision)
    if problems:
        raise UserError(f"The engine built from {onnx_info.path} is not {precision}: {'; '.join(problems)}. "
                        f"Nothing was written.")
    output_path = Path(output_path)
    manifest = new_manifest(
        _request(onnx_info, precision, profiles, options, target), onnx_info, output_path,
        build_options={**asdict(options), "strongly_typed": True,
                       "timing_cache": str(cache_file) if cache_file else None},
        build_seconds=time.perf_counter() - started,
        gpu_name=target.gpu.name, compute_capability=target.gpu.compute_capability,
        cuda_driver=target.driver, layer_precisions=layer_precision_counts(inspector_json))
    publish_engine(output_path, manifest, lambda tmp: tmp.write_bytes(memoryview(plan)))
    return manifest


def build_tensorrt_cached(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, *,
                          profiles: Sequence[Profile], precision: str | None = None,
                          timing_cache_path: str | os.PathLike | None = None, progress: bool = True,
                          **options: Any) -> CachedBuild:
    """`build_tensorrt_engine` into `cache_dir`, unless an engine for the same request is already there.

    `options` are `TensorRTOptions` fields. The timing cache defaults to one file per TensorRT
    version and GPU in `cache_dir`, shared by all builds there.
    """
    onnx_info, precision = _resolve(onnx_path, precision, profiles)
    target = _target()
    request = _request(onnx_info, precision, profiles, TensorRTOptions(**options), target)
    if timing_cache_path is None:
        name = f"timing.tensorrt{request.backend_version}.{slug(target.gpu.name)}.cache"
        timing_cache_path = Path(cache_dir) / name
    return build_or_reuse(request, cache_dir, lambda path: build_tensorrt_engine(
        onnx_path, path, profiles=profiles, precision=precision, timing_cache_path=timing_cache_path,
        progress=progress, **options))
