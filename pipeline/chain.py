"""`mirnet build --task` / `make engine`: from a task's checkpoint to a verified engine, each step cached.

    checkpoint ─export─► <task>-<sha12>.fp32.onnx ─precision─► .fp16.onnx | .int8-<target>.onnx
               ─build─► engine + manifest ─parity vs PyTorch FP32─► the manifest's parity summary

A step is skipped when what it would make already exists for the same inputs: each ONNX
file has a record (`<file>.step.json`) of the inputs it was made from (checkpoint, source
ONNX and calibration-set hashes, options, toolkit version) and of its own hash; engines have
their manifest's cache key (`cache.py`); parity is measured once per engine and kept in its
manifest. Running the chain twice therefore does the work once, and a changed checkpoint,
calibration set or resolution redoes exactly the steps that depend on it.

Orchestration, above every stage it chains (export, calibration, engines, bench's parity).
Nothing here is family-specific (DESIGN.md): the network comes from `export.network.load_network`
(any registered family, recognised by the checkpoint's keys), everything else from the task and files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibration.mixed_precision import DEFAULT_BUDGET_DB
from calibration.quantize import TWIN_TARGETS, check_calibration_task, quantization_code_sha256
from engines.build import EngineSettings, build_engine
from engines.cache import CachedBuild, precision_family
from engines.cpu_choice import (
    CHOICES_FILE,
    EngineOpener,
    candidates,
    choose_cpu_engine,
    describe_selection,
    forms,
)
from engines.manifest import EngineManifest, load_manifest, manifest_path, update_parity
from engines.runners import select_backend
from mirnet_deploy import __version__
from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.caches import use_cache
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256
from mirnet_deploy.locks import artifact_lock
from mirnet_deploy.resolutions import format_resolution

if TYPE_CHECKING:
    from torch import nn

    from engines.runners import Runner
    from engines.runners.polygraphy_adapter import PolygraphyRunner
    from export.spec import ModelSpec

#: Parity always runs here (cheap on a CPU); TensorRT engines are also checked at their resolutions.
PARITY_RESOLUTION = (256, 256)
PARITY_IMAGES = 2
STEP_RECORD_SUFFIX = ".step.json"


@dataclass(frozen=True)
class Reference:
    """What engines are checked against: PyTorch FP32 as a polygraphy runner, and the model it runs."""

    runner: PolygraphyRunner
    spec: ModelSpec


@dataclass(frozen=True)
class ChainRequest:
    """What to deploy: a task's checkpoint at a precision on a backend, and where the files go."""

    task: str
    checkpoint: Path  # of any registered family (mirnet_ref.registry), recognised by its keys
    precision: str  # fp32 | fp16 | bf16 (the FP32 model computed in BF16, OpenVINO) | int8
    backend: str = "auto"  # auto | tensorrt | ort | openvino
    artifacts: Path = Path("artifacts")  # onnx/, calibration/ and calibration-cache/ go here
    calibration: Path | None = None  # int8: a calibration set (.npz); None: the task's built-in set
    budget_db: float = DEFAULT_BUDGET_DB  # int8: the task PSNR drop vs FP32 the search must meet
    engine: EngineSettings = field(default_factory=EngineSettings)
    arch: str | None = None  # the family the checkpoint must hold (None: whichever its keys say)


@dataclass
class StepResult:
    name: str  # export, fp16, int8-<target> (one per target), choose (auto on a CPU), build, parity
    status: str  # "built" | "reused"
    path: Path  # what the step made (parity: the manifest that holds it)
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass
class ChainResult:
    backend: str  # "tensorrt" | "ort" | "openvino"
    backend_reason: str
    onnx: Path  # the ONNX model the engine was built from
    engine: Path
    manifest: EngineManifest  # with the parity summary
    steps: list[StepResult]

    @property
    def parity_passed(self) -> bool:
        return bool(self.manifest.parity and self.manifest.parity["passed"])

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "reason": self.backend_reason, "onnx": str(self.onnx),
                "engine": str(self.engine), "manifest_path": str(manifest_path(self.engine)),
                "steps": [step.to_dict() for step in self.steps], "manifest": asdict(self.manifest)}


