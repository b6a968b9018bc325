"""`mirnet triton-repo`: a Triton Inference Server model repository from an artifact of the chain.

    <repo>/<name>/config.pbtxt
    <repo>/<name>/<version>/model.plan | model.onnx
    <repo>/<name>/<version>/model.plan.json | model.onnx.json   (the engine manifest, when there is one)

The I/O names, element types and ranks come from the ONNX model (for a TensorRT plan: the ONNX
it was built from, checked by hash against its manifest); TensorRT plans also bound the batch
size and spatial dims by their optimization profiles. A version folder is staged under a name
Triton ignores (not a number) and renamed into place, so a polling server never loads half a
version; the config is validated with Triton's schema before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.cache import OnnxInfo, check_engine_file, describe_onnx, precision_family, slug
from engines.manifest import BACKEND_NAMES, EngineManifest, Profile, load_manifest, manifest_path
from export.onnx_read import load_onnx
from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import TAG_PATTERN, remove_stale, writer_is_gone, writer_tag
from mirnet_deploy.locks import artifact_lock

from .triton_config import (
    ONNX_TO_TRITON_TYPE,
    TensorSpec,
    TritonModel,
    config_text,
    default_preferred_batch_sizes,
    validate_config_text,
)

#: platform -> (Triton platform, Triton backend, file name in the version folder)
PLATFORMS = {
    "tensorrt": ("tensorrt_plan", "tensorrt", "model.plan"),
    "onnxruntime": ("onnxruntime_onnx", "onnxruntime", "model.onnx"),
    "openvino": ("", "openvino", "model.onnx"),
}
#: The largest batch written for ONNX models, whose batch dimension has no upper bound of its own.
DEFAULT_ONNX_MAX_BATCH = 4
#: ONNX Runtime's TensorRT execution provider inside Triton: workspace and engine cache.
ORT_TRT_WORKSPACE_BYTES = 1 << 30
TRT_EP_PRECISIONS = ("FP32", "FP16", "INT8")


@dataclass(frozen=True)
class RepoOptions:
    """The `mirnet triton-repo` flags."""

    platform: str = "auto"  # auto | tensorrt | onnxruntime | openvino
    device: str = "cpu"  # cpu | gpu (TensorRT plans: always gpu)
    name: str | None = None
    version: int | None = None  # None: one above the highest existing version
    max_batch_size: int | None = None  # None: the engine's bound, or DEFAULT_ONNX_MAX_BATCH
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = 100
    dynamic_batching: bool = True
    instances: int = 1
    trt_precision: str | None = None  # ONNX Runtime + TensorRT EP: FP32 | FP16 | INT8 (None: from the model)
    onnx: Path | None = None  # the ONNX a TensorRT plan was built from, when its manifest's path is stale
    overwrite: bool = False


@dataclass(frozen=True)
class Artifact:
    """What goes into the repository: the model file, its ONNX facts and its manifest if it has one."""

    model_file: Path
    onnx: OnnxInfo
    manifest: EngineManifest | None
    precision: str


@dataclass(frozen=True)
class RepoResult:
    """What was written: the model's config, the new version folder, and notes for the user."""

    config_path: Path  # <repo>/<name>/config.pbtxt
    version_dir: Path  # <repo>/<name>/<version>
    config: str  # the config's text, as written and validated
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------
# Reading the artifact


def read_artifact(path: Path, onnx_override: Path | None = None) -> Artifact:
    """An engine (with `<engine>.json`), its manifest file, or a plain ONNX model."""
    if path.name.endswith(".json"):
        engine = path.with_name(path.name.removesuffix(".json"))
    elif path.suffix == ".onnx" and not manifest_path(path).exists():
        info = describe_onnx(path)
        return Artifact(path, info, None, precision_family(info.metadata.get("precision", "fp32")))
    else:
        engine = path
    manifest = load_manifest(engine)  # UserError when missing or corrupt
    if not engine.is_file():
        raise UserError(f"The manifest {manifest_path(engine)} is there but its engine {engine} is not.")
    check_engine_file(engine, manifest)
    source = onnx_override or Path(manifest.onnx_path)
    if manifest.backend == "onnxruntime" and onnx_override is None:
        source = engine  # ONNX Runtime's optimized model is itself an ONNX file with the same I/O
    elif not source.is_file():
        raise UserError(f"The I/O names and types of {engine.name} are read from the ONNX model it was built "
                        f"from, {source}, which is not there. Pass it with --onnx.")
    info = describe_onnx(source)
    if source != engine and info.sha256 != manifest.onnx_sha256:
        raise UserError(f"{source} is not the ONNX model {engine.name} was built from (its manifest records "
                        f"sha256 {manifest.onnx_sha256[:12]}…, the file has {info.sha256[:12]}…).")
    return Artifact(engine, info, manifest, precision_family(manifest.precision))


