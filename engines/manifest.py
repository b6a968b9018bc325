"""The manifest that ships next to every engine (`<engine>.json`), and the checks made with it.

Engines are not portable: a TensorRT plan runs only with the TensorRT version and
the GPU model it was built for, and a mismatch crashes instead of raising. The
manifest records what the engine was built from and for, so that loading can
refuse with a readable message *before* TensorRT is touched. The engine and its
manifest are published as a pair (`publish_engine`): a reader never finds a new
engine vouched for by an old manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from types import UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin, get_type_hints

from mirnet_deploy import __version__
from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import TAG_PATTERN, remove_stale, writer_tag

from .probe import version_tuple

MANIFEST_FORMAT = 1

#: How messages name the backends that manifests record.
BACKEND_NAMES = {"tensorrt": "TensorRT", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}

Shape = tuple[int, ...]  # NCHW


class Profile(NamedTuple):
    """A TensorRT optimization profile of the image input: kernels tuned for `opt`, valid in [min, max]."""

    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Shape) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict[str, list[int]]) -> Profile:
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


@dataclass
class EngineManifest:
    engine_file: str  # file name of the engine, next to this manifest
    backend: str  # "tensorrt" | "onnxruntime" | "openvino"
    backend_version: str
    precision: str  # as the ONNX declares it: fp32, fp16, int8-...
    onnx_path: str
    onnx_sha256: str
    profiles: list[dict[str, list[int]]]  # [{min, opt, max}]; empty: any shape (ONNX Runtime)
    build_options: dict[str, Any]
    build_seconds: float
    built_at: str  # ISO 8601, UTC
    cache_key: str
    gpu_name: str | None = None
    compute_capability: str | None = None
    cuda_driver: str | None = None
    cpu_model: str | None = None  # the CPU an ONNX Runtime optimized model is tied to
    layer_precisions: dict[str, int] | None = None  # TensorRT layers per data type, from the inspector
    parity: dict[str, Any] | None = None  # filled by the parity stage
    device: str | None = None  # OpenVINO: the device compiled for ("CPU", "GPU", "NPU")
    device_name: str | None = None  # OpenVINO: that device's FULL_DEVICE_NAME, which the model is tied to
    inference_precision: str | None = None  # OpenVINO: the INFERENCE_PRECISION_HINT compiled with (f32, bf16)
    selection: dict[str, Any] | None = None  # `auto` on a CPU: the measurement that chose this engine
    # From the ONNX metadata, for runners that never open the ONNX (libmirnet): what to pad H and W to
    # (the graph pads to it too; padding outside to the same multiple keeps the result identical),
    # output pixels per input pixel, and the task. None in manifests written before they were recorded.
    task: str | None = None
    size_multiple: int | None = None
    scale: int | None = None
    toolkit_version: str = __version__
    format: int = MANIFEST_FORMAT

    @property
    def compute_precision(self) -> str:
        """The arithmetic parity is judged by: the ONNX precision's family (fp32, fp16, int8), or bf16 for an
        FP32 model that OpenVINO computes in BF16."""
        return "bf16" if self.inference_precision == "bf16" else self.precision.split("-", 1)[0]

    @property
    def precision_label(self) -> str:
        """The precision as users read it: the model's (fp32, int8-cpu, ...), and the arithmetic where it
        differs (an FP32 model OpenVINO computes in BF16 is no FP32 engine)."""
        if self.compute_precision == self.precision.split("-", 1)[0]:
            return self.precision
        return f"{self.precision} model in {self.compute_precision} arithmetic"

    def profile_list(self) -> list[Profile]:
        return [Profile.from_dict(p) for p in self.profiles]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def manifest_path(engine_path: str | os.PathLike) -> Path:
    """`x.engine` -> `x.engine.json` (the full name is kept so `.engine` and `.ort.onnx` never collide)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_manifest(manifest: EngineManifest, engine_path: str | os.PathLike) -> Path:
    path = manifest_path(engine_path)
    atomic_write_text(path, manifest.to_json())
    return path