class PyTorchSide:
    """A checkpoint's network and its PyTorch FP32 reference, each made at most once, on first use.

    One is made per `run_chain`, unless the caller passes one to share: the runs of one process that
    deploy the same checkpoint at several precisions (`mirnet build --precision fp32,fp16,int8`) then
    load the network once and compute the reference once per held-out image, not once per precision.
    """

    def __init__(self, checkpoint: Path, task: str, arch: str | None = None) -> None:
        self.checkpoint, self.task, self.arch = checkpoint, task, arch
        self._network: tuple[nn.Module, ModelSpec] | None = None
        self._reference: Reference | None = None

    def serves(self, request: ChainRequest) -> bool:
        return (self.checkpoint, self.task, self.arch) == (request.checkpoint, request.task, request.arch)

    def network(self) -> tuple[nn.Module, ModelSpec]:
        if self._network is None:
            from export.network import load_network

            self._network = load_network(self.checkpoint, self.task, self.arch)
        return self._network

    def reference(self) -> Reference:
        """PyTorch FP32: every parity check it serves (each candidate `choose` weighs, then the engine,
        at every precision) compares against one computation per held-out image."""
        if self._reference is None:
            from engines.runners import TorchRunner, as_polygraphy_runner
            from export.graph import DeploymentGraph

            module, spec = self.network()
            torch_runner = TorchRunner(DeploymentGraph(module, spec), name="pytorch-fp32")
            self._reference = Reference(as_polygraphy_runner(torch_runner, remember_outputs=True), spec)
        return self._reference


def run_chain(request: ChainRequest, on_step: Callable[[StepResult], None] | None = None,
              pytorch: PyTorchSide | None = None) -> ChainResult:
    """Export, precision, build, parity; `on_step` hears of each step as it finishes; `pytorch` shares
    the network and reference with other runs of the same checkpoint (default: this run's own).

    With backend 'tensorrt' where TensorRT cannot run, the ONNX model of the requested
    precision is made first and the UserError names it, ready to build on a GPU machine.
    """
    pytorch = pytorch or PyTorchSide(request.checkpoint, request.task, request.arch)
    if not pytorch.serves(request):
        raise ValueError(f"{pytorch.checkpoint} ({pytorch.task}) is not the checkpoint of this request")
    network, reference = pytorch.network, pytorch.reference
    precision = "bf16" if request.precision == "bf16" else precision_family(request.precision)
    steps: list[StepResult] = []

    def finished(step: StepResult) -> StepResult:
        steps.append(step)
        if on_step:
            on_step(step)
        return step

    if precision == "int8" and request.calibration:
        _check_calibration_set(request.calibration, request.task)
    fp32 = finished(_export(request, network)).path
    models = {"fp32": fp32}  # the ONNX forms the engine may be built from, by their precision
    if precision == "fp16":
        models = {"fp16": finished(_fp16(fp32)).path}
    elif precision == "int8":
        kept: dict[str, list[str]] = {}  # target -> the layers its search kept in high precision
        models = {}
        for target in _int8_targets(request.backend):
            twin_kept = kept.get(TWIN_TARGETS.get(target, ""), [])
            step = finished(_int8(request, fp32, target, try_first=twin_kept))
            models[f"int8-{target}"], kept[target] = step.path, step.details["kept_high_precision"]
    onnx_path = next(iter(models.values()))
    backend, reason = select_backend(request.backend, onnx_path)
    if backend == "cpu" or len(candidates(precision, models, backend)) > 1:
        choice = finished(_choose_on_cpu(request, precision, models, backend, reference))
        backend, reason = choice.details["chosen"], describe_selection(choice.details)
        onnx_path = models[choice.details["chosen_form"]]
    started = time.perf_counter()
    engine = build_engine(onnx_path, backend, request.engine, precision=_engine_precision(precision))
    finished(StepResult("build", "reused" if engine.reused else "built", engine.path,
                        time.perf_counter() - started, _engine_details(engine.manifest)))
    parity, manifest = _parity(request, engine, backend, reference)
    finished(parity)
    return ChainResult(backend, reason, onnx_path, engine.path, manifest, steps)


def _int8_targets(backend: str) -> list[str]:
    """The Q/DQ flavours the backend runs: TensorRT's for 'tensorrt' (also where TensorRT is missing:
    that ONNX is what the GPU machine will build) and for 'auto' where TensorRT is usable; on a CPU,
    every INT8 form that a candidate engine of the backend runs (`engines.cpu_choice.CANDIDATES`),
    which the choose step measures against each other."""
    if backend == "tensorrt" or select_backend(backend)[0] == "tensorrt":
        return ["tensorrt"]
    return [form.removeprefix("int8-") for form in forms("int8", select_backend(backend)[0])] or ["cpu"]


def _engine_precision(precision: str) -> str | None:
    """What `build_engine` is asked for: bf16, or nothing (the ONNX model's own precision)."""
    return "bf16" if precision == "bf16" else None


# ---------------------------------------------------------------------------------------------------
# ONNX steps, cached by the inputs they were made from


