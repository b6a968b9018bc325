"""`mirnet build`: an ONNX model into a cached engine, or a task's weights through the whole chain.

Orchestration (the chain runs export, calibration, engines and parity), so it lives above every stage.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from calibration.mixed_precision import DEFAULT_BUDGET_DB
from engines.build import EngineSettings, build_engine
from engines.cache import PRECISIONS, describe_onnx, precision_family
from engines.cpu_choice import choose_cpu_engine, describe_selection
from engines.manifest import BACKEND_NAMES, manifest_path
from engines.runners import select_backend
from engines.tensorrt_build import HARDWARE_COMPATIBILITY, TensorRTOptions
from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import parse_resolutions
from mirnet_ref.tasks import TASKS

from .chain import PARITY_RESOLUTION, ChainRequest, ChainResult, PyTorchSide, StepResult, run_chain
from .options import weights_options

DEFAULT_ARTIFACTS = Path("artifacts")
#: Options that only mean something for the chain (`--task`), not for a given MODEL.onnx.
CHAIN_OPTIONS = ("checkpoint", "arch", "calib", "budget_db", "artifacts")
#: How many of the layers INT8 keeps in high precision the text output names (--json has them all).
SHOWN_KEPT_LAYERS = 4


@click.command()
@click.argument("onnx_path", metavar="[MODEL.onnx]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@weights_options(
    task_help="Build from the task's weights instead of an ONNX model: export, precision (INT8: "
              "calibration), engine, parity; every step cached.",
    checkpoint_help="With --task: these weights (any family, recognised by its keys) instead of the task's "
                    "demo weights.")
@click.option("--precision", "precision_text", metavar="|".join([*PRECISIONS, "bf16"]),
              help="With --task: the precision to deploy [default: fp16], or several, comma-separated, "
                   "deployed one after the other in this process (one PyTorch reference for all). With "
                   "MODEL.onnx: one, checked against the file's own. bf16: the FP32 model computed in "
                   "BF16 by OpenVINO, on CPUs with BF16.")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "ort", "openvino"]), default="auto",
              show_default=True,
              help="auto: TensorRT when a GPU and TensorRT are usable, else ONNX Runtime or OpenVINO, "
                   "whichever is faster here (measured side by side once per machine and model, recorded; "
                   "with --task only among those passing parity).")
@click.option("--ov-device", default="CPU", show_default=True,
              help="OpenVINO: the device to compile for (CPU, or GPU/NPU where OpenVINO sees them).")
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
@click.option("--calib", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --task, int8: the calibration set (.npz from `mirnet calibrate`) [default: the "
                   "task's built-in set, built once].")
@click.option("--budget-db", type=click.FloatRange(min=0), default=DEFAULT_BUDGET_DB, show_default=True,
              help="With --task, int8: largest task PSNR drop vs FP32 (the mean of each sample's drop, a "
                   "gain counting at most half the budget); the most sensitive layers stay in high "
                   "precision until it holds.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_ARTIFACTS,
              show_default=True, help="With --task: ONNX models (onnx/) and calibration sets go here.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Engines are cached here under names that encode the request. [default: "
                   "artifacts/engines]")
@click.option("--json", "as_json", is_flag=True, help="Print the result (with the manifest) as JSON.")
def build(onnx_path: Path | None, task: str | None, checkpoint: Path | None, arch: str | None,
          precision_text: str | None,
          backend: str, ov_device: str, res: str, batch: int, workspace_mb: int | None, opt_level: int,
          version_compatible: bool, hardware_compatibility: str | None, threads: int | None,
          calib: Path | None, budget_db: float, artifacts: Path, cache_dir: Path | None,
          as_json: bool) -> None:
    """Build an engine with a manifest, or reuse the cached one.

    From MODEL.onnx: the precision is the ONNX file's own (FP32, FP16 or Q/DQ INT8
    graphs); TensorRT builds it as a strongly typed network. Without TensorRT,
    OpenVINO's compiled model (--backend ort: ONNX Runtime's optimized model) plus
    the same manifest is the engine.

    From --task (what `make engine` runs): export the weights to FP32 ONNX (verified
    against PyTorch), convert to FP16 or quantize to INT8 (calibrated, PSNR budget;
    target tensorrt or cpu by backend), build, and check parity against PyTorch FP32
    (recorded in the manifest). Each step says whether it was built or reused.
    --backend tensorrt without TensorRT exits 1 naming the ONNX model, ready to build
    on a GPU machine.

    \b
    Examples:
      mirnet build model.fp16.onnx --res 720p,1080p
      mirnet build model.int8-cpu.onnx --backend ort --threads 2
      mirnet build model.fp32.onnx --backend openvino
      mirnet build --task denoise --precision int8 --backend ort
      mirnet build --task denoise --precision fp32,fp16,int8     # what `make demo` runs
      mirnet build --task deblur --arch mprnet --precision int8 --backend ort
      mirnet build --task enhance --checkpoint best.pth --precision fp16 --res 720p,1080p --json
    """
    context = click.get_current_context()
    settings = EngineSettings(
        engine_dir=cache_dir or artifacts / "engines", resolutions=tuple(parse_resolutions(res)), batch=batch,
        tensorrt=TensorRTOptions(workspace_mb=workspace_mb, optimization_level=opt_level,
                                 version_compatible=version_compatible,
                                 hardware_compatibility=hardware_compatibility),
        threads=threads, openvino_device=ov_device, progress=not as_json)
    precisions = _precisions(precision_text)
    if onnx_path is None:
        check_writable(artifacts, "--artifacts", folder=True)  # before the export and calibration
    check_writable(settings.engine_dir, "--cache-dir" if cache_dir else "the engine folder", folder=True)
    if onnx_path is None:
        requests = [_chain_request(task, checkpoint, arch, precision or "fp16", backend, calib, budget_db,
                                   artifacts, settings) for precision in precisions or [None]]
        pytorch = PyTorchSide(requests[0].checkpoint, requests[0].task, requests[0].arch)
        results = []
        for request in requests:  # the first precision whose engine fails parity ends the command
            results.append(run_chain(request, on_step=None if as_json else _print_step, pytorch=pytorch))
            if not as_json:
                _print_chain(results[-1])
            if not results[-1].parity_passed:
                break
        if as_json:
            chains = [result.to_dict() for result in results]
            click.echo(json.dumps(chains[0] if len(requests) == 1 else chains, indent=2))
        _refuse_failed_parity(results[-1])
        return
    if task or any(context.get_parameter_source(n) is ParameterSource.COMMANDLINE for n in CHAIN_OPTIONS):
        raise UserError(f"--task, --checkpoint, --arch, --calib, --budget-db and --artifacts build from "
                        f"weights; {onnx_path} is already an ONNX model: drop them, or drop MODEL.onnx.")
    if len(precisions) > 1:
        raise UserError(f"{onnx_path} has one precision: give --precision once (several are for --task).")
    _build_onnx(onnx_path, precisions[0] if precisions else None, backend, settings, as_json)


def _precisions(text: str | None) -> list[str]:
    """--precision's comma-separated names, each checked; [] when not given."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    known = [*PRECISIONS, "bf16"]
    unknown = [name for name in names if name not in known]
    if unknown or (text is not None and not names):
        raise UserError(f"--precision {text!r}: choose from {', '.join(known)} (several, comma-separated, "
                        f"with --task).")
    return list(dict.fromkeys(names))