def load_manifest(engine_path: str | os.PathLike) -> EngineManifest:
    """Read `<engine>.json`; a missing, corrupt or too-new manifest is a UserError that says to rebuild."""
    path = manifest_path(engine_path)
    rebuild = (f"Rebuild the engine with `mirnet build` (it writes the manifest), or pass the ONNX model "
               f"instead of {Path(engine_path).name} to run it with ONNX Runtime.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"Engine {engine_path} has no manifest ({path.name} is missing), so there is no way "
                        f"to check which GPU, TensorRT version and ONNX model it was built for before "
                        f"loading it, and a mismatched engine crashes. {rebuild}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"The manifest {path} of engine {engine_path} cannot be read ({exc}). "
                        f"{rebuild}") from None
    if not isinstance(data, dict):
        raise UserError(f"The manifest {path} is not a JSON object. {rebuild}")
    if isinstance(data.get("format"), int) and data["format"] > MANIFEST_FORMAT:
        raise UserError(f"The manifest {path} has format {data['format']}, newer than this toolkit "
                        f"({__version__}) reads ({MANIFEST_FORMAT}). Upgrade mirnet-deploy. {rebuild}")
    required = {f.name for f in fields(EngineManifest) if f.default is MISSING}
    missing = sorted(required - data.keys())
    if missing:
        raise UserError(f"The manifest {path} lacks {', '.join(missing)}. {rebuild}")
    hints = get_type_hints(EngineManifest)
    known = {name: value for name, value in data.items() if name in hints}
    wrong = [name for name, value in known.items() if not _conforms(value, hints[name])]
    if not wrong:
        wrong = [f"profiles[{i}]" for i, shapes in enumerate(known["profiles"]) if not _valid_profile(shapes)]
    if wrong:
        raise UserError(f"The manifest {path} has values of the wrong kind in {', '.join(wrong)} (edited by "
                        f"hand?). {rebuild}")
    return EngineManifest(**known)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a manifest field's type hint (str, int, float, lists, dicts, unions)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, UnionType):
        return any(_conforms(value, option) for option in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(key, str) and _conforms(item, args[1])
                                               for key, item in value.items())
    if hint in (int, float):  # JSON has one number type; bool is not a number here
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _valid_profile(profile: dict[str, list[int]]) -> bool:
    """{min, opt, max}: NCHW shapes of one rank, positive, with min <= opt <= max."""
    if sorted(profile) != ["max", "min", "opt"] or len({len(shape) for shape in profile.values()}) != 1:
        return False
    return all(0 < lo <= opt <= hi for lo, opt, hi in zip(profile["min"], profile["opt"], profile["max"],
                                                           strict=True))


def update_manifest(engine_path: str | os.PathLike, **changes: Any) -> EngineManifest:
    """Record later stages' findings (parity, auto's selection) in an engine's manifest."""
    manifest = load_manifest(engine_path)
    for name, value in changes.items():
        setattr(manifest, name, value)
    write_manifest(manifest, engine_path)
    return manifest


def update_parity(engine_path: str | os.PathLike, parity: dict[str, Any]) -> EngineManifest:
    """Record the parity stage's summary in an engine's manifest."""
    return update_manifest(engine_path, parity=parity)


def publish_engine(engine_path: str | os.PathLike, manifest: EngineManifest,
                   produce: Callable[[Path], None]) -> Path:
    """Write an engine and then its manifest; on any failure leave neither.

    `produce(tmp)` writes the engine to a temporary path in the same folder (TensorRT
    bytes, or ONNX Runtime saving an optimized model). The old manifest goes first,
    so an interrupted rebuild can never leave a new engine under an old manifest.
    """
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = manifest_path(engine_path)
    # Keep the engine's suffix last: ONNX Runtime picks the saved format from it. A killed build's
    # partial engine of this name goes first (leftovers.py).
    remove_stale(engine_path.parent, r"\.partial-" + TAG_PATTERN + "-" + re.escape(engine_path.name))
    tmp = engine_path.with_name(f".partial-{writer_tag()}-{engine_path.name}")
    try:
        sidecar.unlink(missing_ok=True)
        produce(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, engine_path)
        write_manifest(manifest, engine_path)
    except BaseException:
        for leftover in (tmp, engine_path, sidecar):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    return engine_path


