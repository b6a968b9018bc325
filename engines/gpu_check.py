"""`make gpu-check`: everything that needs a GPU and TensorRT, verified by one command into one report.

TensorRT cannot run on the CPU machines this toolkit is developed on, so its paths are
written against the documented APIs and proven here, the day a GPU is available. On a
machine without one the check stops at once: the probe (`probe.py`) runs first and no
TensorRT object is created. Otherwise it runs the steps of `plan()` in order:

    pytest-gpu       every `gpu`-marked test
    engine-<prec>    the chain (`mirnet build --task ... --backend tensorrt --res 720p,1080p`): export,
                     FP16 / INT8, TensorRT build with its precision check, parity vs PyTorch FP32
    latency          `mirnet-bench` on TensorRT, each precision, 720p / 1080p / 4K
    cpp-*            engines/cpp configured with TensorRT, mirnet_trt and the core tests built, ctest
    input-image      a held-out photograph at 720p degraded for the task (16-bit PNG)
    cpp-run-<prec>   mirnet_trt on each engine and that image, its output vs PyTorch FP32 (PSNR)

Each step's output goes to `<step>.log` (and its JSON to `<step>.json`) in the report folder,
with `summary.md` and `summary.json` saying what passed and what failed. A step whose inputs
failed is skipped. Exit status 1 unless every step passed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from mirnet_deploy import __version__
from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError
from mirnet_ref.weights import TASKS

from .cache import PRECISIONS
from .probe import TENSORRT_INSTALL_HINT, probe_cuda, probe_tensorrt

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_RESOLUTIONS = "720p,1080p"
LATENCY_RESOLUTIONS = "720p,1080p,4k"
CPP_BUILD_DIR = Path("build") / "gpu-check-cpp"  # relative to the repository root
CPP_INPUT = "input-720p.png"
CPP_INPUT_SIZE = (1280, 720)


class StepFailed(Exception):
    """A step ran but its result is wrong; the message is the summary's note."""


@dataclass(frozen=True)
class Step:
    """A command (run from the repository root; `{engine_fp16}` fields are filled with the engines of
    earlier steps), or an in-process `action` returning a note. `check` judges a command's JSON."""

    name: str
    purpose: str
    command: tuple[str, ...] = ()
    action: Callable[[GpuCheck], str] | None = None
    check: Callable[[GpuCheck, dict[str, Any]], str] | None = None
    json_stdout: bool = False
    needs: tuple[str, ...] = ()


@dataclass
class Outcome:
    name: str
    status: str  # passed | failed | skipped
    seconds: float
    note: str
    data: dict[str, Any] | None = None  # the step's JSON output