def _chain_request(task: str | None, checkpoint: Path | None, arch: str | None, precision: str,
                   backend: str, calib: Path | None, budget_db: float, artifacts: Path,
                   settings: EngineSettings) -> ChainRequest:
    from mirnet_ref.weights import default_weights

    if task is None:
        raise UserError(f"Nothing to build: pass MODEL.onnx, or --task {'|'.join(TASKS)} (with --checkpoint "
                        "for other weights than the demo ones) to run the whole chain. The task chooses the "
                        "degradation of the calibration and parity images, so a checkpoint alone is not "
                        "enough.")
    return ChainRequest(task=task, checkpoint=checkpoint or default_weights(task, arch), arch=arch,
                        precision=precision, backend=backend, artifacts=artifacts,
                        calibration=calib, budget_db=budget_db, engine=settings)


def _build_onnx(onnx_path: Path, precision: str | None, backend: str, settings: EngineSettings,
                as_json: bool) -> None:
    chosen, reason = select_backend(backend, onnx_path)
    if chosen == "cpu":
        selection = _choose_without_reference(onnx_path, precision, settings)
        chosen, reason = selection["chosen"], describe_selection(selection)
    result = build_engine(onnx_path, chosen, settings, precision=precision)
    if as_json:
        click.echo(json.dumps({"backend": chosen, "reason": reason, "engine": str(result.path),
                               "reused": result.reused, "manifest": asdict(result.manifest)}, indent=2))
        return
    click.echo(f"backend: {chosen} ({reason})")
    verb = "reused cached engine" if result.reused else f"built in {result.manifest.build_seconds:.1f} s"
    click.echo(f"{verb}: {result.path}")
    click.echo(f"manifest: {manifest_path(result.path)} (precision {result.manifest.precision_label})")