def _cached_step(name: str, output: Path, key: dict[str, Any],
                 make: Callable[[Path], dict[str, Any]]) -> StepResult:
    """Reuse `output` if its record says it was made from `key` and the file is unchanged, else make it.

    `make(output)` writes the file (atomically) and returns the details worth reporting, which the
    record keeps so that a reused step reports them too.
    """
    started = time.perf_counter()
    use_cache(output.parent)
    record_path = output.with_name(output.name + STEP_RECORD_SUFFIX)
    key = {**key, "toolkit_version": __version__}
    with artifact_lock(output):  # a concurrent run making the same file waits, then reuses it
        record = _read_record(record_path)
        if record.get("key") == key and output.is_file() and file_sha256(output) == record.get("sha256"):
            details = record.get("details", {})
            return StepResult(name, "reused", output, time.perf_counter() - started, details)
        record_path.unlink(missing_ok=True)  # an old record must never vouch for a new file
        details = make(output)
        atomic_write_text(record_path, json.dumps({"step": name, "key": key, "sha256": file_sha256(output),
                                                   "details": details}, indent=2) + "\n")
    return StepResult(name, "built", output, time.perf_counter() - started, details)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _variant(fp32: Path, precision: str) -> Path:
    """`denoise-3f9c0a1b2c4d.fp32.onnx` -> `denoise-3f9c0a1b2c4d.<precision>.onnx`."""
    return fp32.with_name(fp32.name.removesuffix(".fp32.onnx") + f".{precision}.onnx")


def _export(request: ChainRequest, network: Callable[[], tuple[nn.Module, ModelSpec]]) -> StepResult:
    from export.onnx_file import DEFAULT_OPSET
    from export.verified import export_verified

    checkpoint_sha256 = file_sha256(request.checkpoint)
    output = request.artifacts / "onnx" / f"{request.task}-{checkpoint_sha256[:12]}.fp32.onnx"

    def export(path: Path) -> dict[str, Any]:
        report = export_verified(*network(), path, opset=DEFAULT_OPSET)
        return {"checkpoint": str(request.checkpoint), "verified_shapes": len(report.checks),
                "max_abs_error_vs_pytorch": report.max_abs_error}

    key = {"checkpoint_sha256": checkpoint_sha256, "task": request.task, "opset": DEFAULT_OPSET}
    return _cached_step("export", output, key, export)


def _fp16(fp32: Path) -> StepResult:
    def convert(path: Path) -> dict[str, Any]:
        from export.precision import DEFAULT_FP32_OPS, convert_to_fp16  # onnx_ir: ~0.5 CPU-s, when made

        convert_to_fp16(fp32, path)
        return {"kept_fp32_op_types": list(DEFAULT_FP32_OPS)}

    return _cached_step("fp16", _variant(fp32, "fp16"), {"source_sha256": file_sha256(fp32)}, convert)


def _check_calibration_set(path: Path, task: str) -> None:
    """Refuse a --calib that is no calibration set, or one of another task, before the export's work."""
    from calibration.dataset import CalibrationSet

    with CalibrationSet(path) as calib:
        check_calibration_task(calib, task)


def _int8(request: ChainRequest, fp32: Path, target: str, try_first: list[str]) -> StepResult:
    """INT8 Q/DQ for `target` (tensorrt | cpu | cpu-symmetric) within the PSNR budget, trying the layers
    `try_first` first (its twin target's: `TWIN_TARGETS`); the report names the layers kept."""
    from calibration.dataset import CalibrationSet, default_calibration_set
    from calibration.mixed_precision import search_mixed_precision

    calibration = request.calibration or default_calibration_set(request.task,
                                                                 request.artifacts / "calibration")
    with CalibrationSet(calibration) as calib:
        calibration_sha256 = calib.sha256

    def quantize(path: Path) -> dict[str, Any]:
        report = search_mixed_precision(fp32, path, target=target, calibration=calibration,
                                        budget_db=request.budget_db, threads=request.engine.threads,
                                        cache_dir=request.artifacts / "calibration-cache",
                                        progress=request.engine.progress, try_first=try_first)
        full_int8 = report.full_int8  # None: not measured, the twin target's layers passed first
        return {"target": target, "calibration_set": str(calibration), "budget_db": report.budget_db,
                "fp32_task_psnr_db": report.fp32_task_psnr_db,
                "full_int8_drop_db": None if full_int8 is None else full_int8.drop_db,
                "drop_db": report.final.drop_db, "quantized_layers": len(report.quantize.quantized_layers),
                "kept_high_precision": report.kept_high_precision, "warnings": report.warnings}

    key = {"source_sha256": file_sha256(fp32), "target": target, "calibration_sha256": calibration_sha256,
           "budget_db": request.budget_db, "quantization_code_sha256": quantization_code_sha256(),
           **({"try_first": try_first} if try_first else {})}
    return _cached_step(f"int8-{target}", _variant(fp32, f"int8-{target}"), key, quantize)


