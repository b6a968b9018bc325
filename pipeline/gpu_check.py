"""`make gpu-check`: everything a GPU can show, verified by one command into one report.

TensorRT cannot run on the CPU machines this toolkit is developed on, so its paths are written
against the documented APIs (and checked against the real bindings' signatures by
tests/test_tensorrt_conformance.py) and proven here, the day a GPU is available. The plan is
printed first; on a machine without a CUDA device the check then stops with one reason, before
anything runs. With a CUDA device but no TensorRT, the PyTorch CUDA steps and the C++ steps run
and the TensorRT steps are skipped, each with the reason. The steps of `plan()`, in order:

    pytest-gpu          every `gpu`-marked test
    fp16-audit          `mirnet audit-fp16` at 720p: the FP16 accuracy predicted on the CPU
    torch-cuda-parity   PyTorch on the GPU (FP32, FP16 and BF16 autocast) vs PyTorch FP32 on the CPU,
                        held-out photographs at 720p; FP16 compared with the audit's prediction
    torch-cuda-latency  `mirnet-bench --backend torch` on the GPU at 720p / 1080p / 4K: CUDA-event
                        copy-in / compute / copy-out split, peak GPU memory
    engine-<prec>       the chain (`mirnet build --task ... --backend tensorrt --res 720p,1080p`): export,
                        FP16 / INT8, TensorRT build with its precision check, parity vs PyTorch FP32
    latency             `mirnet-bench` on TensorRT, each precision, 720p / 1080p / 4K
    cpp-core-*          engines/cpp's core library and unit tests (no TensorRT needed), ctest
    cpp-configure       CMake with MIRNET_REQUIRE_TRT=ON: fails, quoting CMake, where the TensorRT C++
                        SDK is missing (a pip-only TensorRT has no headers)
    cpp-build           the C++ runner (CPP_RUNNER_TARGET)
    input-image         a held-out photograph at 720p degraded for the task (16-bit PNG)
    cpp-run-<prec>      the C++ runner on each engine and that image, its output vs PyTorch FP32 (PSNR)

Each step's output goes to `<step>.log` (and its JSON to `<step>.json`) in the report folder,
with `summary.md` and `summary.json` saying what passed, failed or was skipped, and why. A step
whose inputs failed is skipped. Exit status 1 unless every step passed.
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
from xml.etree import ElementTree

import click
import numpy as np
from tqdm import tqdm

from engines.cache import PRECISIONS
from engines.probe import TENSORRT_INSTALL_HINT, probe_cuda, probe_tensorrt
from mirnet_deploy import __version__
from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError
from mirnet_ref.tasks import FAMILY_NAMES, TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_RESOLUTIONS = "720p,1080p"
LATENCY_RESOLUTIONS = "720p,1080p,4k"
CPP_BUILD_DIR = Path("build") / "gpu-check-cpp"  # relative to the repository root
#: The C++ runner's CMake target and executable (one name, so that a rename is one line).
CPP_RUNNER_TARGET = "mirnet_run"
CPP_INPUT = "input-720p.png"
PYTEST_XML = "pytest-gpu.xml"
CPP_INPUT_SIZE = (1280, 720)
#: What a step needs beyond the CPU: "cuda" (a CUDA device) or "tensorrt" (TensorRT usable on it).
REQUIREMENTS = ("cuda", "tensorrt")


class StepFailed(Exception):
    """A step ran but its result is wrong; the message is the summary's note."""


