"""`auto` on a CPU: the fastest engine that passes parity, chosen by measuring the candidates here.

Which CPU runtime is faster depends on the CPU (VNNI, BF16, AMX), the runtime versions, the
precision and the model: on one machine OpenVINO won every precision, on another ONNX Runtime's
INT8 may; and OpenVINO runs a symmetric INT8 file faster than the one ONNX Runtime prefers. So
`auto` does not prefer one. A candidate is a runtime and the ONNX form it runs (`CANDIDATES`). It
builds every candidate engine (cached), checks each
against PyTorch FP32 (the parity stage, kept in each manifest), times them alternately run by
run on the same input (so both see the same load on a shared machine) and picks the fastest
that passes. Each candidate engine is opened once per measurement (`EngineOpener`): its parity
check and its timing runs share the runner, instead of importing (OpenVINO) or optimizing (ONNX
Runtime) the engine again for each.

The measurement is recorded in the chosen engine's manifest (`selection`) and in a per-machine
file, `<engine dir>/cpu-choices.json`, keyed by the machine (CPU model, ISA flags, runtime
versions, threads), the precision and the ONNX model: a later run reuses it instead of measuring
again. The file is rewritten atomically under a lock, and each key is measured under its own lock,
so concurrent runs measure once and never lose each other's entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError
from mirnet_deploy.locks import artifact_lock

from .cache import describe_onnx
from .cpu_graph import cache_option
from .manifest import load_manifest, manifest_path, update_manifest
from .runners import Runner, open_runner

#: The engines `auto` weighs on a CPU per precision: (runtime, the ONNX form it runs, named by the form's
#: precision metadata). BF16: OpenVINO, the one CPU runtime with it, computes the FP32 model in BF16.
#: INT8: both runtimes run the `cpu` Q/DQ target; OpenVINO also its symmetric twin, which it runs
#: without the zero-point arithmetic of u8 activations (ONNX Runtime runs s8 activations no faster
#: than FP32 on x86, so it is not offered there).
CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {
    "fp32": (("openvino", "fp32"), ("ort", "fp32")),
    "fp16": (("openvino", "fp16"), ("ort", "fp16")),
    "bf16": (("openvino", "fp32"),),
    "int8": (("openvino", "int8-cpu"), ("ort", "int8-cpu"), ("openvino", "int8-cpu-symmetric")),
}
CHOICES_FILE = "cpu-choices.json"
#: Timed runs per candidate, alternated, after one untimed run each.
TIMED_RUNS = 3

#: (backend, ONNX model, opener) -> (engine path, whether it passed parity: None where the caller has no
#: reference to check), built and checked by the caller (the chain), which runs the parity check on
#: `opener(engine)`: the runner the timing then uses.
Prepare = Callable[[str, Path, "EngineOpener"], "tuple[Path, bool | None]"]


@dataclass(frozen=True)
class Candidate:
    backend: str
    form: str  # the ONNX form it runs (fp32, int8-cpu, int8-cpu-symmetric, ...)
    engine: str
    parity_passed: bool | None  # None: not measured
    p50_ms: float
    runs_ms: list[float]


class EngineOpener:
    """The candidates' runners, each opened on first use and kept until the measurement ends: the
    parity check and the timing runs of a candidate share one (ONNX Runtime engines were optimized for
    its CPU provider, so they run there)."""

    def __init__(self, stack: ExitStack, threads: int | None) -> None:
        self._stack, self._threads = stack, threads
        self._runners: dict[Path, Runner] = {}

    def __call__(self, engine: Path) -> Runner:
        if engine not in self._runners:
            self._runners[engine] = self._stack.enter_context(open_runner(engine, providers="cpu",
                                                                          threads=self._threads))
        return self._runners[engine]


def machine(threads: int | None) -> dict[str, Any]:
    """What a CPU engine's speed depends on besides the model: the CPU, its ISA, the runtimes, threads."""
    import onnxruntime

    from .environment import cpu_features
    from .openvino_build import openvino_version
    from .probe import cpu_model

    return {"cpu_model": cpu_model(), "cpu_features": cpu_features(), "logical_cores": os.cpu_count(),
            "onnxruntime": onnxruntime.__version__, "openvino": openvino_version(), "threads": threads}


