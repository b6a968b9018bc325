"""`auto` on a CPU: the fastest engine that passes parity, chosen by measuring the candidates here.

Which CPU runtime is faster depends on the CPU (VNNI, BF16, AMX), the runtime versions, the
precision and the model: on one machine OpenVINO won every precision, on another ONNX Runtime's
INT8 may. So `auto` does not prefer one. It builds every candidate engine (cached), checks each
against PyTorch FP32 (the parity stage, kept in each manifest), times them alternately run by
run on the same input (so both see the same load on a shared machine) and picks the fastest
that passes.

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
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.locks import artifact_lock

from .cache import describe_onnx
from .manifest import load_manifest, manifest_path, update_manifest
from .runners import open_runner

#: Engines `auto` weighs on a CPU per precision (BF16: OpenVINO is the one CPU runtime with it).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "fp32": ("openvino", "ort"), "fp16": ("openvino", "ort"), "bf16": ("openvino",),
    "int8": ("openvino", "ort"),
}
CHOICES_FILE = "cpu-choices.json"
#: Timed runs per candidate, alternated, after one untimed run each.
TIMED_RUNS = 3

#: backend -> (engine path, whether it passed parity: None where the caller has no reference to check),
#: built and checked by the caller (the chain).
Prepare = Callable[[str], "tuple[Path, bool | None]"]


@dataclass(frozen=True)
class Candidate:
    backend: str
    engine: str
    parity_passed: bool | None  # None: not measured
    p50_ms: float
    runs_ms: list[float]


def machine(threads: int | None) -> dict[str, Any]:
    """What a CPU engine's speed depends on besides the model: the CPU, its ISA, the runtimes, threads."""
    import onnxruntime

    from .environment import cpu_features
    from .openvino_build import openvino_version
    from .probe import cpu_model

    return {"cpu_model": cpu_model(), "cpu_features": cpu_features(), "logical_cores": os.cpu_count(),
            "onnxruntime": onnxruntime.__version__, "openvino": openvino_version(), "threads": threads}


def choice_key(machine_info: dict[str, Any], precision: str, onnx_sha256: str) -> str:
    text = json.dumps({"machine": machine_info, "precision": precision, "onnx_sha256": onnx_sha256},
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


def choose_cpu_engine(precision: str, onnx_path: Path, engine_dir: Path, prepare: Prepare, *,
                      threads: int | None, resolution: tuple[int, int]) -> dict[str, Any]:
    """The selection record (chosen backend, every candidate's parity and timing, the machine), measured
    once per machine, precision and ONNX model; `prepare(backend)` builds and parity-checks a candidate."""
    machine_info = machine(threads)
    onnx_sha256 = describe_onnx(onnx_path).sha256
    key = choice_key(machine_info, precision, onnx_sha256)
    choices_path = engine_dir / CHOICES_FILE
    with artifact_lock(engine_dir / f"cpu-choice-{key}"):  # one measurement per key, also across runs
        recorded = read_choices(choices_path).get(key)
        if isinstance(recorded, dict) and all(Path(c["engine"]).is_file() for c in recorded["candidates"]):
            _record_in_manifest(recorded)
            return {**recorded, "reused": True}
        prepared = {backend: prepare(backend) for backend in CANDIDATES[precision]}
        with ExitStack() as opened:  # ONNX Runtime engines were optimized for its CPU provider
            runs = {b: opened.enter_context(open_runner(engine, providers="cpu", threads=threads)).run
                    for b, (engine, _) in prepared.items()}
            timings = _time_alternately(runs, resolution)
        candidates = [Candidate(b, str(engine), passed, statistics.median(timings[b]), timings[b])
                      for b, (engine, passed) in prepared.items()]
        passing = [c for c in candidates if c.parity_passed is not False]
        chosen = min(passing or candidates, key=lambda c: c.p50_ms)
        selection = {"chosen": chosen.backend, "precision": precision, "onnx_sha256": onnx_sha256,
                     "rule": _rule(candidates, passing),
                     "resolution": list(resolution), "timed_runs": TIMED_RUNS,
                     "candidates": [asdict(c) for c in candidates], "machine": machine_info,
                     "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _record_choice(choices_path, key, selection)
        _record_in_manifest(selection)
    return {**selection, "reused": False}


def chosen_engine(selection: dict[str, Any]) -> Path:
    return next(Path(c["engine"]) for c in selection["candidates"] if c["backend"] == selection["chosen"])


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


def _time_alternately(runs: dict[str, Callable[[np.ndarray], Any]],
                      resolution: tuple[int, int]) -> dict[str, list[float]]:
    """Milliseconds per run of each candidate: one untimed run each, then TIMED_RUNS rounds, one run of
    each candidate per round, so that load changes on a shared machine hit all candidates alike."""
    width, height = resolution
    batch = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    for run in runs.values():
        run(batch)
    samples: dict[str, list[float]] = {backend: [] for backend in runs}
    for _ in range(TIMED_RUNS):
        for backend, run in runs.items():
            started = time.perf_counter()
            run(batch)
            samples[backend].append(round((time.perf_counter() - started) * 1e3, 2))
    return samples


def describe_selection(selection: dict[str, Any]) -> str:
    """One line for `mirnet build`: what was chosen and the numbers behind it."""
    verdicts = {True: "", False: " (fails parity)", None: ""}
    timings = ", ".join(f"{c['backend']} {c['p50_ms']:.0f} ms{verdicts[c['parity_passed']]}"
                        for c in selection["candidates"])
    width, height = selection["resolution"]
    source = "recorded measurement" if selection.get("reused") else "measured now"
    return (f"{selection['rule']} on this CPU, {source} ({selection['measured_at']}): {timings}, "
            f"median of {selection['timed_runs']} alternated runs at {width}x{height}")