def _choose_without_reference(onnx_path: Path, precision: str | None,
                              settings: EngineSettings) -> dict[str, Any]:
    """`auto` on a CPU for a bare ONNX model: the faster engine, by speed alone (no PyTorch reference to
    check parity against here; `mirnet build --task` checks it)."""
    graph = describe_onnx(onnx_path)
    if len(graph.input_shape) != 4:
        raise UserError(f"{onnx_path} takes {graph.input_name!r} of shape {graph.input_shape} (-1 = any), "
                        "not an NCHW batch of images, and `auto` times ONNX Runtime and OpenVINO on an image "
                        "to choose between them: pass --backend ort or openvino to build it as it is.")
    form = graph.metadata.get("precision", "fp32")
    family = precision or precision_family(form)
    return choose_cpu_engine(
        "bf16" if family == "bf16" else precision_family(family), {form: onnx_path}, settings.engine_dir,
        lambda backend, onnx, _: (build_engine(onnx, backend, settings, precision=precision).path, None),
        threads=settings.threads, resolution=PARITY_RESOLUTION)


# ---------------------------------------------------------------------------------------------------
# What the chain prints


def _print_step(step: StepResult) -> None:
    note = _step_note(step)
    note = f"; {note}" if note else ""
    click.echo(f"{step.name:<13} {step.status:<6}  {step.path}  ({step.seconds:.1f} s{note})")


def _step_note(step: StepResult) -> str:
    """The one fact worth reading per step (the details are in --json)."""
    d = step.details
    if step.name == "export":
        return (f"verified against PyTorch at {d['verified_shapes']} shapes, max |error| "
                f"{d['max_abs_error_vs_pytorch']:.1e}")
    if step.name == "fp16":
        return f"kept in FP32: {', '.join(d['kept_fp32_op_types'])}"
    if step.name.startswith("int8"):
        kept = d["kept_high_precision"]
        named = ", ".join(kept[:SHOWN_KEPT_LAYERS]) + (", ..." if len(kept) > SHOWN_KEPT_LAYERS else "")
        full = d["full_int8_drop_db"]  # None: not measured (the twin target's layers passed first)
        full = "not measured: the twin's kept layers passed" if full is None else f"{full:.3f} dB"
        return (f"task PSNR drop vs FP32 {d['drop_db']:.3f} dB (all INT8 {full}, "
                f"budget {d['budget_db']} dB); {d['quantized_layers']} layers INT8, {len(kept)} kept in "
                f"high precision" + (f": {named}" if kept else "")
                + "".join(f"; WARNING: {warning}" for warning in d.get("warnings", [])))
    if step.name == "choose":
        return f"chose {d['chosen']} {d['chosen_form']}: {describe_selection(d)}"
    if step.name == "build":
        return f"{d['precision']}, built in {d['build_seconds']:.1f} s" if step.status == "built" else ""
    if step.name == "parity":
        return "pass" if d["passed"] else "FAIL"
    return ""


def _parity_lines(parity: dict[str, Any]) -> list[str]:
    lines = [f"parity vs PyTorch FP32 ({parity['precision']}, {parity['images']} held-out images per "
             f"resolution; thresholds {parity['thresholds']}):"]
    for row in parity["results"]:
        psnr = row["psnr_vs_reference_db"]
        psnr = "identical" if psnr is None else f"{psnr:.1f} dB"
        verdict = "pass" if row["passed"] else "FAIL: " + "; ".join(row["failures"])
        lines.append(f"  {row['resolution']:>9}: PSNR vs reference {psnr}, max |error| "
                     f"{row['max_abs_error']:.1e}, task PSNR {row['task_psnr_reference_db']:.2f} -> "
                     f"{row['task_psnr_artifact_db']:.2f} dB: {verdict}")
    return lines


def _print_chain(result: ChainResult) -> None:
    backend = BACKEND_NAMES.get(result.manifest.backend, result.manifest.backend)
    click.echo(f"backend: {result.backend} ({result.backend_reason})")
    click.echo(f"engine: {result.engine} ({backend} {result.manifest.backend_version}, "
               f"{result.manifest.precision_label})")
    click.echo(f"manifest: {manifest_path(result.engine)}")
    for line in _parity_lines(result.manifest.parity):
        click.echo(line)


def _refuse_failed_parity(result: ChainResult) -> None:
    if not result.parity_passed:
        raise UserError(f"The engine {result.engine} fails parity against PyTorch FP32 (see above; recorded "
                        f"in its manifest): its output is not close enough to the reference to ship. For "
                        f"FP16, keep the failing layers in FP32 (`mirnet audit-fp16`, `mirnet export "
                        f"--fp32-node`); for INT8, lower --budget-db or calibrate on images closer to "
                        f"deployment.")