class StepSkipped(Exception):
    """A step ran but verified nothing (every test it ran was skipped); the message says why."""


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
    requires: str | None = None  # one of REQUIREMENTS


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
    missing: dict[str, str] = field(default_factory=dict)  # requirement -> why this machine lacks it

    def passed(self, step: str) -> bool:
        return step in self.outcomes and self.outcomes[step].status == "passed"

    def engines(self) -> dict[str, str]:
        """`engine_<precision>` -> engine path, for each engine step that passed."""
        return {f"engine_{p}": self.outcomes[f"engine-{p}"].data["engine"] for p in PRECISIONS
                if self.passed(f"engine-{p}")}

    @functools.cached_property
    def reference_output(self) -> np.ndarray:
        """PyTorch FP32 on the C++ runner's input as read back from its PNG, clamped like an image."""
        from engines.runners import TorchRunner
        from export.graph import DeploymentGraph
        from export.network import load_network
        from mirnet_ref.images import read_image

        network, spec = load_network(self.checkpoint, self.task)
        pixels = read_image(self.report / CPP_INPUT).pixels
        output = TorchRunner(DeploymentGraph(network, spec)).run(pixels.transpose(2, 0, 1)[None])
        return np.clip(output[0].transpose(1, 2, 0), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------
# The plan


def plan(check: GpuCheck) -> list[Step]:
    """The steps, in order; `--dry-run` prints them, which needs no GPU."""
    return [Step("pytest-gpu", "every gpu-marked test",
                 (sys.executable, "-m", "pytest", "-m", "gpu", "-rA",
                  f"--junitxml={check.report / PYTEST_XML}"), check=_pytest_note, requires="cuda"),
            *_torch_steps(check),
            *(_engine_step(check, precision) for precision in PRECISIONS),
            _latency_step(check),
            *_cpp_steps(check)]


def _pytest_note(check: GpuCheck, _: dict[str, Any]) -> str:
    """Counts from the JUnit XML: a run whose every test skipped verified nothing, so it is no pass."""
    suite = ElementTree.parse(check.report / PYTEST_XML).getroot().find("testsuite")
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    if skipped == total:
        reasons = sorted({element.get("message", "") for element in suite.iter("skipped")})
        raise StepSkipped(f"all {total} tests skipped: {'; '.join(reasons)[:400]}")
    return f"{total - skipped} ran and passed, {skipped} skipped"


def _script(name: str) -> str:
    """A console script of this environment (`mirnet`, `mirnet-bench`), next to its Python."""
    return str(Path(sys.executable).parent / name)


def _bench_outputs(check: GpuCheck, stem: str) -> tuple[str, ...]:
    pairs = [(f"--{flag}", str(check.report / f"{stem}.{suffix}"))
             for flag, suffix in (("json", "json"), ("md", "md"), ("csv", "csv"), ("plot", "png"))]
    return tuple(item for pair in pairs for item in pair)


def _torch_steps(check: GpuCheck) -> list[Step]:
    """What a CUDA GPU shows without TensorRT: PyTorch's FP32/FP16/BF16 accuracy and latency on it."""
    return [
        Step("fp16-audit", "FP16 accuracy predicted on the CPU (emulation), 720p",
             (_script("mirnet"), "audit-fp16", "--task", check.task, "--checkpoint", str(check.checkpoint),
              "--res", "720p", "--json"), json_stdout=True),
        Step("torch-cuda-parity", "PyTorch on the GPU (FP32, FP16/BF16 autocast) vs PyTorch FP32 on the CPU",
             action=_torch_cuda_parity, requires="cuda"),
        Step("torch-cuda-latency", f"PyTorch on the GPU at {LATENCY_RESOLUTIONS}: event split, peak memory",
             (_script("mirnet-bench"), "--model", str(check.checkpoint), "--task", check.task,
              "--backend", "torch", "--res", LATENCY_RESOLUTIONS, *_bench_outputs(check, "torch-latency")),
             requires="cuda"),
    ]


def _engine_step(check: GpuCheck, precision: str) -> Step:
    return Step(f"engine-{precision}",
                f"{precision} TensorRT engine for {ENGINE_RESOLUTIONS} through the chain, parity vs PyTorch",
                (_script("mirnet"), "build", "--task", check.task, "--checkpoint", str(check.checkpoint),
                 "--precision", precision, "--backend", "tensorrt", "--res", ENGINE_RESOLUTIONS,
                 "--artifacts", str(check.artifacts), "--json"),
                check=_engine_note, json_stdout=True, requires="tensorrt")


def _latency_step(check: GpuCheck) -> Step:
    """Latency of the task's weights: mirnet-bench builds one engine per precision and resolution."""
    return Step("latency", f"latency on TensorRT at {LATENCY_RESOLUTIONS}, each precision",
                (_script("mirnet-bench"), "--model", str(check.checkpoint), "--task", check.task,
                 "--backend", "tensorrt", "--precision", ",".join(PRECISIONS), "--res", LATENCY_RESOLUTIONS,
                 "--cache-dir", str(check.artifacts / "bench"), *_bench_outputs(check, "latency")),
                requires="tensorrt")


def _cpp_steps(check: GpuCheck) -> list[Step]:
    """The core library's tests never depend on TensorRT; the runner's configure insists on it."""
    core, runner = str(CPP_BUILD_DIR / "core"), str(CPP_BUILD_DIR / "runner")
    width, height = CPP_INPUT_SIZE
    jobs = str(os.cpu_count() or 2)
    python = f"-DMIRNET_PYTHON={sys.executable}"  # OpenVINO's CMake config and the verbs ctest calls
    steps = [
        Step("cpp-core-configure", "CMake for engines/cpp's core library (no TensorRT needed)",
             ("cmake", "-S", "engines/cpp", "-B", core, "-DCMAKE_BUILD_TYPE=Release", python)),
        Step("cpp-core-build", "the core library and its unit tests",
             ("cmake", "--build", core, "-j", jobs),
             needs=("cpp-core-configure",)),
        Step("cpp-ctest", "the C++ core's unit tests", ("ctest", "--test-dir", core, "--output-on-failure"),
             needs=("cpp-core-build",)),
        Step("cpp-configure", "CMake with MIRNET_REQUIRE_TRT=ON: TensorRT's C++ SDK and CUDA must be found",
             ("cmake", "-S", "engines/cpp", "-B", runner, "-DCMAKE_BUILD_TYPE=Release", python,
              "-DMIRNET_REQUIRE_TRT=ON"), requires="cuda"),
        Step("cpp-build", f"build the C++ runner ({CPP_RUNNER_TARGET})",
             ("cmake", "--build", runner, "--target", CPP_RUNNER_TARGET, "-j", jobs),
             needs=("cpp-configure",)),
        Step("input-image", f"a held-out photograph at {width}x{height}, degraded for {check.task}",
             action=_write_input_image),
    ]
    for precision in PRECISIONS:
        output = check.report / f"{CPP_RUNNER_TARGET}-{precision}.png"
        steps.append(Step(
            f"cpp-run-{precision}", f"{CPP_RUNNER_TARGET} on the {precision} engine; output vs PyTorch FP32",
            (str(CPP_BUILD_DIR / "runner" / CPP_RUNNER_TARGET), "--engine", f"{{engine_{precision}}}",
             "-i", str(check.report / CPP_INPUT), "-o", str(output), "--bit-depth", "16", "--bench", "20"),
            check=functools.partial(_cpp_output_note, precision=precision, output=output),
            needs=(f"engine-{precision}", "cpp-build", "input-image")))
    return steps


def missing_requirements() -> dict[str, str]:
    """Requirement -> why this machine lacks it, for each of REQUIREMENTS it lacks (probes only)."""
    cuda = probe_cuda()
    tensorrt = probe_tensorrt(cuda)
    missing = {}
    if not cuda.available:
        missing["cuda"] = cuda.reason
    if not tensorrt.available:
        missing["tensorrt"] = f"{tensorrt.reason}. {TENSORRT_INSTALL_HINT}"
    return missing


def require_gpu(missing: dict[str, str]) -> str:
    """What this machine runs the GPU steps on; UserError (before any TensorRT object exists) without
    a CUDA device, which every GPU step needs."""
    if "cuda" in missing:
        raise UserError(f"gpu-check runs its steps on a CUDA GPU, and this machine has none: "
                        f"{missing['cuda']}. Nothing was run. On a CPU machine `make test` verifies "
                        f"everything else (the gpu-marked tests skip with this reason, and the TensorRT "
                        f"API-conformance suite checks the TensorRT code against TensorRT 10.3/10.16/11.4's "
                        f"bindings).")
    cuda = probe_cuda()
    tensorrt = "TensorRT: " + (probe_tensorrt(cuda).reason if "tensorrt" not in missing else
                               f"not usable ({missing['tensorrt']}); its steps are skipped")
    return f"{cuda.reason}; CUDA driver {cuda.driver_version}; {tensorrt}"


# ---------------------------------------------------------------------------------------------------
# Running it


def run_step(check: GpuCheck, step: Step) -> Outcome:
    if step.requires in check.missing:
        return Outcome(step.name, "skipped", 0.0, f"needs {step.requires}: {check.missing[step.requires]}")
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
    except StepSkipped as nothing_verified:
        return Outcome(step.name, "skipped", time.perf_counter() - started, str(nothing_verified), data)
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
        raise StepFailed(f"exit status {code}: {failure_excerpt(log_path.read_text(encoding='utf-8'))}; "
                         f"see {log_path.name}")
    if not step.json_stdout:
        return {}
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StepFailed(f"{json_path.name} is not the JSON the command prints ({error})") from None


def failure_excerpt(log: str) -> str:
    """The lines of a failed command's log that say why: CMake's first error paragraph, else the last line."""
    lines = [line.rstrip() for line in log.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("CMake Error"):
            paragraph = []
            for following in lines[index + 1:]:
                if not following.strip() and paragraph:
                    break
                if following.strip():
                    paragraph.append(following.strip())
            return f"{line} {' '.join(paragraph)}".strip()
    meaningful = [line for line in lines[1:] if line.strip()]  # the first line is the command
    return meaningful[-1].strip() if meaningful else "no output"


def _engine_note(check: GpuCheck, data: dict[str, Any]) -> str:
    parity = data["manifest"]["parity"]
    rows = ", ".join(f"{r['resolution']} {r['psnr_vs_reference_db'] or float('inf'):.1f} dB"
                     for r in parity["results"])
    return f"{Path(data['engine']).name}; parity {'pass' if parity['passed'] else 'FAIL'} ({rows})"


def _write_input_image(check: GpuCheck) -> str:
    from bench.parity import parity_cases
    from mirnet_ref.images import write_image

    case = parity_cases(check.task, [CPP_INPUT_SIZE], 1, sr_scale=1)[0]
    write_image(check.report / CPP_INPUT, case.input[0].transpose(1, 2, 0), bit_depth=16)
    return f"{case.name} at {case.resolution}"


def _torch_cuda_parity(check: GpuCheck) -> str:
    """FP32 and FP16 must meet the parity thresholds; BF16 is reported. FP16 is set beside the audit's
    prediction (fp16-audit): autocast keeps more in FP32 than an FP16 engine, so it is a comparison."""
    from bench.gpu import cuda_parity
    from bench.parity import THRESHOLDS

    rows = cuda_parity(check.checkpoint, check.task, CPP_INPUT_SIZE)
    atomic_write_text(check.report / "torch-cuda-parity.json", json.dumps(rows, indent=2) + "\n")
    measured = {row["precision"]: row["psnr_vs_cpu_fp32_db"] for row in rows}
    audit = check.outcomes.get("fp16-audit")
    predicted = next(iter(audit.data.values()))["psnr_db"] if audit and audit.data else None
    note = ", ".join(f"{p} {v:.1f} dB" for p, v in measured.items()) + " vs CPU FP32" + (
        f"; FP16 predicted by the audit {predicted} dB" if predicted is not None else "")
    for precision in ("fp32", "fp16"):
        limit = THRESHOLDS[precision]["min_psnr_vs_reference"]
        if not measured[precision] >= limit:
            raise StepFailed(f"{note}: {precision} below its threshold {limit} dB")
    return note


def _cpp_output_note(check: GpuCheck, data: dict[str, Any], *, precision: str, output: Path) -> str:
    """The C++ runner's output vs PyTorch FP32 on the same (16-bit) input, with the precision's threshold;
    the runner's per-stage median timings (`--bench`) are in the step's log."""
    from bench.parity import THRESHOLDS
    from mirnet_ref.images import read_image
    from mirnet_ref.metrics import psnr

    value = psnr(read_image(output).pixels, check.reference_output)
    limit = THRESHOLDS[precision]["min_psnr_vs_reference"]
    if not value >= limit:
        raise StepFailed(f"PSNR vs PyTorch FP32 {value:.1f} dB, below the {precision} threshold {limit} dB")
    return f"PSNR vs PyTorch FP32 {value:.1f} dB (threshold {limit} dB); stage timings in the log"


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
@click.option("--arch", type=click.Choice(FAMILY_NAMES),
              help="The family whose demo weights for --task [default: the one that has them, MIRNet first].")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Weights to build from [default: the task's demo weights].")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder [default: reports/gpu-check-<UTC date and time>].")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
              show_default=True, help="ONNX models, calibration sets and engines (cached across runs).")
@click.option("--dry-run", is_flag=True, help="List the steps and commands (always listed first), run none.")
def gpu_check(task: str, arch: str | None, checkpoint: Path | None, report: Path | None, artifacts: Path,
              dry_run: bool) -> None:
    """Verify on this GPU machine: PyTorch CUDA parity and latency, TensorRT engines, parity, latency, C++.

    Prints the plan, then stops at once, before any TensorRT object exists, where no CUDA device is
    found. Without TensorRT, its steps are skipped with the reason and the others run.

    \b
    Examples:
      make gpu-check
      python -m pipeline.gpu_check --task enhance --report reports/enhance-check
      python -m pipeline.gpu_check --dry-run
    """
    from mirnet_ref.weights import default_weights

    started = datetime.now(timezone.utc)
    report = (report or Path("reports") / f"gpu-check-{started:%Y%m%d-%H%M%S}").resolve()
    check = GpuCheck(task, (checkpoint or default_weights(task, arch)).resolve(), report, artifacts.resolve())
    steps = plan(check)
    for index, step in enumerate(steps, 1):
        how = " ".join(step.command) if step.command else "(in process)"
        needs = f" [needs {step.requires}]" if step.requires else ""
        click.echo(f"{index:>2}. {step.name}{needs}: {step.purpose}\n      {how}")
    if dry_run:
        return
    check.missing = missing_requirements()
    machine = require_gpu(check.missing)
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
    """`python -m pipeline.gpu_check`: a UserError becomes one paragraph on stderr and exit status 1."""
    try:
        gpu_check(standalone_mode=True)
    except UserError as error:
        raise SystemExit(f"Error: {error}") from None


if __name__ == "__main__":
    main()
