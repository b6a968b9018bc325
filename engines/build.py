"""An ONNX model into the cached engine of a backend: TensorRT, OpenVINO or ONNX Runtime.

The one entry point `mirnet build MODEL.onnx`, the chain (`pipeline.chain`) and serving share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mirnet_deploy.errors import UserError

from .cache import CachedBuild, describe_onnx
from .manifest import Profile
from .openvino_build import DEFAULT_DEVICE, build_openvino_cached
from .ort_build import build_ort_cached
from .tensorrt_build import TensorRTOptions, build_tensorrt_cached, profiles_from_resolutions


@dataclass(frozen=True)
class EngineSettings:
    """How an ONNX model becomes an engine (the `mirnet build` options), with or without the chain."""

    engine_dir: Path = Path("artifacts") / "engines"
    resolutions: tuple[tuple[int, int], ...] = ((1280, 720),)  # TensorRT: one optimization profile each
    batch: int = 1
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    threads: int | None = None  # ONNX Runtime intra-op threads
    openvino_device: str = DEFAULT_DEVICE  # OpenVINO: CPU, GPU or NPU
    progress: bool = True


def tensorrt_profiles(onnx_path: Path, settings: EngineSettings) -> list[Profile]:
    """One optimization profile per resolution, for the graph's own input channels and size multiple
    (which export took from the model family's registry entry: 6 channels for MIRNet-v2's defocus)."""
    graph = describe_onnx(onnx_path)
    return profiles_from_resolutions(settings.resolutions, batch=settings.batch,
                                     channels=graph.input_shape[1],
                                     size_multiple=int(graph.metadata.get("size_multiple", "1")))


def build_engine(onnx_path: Path, backend: str, settings: EngineSettings, *,
                 precision: str | None = None) -> CachedBuild:
    """The cached engine of `onnx_path` for 'tensorrt' (profiles from the resolutions), 'openvino' or 'ort'.

    `precision`, when given, must be the ONNX model's own (the builders refuse another), or 'bf16':
    an FP32 model that OpenVINO computes in BF16 (refused on CPUs without BF16 arithmetic).
    """
    if precision == "bf16":
        if backend != "openvino":
            raise UserError(f"BF16 runs on OpenVINO only (the FP32 model computed with the bf16 inference "
                            f"precision), not on {backend}: use --backend openvino or auto.")
        return build_openvino_cached(onnx_path, settings.engine_dir, precision="fp32",
                                     device=settings.openvino_device, inference_precision="bf16")
    if backend == "tensorrt":
        profiles = tensorrt_profiles(onnx_path, settings)
        return build_tensorrt_cached(onnx_path, settings.engine_dir, profiles=profiles, precision=precision,
                                     progress=settings.progress, **asdict(settings.tensorrt))
    if backend == "openvino":
        return build_openvino_cached(onnx_path, settings.engine_dir, precision=precision,
                                     device=settings.openvino_device)
    return build_ort_cached(onnx_path, settings.engine_dir, precision=precision, threads=settings.threads)