def _gpu_problem(manifest: EngineManifest, gpu_name: str | None, cc: str | None) -> str | None:
    """Why this GPU (compute capability `cc`) cannot run the engine, given its hardware compatibility."""
    level = manifest.build_options.get("hardware_compatibility")
    built = f"the GPU {manifest.gpu_name} (compute capability {manifest.compute_capability})"
    here = f"{gpu_name} (compute capability {cc})" if gpu_name else f"of compute capability {cc}"
    if level == "ampere_plus":
        if cc and version_tuple(cc) < (8, 0):
            return f"it was built hardware-compatible for Ampere and newer GPUs, but this GPU is {here}"
        return None
    other_sm = bool(cc and manifest.compute_capability and cc != manifest.compute_capability)
    other_model = level != "same_compute_capability" and bool(
        gpu_name and manifest.gpu_name and gpu_name != manifest.gpu_name)
    return f"it was built for {built} but this GPU is {here}" if other_sm or other_model else None


def _version_problem(manifest: EngineManifest, backend_version: str) -> str | None:
    built, here = version_tuple(manifest.backend_version), version_tuple(backend_version)
    if manifest.build_options.get("version_compatible"):
        # Version-compatible plans run on later TensorRT of the same major, and 10.x plans on 11.x.
        if here >= built and here[:1] <= (built[0] + 1,):
            return None
    elif backend_version == manifest.backend_version:
        return None
    backend = BACKEND_NAMES.get(manifest.backend, manifest.backend)
    return f"it was built with {backend} {manifest.backend_version} but this machine has {backend_version}"


def check_manifest(manifest: EngineManifest, *, onnx_sha256: str | None = None, backend: str | None = None,
                   backend_version: str | None = None, gpu_name: str | None = None,
                   compute_capability: str | None = None, cpu_model: str | None = None) -> None:
    """Raise UserError naming every way this engine does not fit here; arguments left None are not checked."""
    problems = []
    if backend and backend != manifest.backend:
        built = BACKEND_NAMES.get(manifest.backend, manifest.backend)
        problems.append(f"it is {'an' if built[:1] in 'AEIOU' else 'a'} {built} engine, "
                        f"not one for {BACKEND_NAMES.get(backend, backend)}")
    if backend_version:
        problems.append(_version_problem(manifest, backend_version))
    if manifest.gpu_name or manifest.compute_capability:
        problems.append(_gpu_problem(manifest, gpu_name, compute_capability))
    if cpu_model and manifest.cpu_model and cpu_model != manifest.cpu_model:
        problems.append(f"it was optimized for the CPU {manifest.cpu_model!r} but this CPU is {cpu_model!r}")
    if onnx_sha256 and onnx_sha256 != manifest.onnx_sha256:
        problems.append(f"it was built from another ONNX model (sha256 {manifest.onnx_sha256[:12]}…, "
                        f"{manifest.onnx_path}) than the one given (sha256 {onnx_sha256[:12]}…)")
    problems = [p for p in problems if p]
    if problems:
        raise UserError(
            f"Engine {manifest.engine_file} cannot be used here: {'; '.join(problems)}. Engines run only "
            f"with the backend version and on the GPU model (or CPU) they were built for, and only for the "
            f"ONNX model they were built from. Rebuild it on this machine from the ONNX model "
            f"(`mirnet build {manifest.onnx_path}`); the cache will keep both engines.")