@dataclass
class GpuCheck:
    """One run: where it writes, what it checks, and what each step gave."""

    task: str
    checkpoint: Path
    report: Path
    artifacts: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def passed(self, step: str) -> bool:
        return step in self.outcomes and self.outcomes[step].status == "passed"

    def engines(self) -> dict[str, str]:
        """`engine_<precision>` -> engine path, for each engine step that passed."""
        return {f"engine_{p}": self.outcomes[f"engine-{p}"].data["engine"] for p in PRECISIONS
                if self.passed(f"engine-{p}")}

    @functools.cached_property
    def reference_output(self) -> np.ndarray:
        """PyTorch FP32 on the C++ runner's input as read back from its PNG, clamped like an image."""
        from export.cli import mirnet_network
        from export.graph import DeploymentGraph
        from mirnet_ref.images import read_image

        from .runners import TorchRunner

        network, spec = mirnet_network(self.checkpoint, self.task)
        pixels = read_image(self.report / CPP_INPUT).pixels
        output = TorchRunner(DeploymentGraph(network, spec)).run(pixels.transpose(2, 0, 1)[None])
        return np.clip(output[0].transpose(1, 2, 0), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------
# The plan


def plan(check: GpuCheck) -> list[Step]:
    """The steps, in order; `--dry-run` prints them, which needs no GPU."""
    return [Step("pytest-gpu", "every gpu-marked test",
                 (sys.executable, "-m", "pytest", "-m", "gpu", "-rA",
                  f"--junitxml={check.report / 'pytest-gpu.xml'}")),
            *(_engine_step(check, precision) for precision in PRECISIONS),
            _latency_step(check),
            *_cpp_steps(check)]


def _script(name: str) -> str:
    """A console script of this environment (`mirnet`, `mirnet-bench`), next to its Python."""
    return str(Path(sys.executable).parent / name)


def _engine_step(check: GpuCheck, precision: str) -> Step:
    return Step(f"engine-{precision}",
                f"{precision} TensorRT engine for {ENGINE_RESOLUTIONS} through the chain, parity vs PyTorch",
                (_script("mirnet"), "build", "--task", check.task, "--checkpoint", str(check.checkpoint),
                 "--precision", precision, "--backend", "tensorrt", "--res", ENGINE_RESOLUTIONS,
                 "--artifacts", str(check.artifacts), "--json"),
                check=_engine_note, json_stdout=True)


def _latency_step(check: GpuCheck) -> Step:
    """Latency of the task's weights: mirnet-bench builds one engine per precision and resolution."""
    outputs = [(f"--{flag}", str(check.report / f"latency.{suffix}"))
               for flag, suffix in (("json", "json"), ("md", "md"), ("csv", "csv"), ("plot", "png"))]
    return Step("latency", f"latency on TensorRT at {LATENCY_RESOLUTIONS}, each precision",
                (_script("mirnet-bench"), "--model", str(check.checkpoint), "--task", check.task,
                 "--backend", "tensorrt", "--precision", ",".join(PRECISIONS), "--res", LATENCY_RESOLUTIONS,
                 "--cache-dir", str(check.artifacts / "bench"), *(item for pair in outputs for item in pair)))


def _cpp_steps(check: GpuCheck) -> list[Step]:
    build_dir = str(CPP_BUILD_DIR)
    width, height = CPP_INPUT_SIZE
    steps = [
        Step("cpp-configure", "CMake for engines/cpp, with TensorRT and CUDA found",
             ("cmake", "-S", "engines/cpp", "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release")),
        Step("cpp-build", "build mirnet_trt and the core tests",
             ("cmake", "--build", build_dir, "--target", "mirnet_trt", "mirnet_core_tests",
              "-j", str(os.cpu_count() or 2)), needs=("cpp-configure",)),
        Step("cpp-ctest", "the C++ core's unit tests",
             ("ctest", "--test-dir", build_dir, "--output-on-failure"), needs=("cpp-build",)),
        Step("input-image", f"a held-out photograph at {width}x{height}, degraded for {check.task}",
             action=_write_input_image),
    ]
    for precision in PRECISIONS:
        steps.append(Step(
            f"cpp-run-{precision}", f"mirnet_trt on the {precision} engine; its output vs PyTorch FP32",
            (str(CPP_BUILD_DIR / "mirnet_trt"), "--engine", f"{{engine_{precision}}}",
             "--input", str(check.report / CPP_INPUT),
             "--output", str(check.report / f"mirnet_trt-{precision}.png"), "--bit-depth", "16",
             "--warmup", "3", "--iterations", "20", "--json"),
            check=_cpp_output_note, json_stdout=True,
            needs=(f"engine-{precision}", "cpp-build", "input-image")))
    return steps


def require_tensorrt() -> str:
    """What this machine runs TensorRT on; UserError (before any TensorRT object exists) where it cannot."""
    cuda = probe_cuda()
    tensorrt = probe_tensorrt(cuda)
    if not tensorrt.available:
        raise UserError(f"gpu-check verifies the TensorRT paths and needs a CUDA GPU with TensorRT, which "
                        f"this machine lacks: {tensorrt.reason}. {TENSORRT_INSTALL_HINT}. Nothing was run. "
                        f"On a CPU machine `make test` verifies everything else (the gpu-marked tests skip "
                        f"with this reason); `python -m engines.gpu_check --dry-run` lists what gpu-check "
                        f"runs.")
    return f"{tensorrt.reason}; {cuda.reason}; CUDA driver {cuda.driver_version}"


# ---------------------------------------------------------------------------------------------------
# Running it


def run_step(check: GpuCheck, step: Step) -> Outcome:
    missing = [name for name in step.needs if not check.passed(name)]
    if missing:
        return Outcome(step.name, "skipped", 0.0, f"needs {', '.join(missing)}")
    started = time.perf_counter()
    data = None
    try:
        if step.action:
            note = step.action(check)
        else:
            data = _run_command(check, step)
            note = step.check(check, data) if step.check else ""
    except Exception as failure:  # whatever broke, the report says so and the other steps still run
        note = str(failure) if isinstance(failure, StepFailed | UserError) else repr(failure)
        return Outcome(step.name, "failed", time.perf_counter() - started, note, data)
    return Outcome(step.name, "passed", time.perf_counter() - started, note, data)


def _run_command(check: GpuCheck, step: Step) -> dict[str, Any]:
    """Run the command with its output in the report folder; its JSON (when it prints one), parsed."""
    argv = list(step.command)
    for field_name, engine in check.engines().items():
        argv = [arg.replace(f"{{{field_name}}}", engine) for arg in argv]
    log_path = check.report / f"{step.name}.log"
    json_path = check.report / f"{step.name}.json"
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(log_path, "w", encoding="utf-8"))
        out = files.enter_context(open(json_path, "w", encoding="utf-8")) if step.json_stdout else log
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        code = subprocess.run(argv, cwd=REPO_ROOT, stdout=out, stderr=log, check=False).returncode
    if code:
        raise StepFailed(f"exit status {code}; see {log_path.name}")
    if not step.json_stdout:
        return {}
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StepFailed(f"{json_path.name} is not the JSON the command prints ({error})") from None


def _engine_note(check: GpuCheck, data: dict[str, Any]) -> str:
    parity = data["manifest"]["parity"]
    rows = ", ".join(f"{r['resolution']} {r['psnr_vs_reference_db'] or float('inf'):.1f} dB"
                     for r in parity["results"])
    return f"{Path(data['engine']).name}; parity {'pass' if parity['passed'] else 'FAIL'} ({rows})"


