"""The ONNX Runtime "engine": the model as ONNX Runtime optimized it for this CPU, saved once.

ONNX Runtime optimizes a model every time a session opens it. Saving the optimized
graph (SessionOptions.optimized_model_filepath) skips that work later, and gives
machines without TensorRT the same build -> manifest -> cache flow as GPUs. At the
`all` level the saved graph holds CPU-specific kernels (NCHWc layouts), which is why
the manifest records the CPU model and the cache key includes it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort

from calibration.ort_cpu import apply_config, session_config
from mirnet_deploy.errors import UserError

from .cache import (
    CachedBuild,
    EngineRequest,
    OnnxInfo,
    build_or_reuse,
    describe_onnx,
    new_manifest,
    resolve_precision,
)
from .cpu_graph import cache_option, cpu_graph
from .manifest import EngineManifest, publish_engine
from .probe import cpu_model

#: `optimization_level` names -> onnxruntime.GraphOptimizationLevel members.
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}

#: The optimized model is saved from the CPU provider: graphs optimized for another provider only run there.
BUILD_PROVIDERS = ["CPUExecutionProvider"]


def _request(onnx_info: OnnxInfo, precision: str, optimization_level: str) -> EngineRequest:
    """The cache key; the session config of the graph's target (unfused Q/DQ) and the graph rewrites
    (`engines.cpu_graph`) are part of what is built."""
    if optimization_level not in ORT_LEVELS:
        raise UserError(f"Unknown ONNX Runtime optimization level {optimization_level!r}: use one of "
                        f"{', '.join(ORT_LEVELS)}.")
    config = session_config(onnx_info.metadata.get("precision"))
    return EngineRequest(onnx_sha256=onnx_info.sha256, onnx_stem=onnx_info.path.stem, precision=precision,
                         backend="onnxruntime", backend_version=ort.__version__, device=cpu_model(),
                         compute_capability=None, options={"optimization_level": optimization_level,
                                                           **({"session_config": config} if config else {}),
                                                           **cache_option(precision)})


def session_options(threads: int | None = None, optimization_level: str = "all",
                    config: dict[str, str] | None = None) -> ort.SessionOptions:
    """Session options: intra-op threads (None: ONNX Runtime's default), the graph optimization level and
    session config entries (`calibration.ort_cpu.session_config`: how the graph's INT8 target computes)."""
    options = apply_config(ort.SessionOptions(), config or {})
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[optimization_level])
    options.log_severity_level = 3  # errors only: the 'hardware specific' notice is what we want here
    if threads:
        options.intra_op_num_threads = threads
    return options


def build_ort_engine(onnx_path: str | os.PathLike, output_path: str | os.PathLike, *,
                     precision: str | None = None, threads: int | None = None,
                     optimization_level: str = "all") -> EngineManifest:
    """Optimize an ONNX model with ONNX Runtime and save it atomically with its manifest (returned)."""
    onnx_info = describe_onnx(onnx_path)
    precision = resolve_precision(onnx_info, precision)
    request = _request(onnx_info, precision, optimization_level)
    output_path = Path(output_path)
    config = session_config(onnx_info.metadata.get("precision"))
    build_options: dict[str, Any] = {"optimization_level": optimization_level, "threads": threads,
                                     "providers": BUILD_PROVIDERS, "session_config": config}
    manifest = new_manifest(request, onnx_info, output_path, build_options=build_options, build_seconds=0.0,
                            cpu_model=cpu_model())

    def optimize_to(tmp: Path) -> None:
        """ONNX Runtime writes the optimized model (of the CPU graph) while it opens the session."""
        options = session_options(threads, optimization_level, config)
        options.optimized_model_filepath = str(tmp)
        started = time.perf_counter()
        graph, manifest.build_options["graph_rewrites"] = cpu_graph(onnx_info.path, precision)
        try:
            ort.InferenceSession(str(onnx_info.path) if graph is None else graph.SerializeToString(), options,
                                 providers=BUILD_PROVIDERS)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise UserError(f"ONNX Runtime {ort.__version__} could not load {onnx_info.path}: "
                            f"{exc}") from None
        manifest.build_seconds = round(time.perf_counter() - started, 3)  # written after this returns

    publish_engine(output_path, manifest, optimize_to)
    return manifest


def build_ort_cached(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, *,
                     precision: str | None = None, threads: int | None = None,
                     optimization_level: str = "all") -> CachedBuild:
    """`build_ort_engine` into `cache_dir`, unless a model optimized for the same request is there."""
    onnx_info = describe_onnx(onnx_path)
    request = _request(onnx_info, resolve_precision(onnx_info, precision), optimization_level)
    return build_or_reuse(request, cache_dir, lambda path: build_ort_engine(
        onnx_path, path, precision=precision, threads=threads, optimization_level=optimization_level))