def _refuse_external_data(path: Path) -> None:
    """Triton wants a multi-file ONNX as a folder `model.onnx/`; this writer copies single files only."""
    graph = load_onnx(path, load_external_data=False).graph
    if any(tensor.external_data for tensor in graph.initializer):
        raise UserError(f"{path} keeps its weights in separate files (ONNX external data); triton-repo "
                        f"copies single-file models only. Save it with the weights inside (onnx.save with "
                        f"save_as_external_data=False, models under 2 GB).")


def onnx_tensors(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's inputs and outputs with full shapes (-1 = dynamic), batch dimension included."""
    graph = load_onnx(path, load_external_data=False).graph
    weights = {init.name for init in graph.initializer}

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        data_type = ONNX_TO_TRITON_TYPE.get(tensor.elem_type)
        if data_type is None:
            raise UserError(f"{path}: {value.name!r} has ONNX element type {tensor.elem_type}, which this "
                            f"toolkit does not map to a Triton type.")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorSpec(value.name, data_type, dims)

    inputs = tuple(spec(v) for v in graph.input if v.name not in weights)
    return inputs, tuple(spec(v) for v in graph.output)


# ---------------------------------------------------------------------------------------------------
# From the artifact to a TritonModel


def resolve_platform(requested: str, artifact: Artifact) -> str:
    """The platform to write; a manifest of another backend than the one asked for is refused."""
    built_for = artifact.manifest.backend if artifact.manifest else None
    if built_for == "openvino":
        raise UserError(f"{artifact.model_file.name} is OpenVINO's compiled model, which Triton's OpenVINO "
                        f"backend does not load (it takes an ONNX model or OpenVINO IR): pass the ONNX model "
                        f"it was built from ({artifact.onnx.path}) with --platform openvino.")
    if requested == "auto":
        return built_for or "onnxruntime"
    if built_for == "tensorrt" and requested != "tensorrt":
        raise UserError(f"{artifact.model_file.name} is a TensorRT plan; it cannot be served by Triton's "
                        f"{requested} backend. Pass the ONNX model ({artifact.onnx.path}) for {requested}.")
    if built_for == "onnxruntime" and requested != "onnxruntime":
        raise UserError(f"{artifact.model_file.name} is ONNX Runtime's optimized model (manifest backend "
                        f"{BACKEND_NAMES['onnxruntime']}); for {requested}, pass the ONNX model it was made "
                        f"from ({artifact.onnx.path}), or for tensorrt a plan `mirnet build` made from it.")
    if built_for is None and requested == "tensorrt":
        raise UserError(f"{artifact.model_file} is an ONNX model, not a TensorRT plan: build one on the GPU "
                        f"machine with `mirnet build {artifact.model_file}` and pass the engine.")
    return requested


def _batch_bounds(artifact: Artifact, inputs: Sequence[TensorSpec]) -> int:
    """The largest max_batch_size the artifact allows; 0 when its batch dimension is fixed."""
    if any(not spec.dims or spec.dims[0] != -1 for spec in inputs):
        return 0
    profiles = artifact.manifest.profile_list() if artifact.manifest else []
    if not profiles:
        return -1  # no bound of its own
    if any(p.min[0] > 1 for p in profiles):
        return 0  # a request of one image would fit no profile
    return min(p.max[0] for p in profiles)  # whichever profile Triton picks takes the whole batch


def _max_batch_size(requested: int | None, bound: int, artifact: Artifact) -> int:
    if bound == 0:
        if requested:
            raise UserError(f"{artifact.model_file.name} cannot batch (its batch dimension is fixed, or a "
                            f"profile's smallest batch is above 1): use --max-batch-size 0.")
        return 0
    if requested is None:
        return DEFAULT_ONNX_MAX_BATCH if bound < 0 else bound
    if bound > 0 and requested > bound:
        raise UserError(f"--max-batch-size {requested} exceeds what the optimization profiles of "
                        f"{artifact.model_file.name} take ({bound} images in each); rebuild with "
                        f"`mirnet build --batch {requested}` or lower it.")
    return requested


def _profile_dims(spec: TensorSpec, profiles: Sequence[Profile]) -> tuple[int, ...]:
    """A TensorRT input's dims: fixed where the ONNX or every profile fixes them, else -1.

    The batch dimension stays as the ONNX has it: its range is max_batch_size's business, and a
    batch-1 plan keeps max_batch_size 1, so clients send the same tensors to every model.
    """
    dims = list(spec.dims)
    for i in range(1, len(dims)):
        values = {p.min[i] for p in profiles} | {p.max[i] for p in profiles}
        if dims[i] == -1 and len(values) == 1:
            dims[i] = values.pop()
    return tuple(dims)


def _triton_tensors(specs: Sequence[TensorSpec], batched: bool) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(s.name, s.data_type, s.dims[1:] if batched else s.dims) for s in specs)