def _engine_details(manifest: EngineManifest) -> dict[str, Any]:
    details = {"backend_version": manifest.backend_version, "precision": manifest.precision,
               "build_seconds": manifest.build_seconds}
    if manifest.gpu_name:
        details |= {"gpu": manifest.gpu_name, "profiles": manifest.profiles,
                    "layer_precisions": manifest.layer_precisions}
    return details


# ---------------------------------------------------------------------------------------------------
# Parity, measured once per engine


def parity_resolutions(manifest: EngineManifest, requested: Sequence[tuple[int, int]]) -> list[str]:
    """256x256, plus the requested resolutions for TensorRT: those inside one of the engine's profiles."""
    if manifest.backend != "tensorrt":
        return [format_resolution(PARITY_RESOLUTION)]
    profiles = manifest.profile_list()
    candidates = dict.fromkeys([PARITY_RESOLUTION, *requested])
    return [format_resolution((width, height)) for width, height in candidates
            if any(p.contains((1, p.min[1], height, width)) for p in profiles)]


def _parity(request: ChainRequest, engine: CachedBuild, backend: str, reference: Callable[[], Reference],
            opener: EngineOpener | None = None) -> tuple[StepResult, EngineManifest]:
    """The engine against PyTorch FP32 on held-out photographs; kept in the manifest, so measured once.
    `opener`: the choose step's, whose runner of the engine its timing reuses (default: opened here)."""
    started = time.perf_counter()
    resolutions = parity_resolutions(engine.manifest, request.engine.resolutions)
    with artifact_lock(manifest_path(engine.path)):  # measured once, also by concurrent runs
        manifest, status = load_manifest(engine.path), "reused"
        measured = manifest.parity or {}
        if measured.get("resolutions") != resolutions or measured.get("images") != PARITY_IMAGES:
            summary = measure_parity(engine.path, backend, reference(), request.task, resolutions,
                                     manifest.compute_precision, threads=request.engine.threads,
                                     runner=opener(engine.path) if opener else None)
            manifest, status = update_parity(engine.path, summary), "built"
    step = StepResult("parity", status, manifest_path(engine.path), time.perf_counter() - started,
                      manifest.parity)
    return step, manifest


def _choose_on_cpu(request: ChainRequest, precision: str, models: dict[str, Path], backend: str,
                   reference: Callable[[], Reference]) -> StepResult:
    """`auto` on a CPU (or one CPU runtime with several INT8 forms): every candidate engine built and
    parity-checked, timed side by side, the fastest that passes chosen (engines/cpu_choice.py, which
    records the measurement in its manifest)."""
    started = time.perf_counter()

    def prepare(runtime: str, onnx_path: Path, opener: EngineOpener) -> tuple[Path, bool]:
        engine = build_engine(onnx_path, runtime, request.engine, precision=_engine_precision(precision))
        _, manifest = _parity(request, engine, runtime, reference, opener)
        return engine.path, bool(manifest.parity and manifest.parity["passed"])

    selection = choose_cpu_engine(precision, models, request.engine.engine_dir, prepare, backend=backend,
                                  threads=request.engine.threads, resolution=PARITY_RESOLUTION)
    return StepResult("choose", "reused" if selection["reused"] else "built",
                      request.engine.engine_dir / CHOICES_FILE, time.perf_counter() - started, selection)


def measure_parity(engine_path: str | os.PathLike, backend: str, reference: Reference, task: str,
                   resolutions: Sequence[str], precision: str, *, threads: int | None = None,
                   runner: Runner | None = None) -> dict[str, Any]:
    """`mirnet parity`'s comparison for an engine: the parity summary its manifest records. `runner`: the
    engine already opened (by the choose step, which times it next); default: opened and closed here."""
    from bench.parity import THRESHOLDS, parity_cases, rows_to_dict, run_parity
    from engines.runners import as_polygraphy_runner, open_runner
    from mirnet_deploy.resolutions import parse_resolution

    if not resolutions:
        raise UserError(f"No parity resolution fits the optimization profiles of {engine_path}: add 256 "
                        f"or the deployment resolutions to --res.")
    cases = parity_cases(task, [parse_resolution(r) for r in resolutions], PARITY_IMAGES, sr_scale=1)
    with ExitStack() as stack:
        if runner is None:  # the ONNX Runtime engine was optimized for the CPU provider, so it runs there
            providers = "cpu" if backend == "ort" else "auto"
            runner = stack.enter_context(open_runner(engine_path, providers=providers, threads=threads))
        rows = run_parity(reference.runner, as_polygraphy_runner(runner), cases, precision)
    return {"reference": "pytorch-fp32", "checkpoint_sha256": reference.spec.checkpoint_sha256,
            "precision": precision,
            "thresholds": THRESHOLDS[precision], "resolutions": list(resolutions), "images": PARITY_IMAGES,
            "passed": all(row.passed for row in rows), "results": rows_to_dict(rows),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