def forms(precision: str, backend: str = "cpu") -> list[str]:
    """The ONNX forms the candidates of `backend` ('cpu': any CPU runtime) run at `precision`."""
    return list(dict.fromkeys(form for runtime, form in CANDIDATES.get(precision, ())
                              if backend in ("cpu", runtime)))


def candidates(precision: str, at_hand: Iterable[str], backend: str = "cpu") -> list[tuple[str, str]]:
    """The (backend, form) pairs `auto` weighs for `precision` among the ONNX forms at hand; `backend`
    'cpu' for any CPU runtime, or one runtime (`--backend openvino`: its INT8 forms against each other)."""
    at_hand = set(at_hand)
    return [(runtime, form) for runtime, form in CANDIDATES[precision]
            if form in at_hand and backend in ("cpu", runtime)]


def choice_key(machine_info: dict[str, Any], precision: str, onnx_sha256: dict[str, str],
               weighed: list[tuple[str, str]]) -> str:
    """The measurement's key: also the graph rewrites the engines compile (`engines.cpu_graph`), so a
    choice measured between engines of the plain graph is measured again."""
    graphs = {form: cache_option(form) for _, form in weighed}
    text = json.dumps({"machine": machine_info, "precision": precision, "onnx_sha256": onnx_sha256,
                       "candidates": weighed, **({"graph_rewrites": graphs} if any(graphs.values()) else {})},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def read_choices(path: Path) -> dict[str, Any]:
    """The per-machine file; unreadable or damaged reads as empty (it is only a cache of measurements)."""
    with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
        choices = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(choices, dict):
            return choices
    return {}


def _record_choice(path: Path, key: str, selection: dict[str, Any]) -> None:
    with artifact_lock(path):  # read-modify-write: a concurrent run's new entry is kept
        choices = read_choices(path)
        choices[key] = selection
        atomic_write_text(path, json.dumps(choices, indent=2, sort_keys=True) + "\n")


def choose_cpu_engine(precision: str, models: dict[str, Path], engine_dir: Path, prepare: Prepare, *,
                      threads: int | None, resolution: tuple[int, int],
                      backend: str = "cpu") -> dict[str, Any]:
    """The selection record (chosen backend and ONNX form, every candidate's parity and timing, the
    machine), measured once per machine, precision and ONNX models. `models` maps each ONNX form at
    hand to its file; `prepare(backend, onnx)` builds and parity-checks a candidate."""
    offered = candidates(precision, models, backend)
    refused = _miscomputed(offered)
    weighed = [pair for pair in offered if pair not in refused]
    if not weighed:
        raise UserError(f"No {backend} engine runs {precision} from {', '.join(map(str, models.values()))} "
                        f"(forms {', '.join(models)}); choose --backend ort or openvino.")
    machine_info = machine(threads)
    onnx_sha256 = {form: describe_onnx(models[form]).sha256 for form in sorted({f for _, f in weighed})}
    key = choice_key(machine_info, precision, onnx_sha256, weighed)
    choices_path = engine_dir / CHOICES_FILE
    with artifact_lock(engine_dir / f"cpu-choice-{key}"):  # one measurement per key, also across runs
        recorded = read_choices(choices_path).get(key)
        if isinstance(recorded, dict) and all(Path(c["engine"]).is_file() for c in recorded["candidates"]):
            _record_in_manifest(recorded)
            return {**recorded, "reused": True}
        with ExitStack() as stack:
            opener = EngineOpener(stack, threads)
            prepared = {(runtime, form): prepare(runtime, models[form], opener) for runtime, form in weighed}
            timings = time_alternately({_label(*pair): opener(engine).run
                                        for pair, (engine, _) in prepared.items()}, resolution)
        measured = []
        for (runtime, form), (engine, passed) in prepared.items():
            runs_ms = timings[_label(runtime, form)]
            measured.append(Candidate(runtime, form, str(engine), passed, statistics.median(runs_ms),
                                      runs_ms))
        passing = [c for c in measured if c.parity_passed is not False]
        chosen = min(passing or measured, key=lambda c: c.p50_ms)
        selection = {"chosen": chosen.backend, "chosen_form": chosen.form, "precision": precision,
                     "onnx_sha256": onnx_sha256, "rule": _rule(measured, passing),
                     "refused": [{"backend": runtime, "form": form, "reason": reason}
                                 for (runtime, form), reason in refused.items()],
                     "resolution": list(resolution), "timed_runs": TIMED_RUNS,
                     "candidates": [asdict(c) for c in measured], "machine": machine_info,
                     "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _record_choice(choices_path, key, selection)
        _record_in_manifest(selection)
    return {**selection, "reused": False}


def _miscomputed(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The OpenVINO candidates whose INT8 layout this OpenVINO computes wrongly (`openvino_int8_check`),
    with why: not weighed, since parity would only fail them after a build."""
    from .openvino_build import DEFAULT_DEVICE
    from .openvino_int8_check import miscomputed_probes

    refused = {}
    for runtime, form in pairs:
        wrong = miscomputed_probes(form, DEFAULT_DEVICE) if runtime == "openvino" else []
        if wrong:
            refused[(runtime, form)] = "OpenVINO miscomputes " + "; ".join(result.case for result in wrong)
    return refused


def _label(backend: str, form: str) -> str:
    return f"{backend} {form}"


def chosen_engine(selection: dict[str, Any]) -> Path:
    return next(Path(c["engine"]) for c in selection["candidates"]
                if (c["backend"], c["form"]) == (selection["chosen"], selection["chosen_form"]))


def _record_in_manifest(selection: dict[str, Any]) -> None:
    """The chosen engine's manifest says why it was chosen (unless it already does)."""
    engine = chosen_engine(selection)
    with artifact_lock(manifest_path(engine)):
        if load_manifest(engine).selection != selection:
            update_manifest(engine, selection=selection)


def _rule(candidates: list[Candidate], passing: list[Candidate]) -> str:
    if any(c.parity_passed is None for c in candidates):
        return "fastest candidate (parity not measured: no PyTorch reference given)"
    return ("fastest candidate that passes parity" if passing else
            "no candidate passes parity: the fastest, whose failure the parity step reports")


def time_alternately(runs: dict[str, Callable[[np.ndarray], Any]], resolution: tuple[int, int],
                     rounds: int = TIMED_RUNS) -> dict[str, list[float]]:
    """Milliseconds per run of each candidate: one untimed run each, then `rounds` rounds, one run of
    each candidate per round, so that load changes on a shared machine hit all candidates alike."""
    width, height = resolution
    batch = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    for run in runs.values():
        run(batch)
    samples: dict[str, list[float]] = {backend: [] for backend in runs}
    for _ in range(rounds):
        for backend, run in runs.items():
            started = time.perf_counter()
            run(batch)
            samples[backend].append(round((time.perf_counter() - started) * 1e3, 2))
    return samples


def describe_selection(selection: dict[str, Any]) -> str:
    """One line for `mirnet build`: what was chosen and the numbers behind it."""
    verdicts = {True: "", False: " (fails parity)", None: ""}
    timings = ", ".join(f"{_label(c['backend'], c['form'])} {c['p50_ms']:.0f} ms"
                        f"{verdicts[c['parity_passed']]}" for c in selection["candidates"])
    width, height = selection["resolution"]
    source = "recorded measurement" if selection.get("reused") else "measured now"
    return (f"{selection['rule']} on this CPU, {source} ({selection['measured_at']}): {timings}, "
            f"median of {selection['timed_runs']} alternated runs at {width}x{height}")