def triton_model(artifact: Artifact, options: RepoOptions) -> tuple[TritonModel, list[str]]:
    """The model config for this artifact and these flags, and notes for the user."""
    platform = resolve_platform(options.platform, artifact)
    triton_platform, backend, filename = PLATFORMS[platform]
    device = "gpu" if platform == "tensorrt" else options.device
    if platform == "openvino" and device == "gpu":
        raise UserError("Triton's OpenVINO backend runs on CPU instances only: use --device cpu, or "
                        "--platform onnxruntime --device gpu.")
    if artifact.manifest and artifact.manifest.backend == "onnxruntime" and device == "gpu":
        raise UserError(f"{artifact.model_file.name} is ONNX Runtime's model optimized for a CPU; for GPU "
                        f"serving pass the ONNX model it was made from ({artifact.onnx.path}).")
    if platform != "tensorrt":
        _refuse_external_data(artifact.model_file)
    inputs, outputs = onnx_tensors(artifact.onnx.path)
    profiles = artifact.manifest.profile_list() if platform == "tensorrt" and artifact.manifest else []
    if profiles:
        inputs = (TensorSpec(inputs[0].name, inputs[0].data_type, _profile_dims(inputs[0], profiles)),
                  *inputs[1:])
    max_batch = _max_batch_size(options.max_batch_size, _batch_bounds(artifact, inputs), artifact)
    batching = options.dynamic_batching and max_batch > 0
    preferred = options.preferred_batch_sizes
    if preferred is None:
        preferred = default_preferred_batch_sizes(max_batch, [p.opt[0] for p in profiles]) if batching else ()
    notes = []
    if profiles and max_batch == 1:
        notes.append("the plan's profiles take one image at a time, so Triton cannot batch requests: "
                     "rebuild with `mirnet build --batch N` for batches of up to N.")
    parameters: dict[str, str] = {}
    accelerator = None
    if platform == "onnxruntime" and device == "gpu":
        precision = options.trt_precision or ("INT8" if artifact.precision == "int8" else "FP16")
        accelerator = {"precision_mode": precision, "max_workspace_size_bytes": str(ORT_TRT_WORKSPACE_BYTES),
                       "trt_engine_cache_enable": "true"}
        if precision == "FP16" and artifact.precision == "fp32":
            notes.append("ONNX Runtime's TensorRT provider may run this FP32 model's layers in FP16 "
                         "(precision_mode FP16); pass --trt-precision FP32 to keep FP32.")
    if platform == "openvino":
        if max_batch > 1:
            parameters["ENABLE_BATCH_PADDING"] = "YES"  # the backend compiles for max_batch_size images
        if artifact.precision == "fp32":
            notes.append("Triton's OpenVINO backend takes no FP32 precision hint (its parameters are "
                         "INFERENCE_NUM_THREADS, COMPILATION_NUM_THREADS, HINT_BF16, NUM_STREAMS and "
                         "PERFORMANCE_HINT; other keys are ignored): on a CPU with "
                         "BF16 (AMX, AVX512-BF16) OpenVINO's default inference precision is BF16. Serve FP32 "
                         "models with --platform onnxruntime there.")
    model = TritonModel(
        name=options.name or slug(artifact.model_file.name.split(".")[0], 64),
        platform=triton_platform, backend=backend, model_filename=filename,
        inputs=_triton_tensors(inputs, max_batch > 0), outputs=_triton_tensors(outputs, max_batch > 0),
        max_batch_size=max_batch, instance_kind="KIND_GPU" if device == "gpu" else "KIND_CPU",
        instance_count=options.instances, preferred_batch_sizes=tuple(preferred),
        max_queue_delay_us=options.max_queue_delay_us, dynamic_batching=batching,
        profiles=tuple(str(i) for i in range(len(profiles))) if len(profiles) > 1 else (),
        gpu_accelerator=accelerator, parameters=parameters)
    return model, notes