def _write_input_image(check: GpuCheck) -> str:
    from bench.cli import parity_cases
    from mirnet_ref.images import write_image

    case = parity_cases(check.task, [CPP_INPUT_SIZE], 1, sr_scale=1)[0]
    write_image(check.report / CPP_INPUT, case.input[0].transpose(1, 2, 0), bit_depth=16)
    return f"{case.name} at {case.resolution}"


def _cpp_output_note(check: GpuCheck, data: dict[str, Any]) -> str:
    """mirnet_trt's output against PyTorch FP32 on the same (16-bit) input, with the precision's threshold."""
    from bench.parity import THRESHOLDS
    from mirnet_ref.images import read_image
    from mirnet_ref.metrics import psnr

    precision = data["precision"].split("-")[0]
    value = psnr(read_image(data["output"]).pixels, check.reference_output)
    limit = THRESHOLDS[precision]["min_psnr_vs_reference"]
    if not value >= limit:
        raise StepFailed(f"PSNR vs PyTorch FP32 {value:.1f} dB, below the {precision} threshold {limit} dB")
    return (f"PSNR vs PyTorch FP32 {value:.1f} dB (threshold {limit} dB); median GPU time "
            f"{data['gpu_ms_median']:.2f} ms per pass")


# ---------------------------------------------------------------------------------------------------
# The report


def write_summary(check: GpuCheck, machine: str, started: datetime) -> Path:
    outcomes = list(check.outcomes.values())
    passed = sum(o.status == "passed" for o in outcomes)
    lines = [f"# gpu-check {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {machine}", f"- mirnet-deploy {__version__}; task {check.task}, checkpoint "
             f"{check.checkpoint}", f"- result: **{passed} of {len(outcomes)} steps passed**", "",
             "| step | result | seconds | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {o.name} | {o.status} | {o.seconds:.1f} | {o.note.replace('|', '/')} |" for o in outcomes]
    lines += ["", "Logs: `<step>.log`; JSON: `<step>.json`; latency: `latency.md`, `latency.png`; pytest: "
              "`pytest-gpu.xml`.", ""]
    latency = check.report / "latency.md"
    if latency.is_file():
        lines += ["## Latency", "", latency.read_text(encoding="utf-8")]
    atomic_write_text(check.report / "summary.md", "\n".join(lines))
    atomic_write_text(check.report / "summary.json", json.dumps(
        {"machine": machine, "started": started.isoformat(timespec="seconds"), "task": check.task,
         "checkpoint": str(check.checkpoint), "toolkit_version": __version__,
         "steps": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    return check.report / "summary.md"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--task", type=click.Choice(TASKS), default="denoise", show_default=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Weights to build from [default: the task's demo weights].")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder [default: reports/gpu-check-<UTC date and time>].")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
              show_default=True, help="ONNX models, calibration sets and engines (cached across runs).")
@click.option("--dry-run", is_flag=True, help="List the steps and commands; run nothing (needs no GPU).")
def gpu_check(task: str, checkpoint: Path | None, report: Path | None, artifacts: Path,
              dry_run: bool) -> None:
    """Verify the TensorRT paths on this GPU machine: gpu tests, engines, parity, latency, C++ runner.

    Stops at once, before any TensorRT object exists, where no CUDA GPU with TensorRT is found.

    \b
    Examples:
      make gpu-check
      python -m engines.gpu_check --task enhance --report reports/enhance-check
      python -m engines.gpu_check --dry-run
    """
    from mirnet_ref.weights import default_weights

    started = datetime.now(timezone.utc)
    report = (report or Path("reports") / f"gpu-check-{started:%Y%m%d-%H%M%S}").resolve()
    check = GpuCheck(task, (checkpoint or default_weights(task)).resolve(), report, artifacts.resolve())
    steps = plan(check)
    if dry_run:
        for index, step in enumerate(steps, 1):
            how = " ".join(step.command) if step.command else "(in process)"
            click.echo(f"{index:>2}. {step.name}: {step.purpose}\n      {how}")
        return
    machine = require_tensorrt()
    report.mkdir(parents=True, exist_ok=True)
    click.echo(f"gpu-check on {machine}; report: {report}", err=True)
    for step in tqdm(steps, desc="gpu-check", unit="step", file=sys.stderr):
        outcome = check.outcomes[step.name] = run_step(check, step)
        tqdm.write(f"{outcome.status:>7}  {step.name:<14} ({outcome.seconds:.0f} s) {outcome.note}",
                   file=sys.stderr)
    summary = write_summary(check, machine, started)
    failed = [o.name for o in check.outcomes.values() if o.status != "passed"]
    click.echo(f"{summary}: {len(steps) - len(failed)} of {len(steps)} steps passed"
               + (f"; not passed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)


def main() -> None:
    """`python -m engines.gpu_check`: a UserError becomes one paragraph on stderr and exit status 1."""
    try:
        gpu_check(standalone_mode=True)
    except UserError as error:
        raise SystemExit(f"Error: {error}") from None


if __name__ == "__main__":
    main()