# ---------------------------------------------------------------------------------------------------
# Writing the repository


def _next_version(model_dir: Path) -> int:
    existing = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(existing, default=0) + 1


def _stage_version(staging: Path, artifact: Artifact, filename: str) -> None:
    staging.mkdir(parents=True)
    shutil.copyfile(artifact.model_file, staging / filename)
    with open(staging / filename, "rb") as handle:
        os.fsync(handle.fileno())
    if artifact.manifest:
        atomic_write_text(manifest_path(staging / filename), artifact.manifest.to_json())


def _recover_killed_writes(model_dir: Path) -> None:
    """Undo what killed runs left in `model_dir` (leftovers.py): a version a run moved aside to overwrite
    it goes back into place if the run died before its replacement took that place, else away; staged
    versions go away. Callers hold the model folder's lock, so no live run is mid-publish here."""
    for aside in model_dir.glob(".replaced-*"):
        match = re.fullmatch(r"\.replaced-" + TAG_PATTERN + r"-(?P<version>\d+)", aside.name)
        place = model_dir / match["version"] if match else None
        if place and writer_is_gone(match["host"], int(match["pid"])) and not place.exists():
            aside.rename(place)  # killed between _publish_version's two renames
    remove_stale(model_dir, r"\.(partial|replaced)-" + TAG_PATTERN + r"-\d+")


def _publish_version(staging: Path, version_dir: Path) -> None:
    """Rename the staged folder into place; a version being overwritten is moved aside first, then deleted."""
    old = staging.with_name(staging.name.replace(".partial-", ".replaced-"))
    if version_dir.exists():
        version_dir.rename(old)
    staging.rename(version_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_repository(artifact_path: Path, repo: Path, options: RepoOptions) -> RepoResult:
    """Write one model version and its config into `repo`; nothing is written if anything is refused."""
    artifact = read_artifact(artifact_path, options.onnx)
    model, notes = triton_model(artifact, options)
    text = config_text(model)
    profile_count = len(artifact.manifest.profiles) if artifact.manifest and model.profiles else None
    config_path = repo / model.name / "config.pbtxt"
    validate_config_text(text, str(config_path), profile_count=profile_count)
    model_dir = repo / model.name
    with artifact_lock(model_dir):
        _recover_killed_writes(model_dir)
        version = options.version or _next_version(model_dir)
        version_dir = model_dir / str(version)
        if version_dir.exists() and not options.overwrite:
            raise UserError(f"{version_dir} already exists: pass --overwrite to replace it, or another "
                            f"--version (without --version the next free number is used).")
        staging = model_dir / f".partial-{writer_tag()}-{version}"
        try:
            _stage_version(staging, artifact, model.model_filename)
            _publish_version(staging, version_dir)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(staging)
        atomic_write_text(config_path, text)
    return RepoResult(config_path, version_dir, text, tuple(notes))
