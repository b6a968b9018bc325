"""`auto` on a CPU: the engine chosen by a side-by-side measurement, recorded per machine and reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_engines import toy_onnx

from engines import cpu_choice
from engines.build import EngineSettings, build_engine
from engines.cpu_choice import (
    CHOICES_FILE,
    TIMED_RUNS,
    candidates,
    choose_cpu_engine,
    chosen_engine,
    forms,
    read_choices,
)
from engines.cpu_choice import _record_choice as record_choice
from engines.manifest import load_manifest
from mirnet_deploy.errors import UserError


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return toy_onnx(tmp_path_factory.mktemp("toy") / "toy.onnx")


def _choose(toy: Path, passes: dict[str, bool]) -> dict:
    """A measurement from scratch: the engines (built once for the module) stay, the record goes."""
    engine_dir = toy.parent / "engines"
    (engine_dir / CHOICES_FILE).unlink(missing_ok=True)
    settings = EngineSettings(engine_dir=engine_dir, threads=1, progress=False)
    return choose_cpu_engine("fp32", {"fp32": toy}, engine_dir,
                             lambda backend, onnx, _: (build_engine(onnx, backend, settings).path,
                                                       passes[backend]),
                             threads=1, resolution=(32, 32))


def test_fastest_passing_candidate_is_chosen_recorded_and_reused(toy):
    first = _choose(toy, {"openvino": True, "ort": True})
    timed = {c["backend"]: c for c in first["candidates"]}
    assert set(timed) == {"openvino", "ort"}
    assert all(len(c["runs_ms"]) == TIMED_RUNS and c["p50_ms"] > 0 for c in timed.values())
    assert first["chosen"] == min(timed, key=lambda b: timed[b]["p50_ms"])
    assert not first["reused"]
    assert first["machine"]["cpu_model"]
    assert first["machine"]["openvino"]
    (_key, recorded), = read_choices(toy.parent / "engines" / CHOICES_FILE).items()
    assert recorded["chosen"] == first["chosen"]
    assert load_manifest(chosen_engine(first)).selection == recorded  # the engine says why it was chosen
    settings = EngineSettings(engine_dir=toy.parent / "engines", threads=1, progress=False)
    again = choose_cpu_engine("fp32", {"fp32": toy}, toy.parent / "engines",  # recorded: not measured again
                              lambda backend, onnx, _: (build_engine(onnx, backend, settings).path, False),
                              threads=1, resolution=(32, 32))
    assert again["reused"]
    assert again["measured_at"] == first["measured_at"]


def test_a_candidate_failing_parity_loses_however_fast(toy):
    for failing, winner in (("openvino", "ort"), ("ort", "openvino")):
        chosen = _choose(toy, {"openvino": True, "ort": True} | {failing: False})
        assert chosen["chosen"] == winner
        assert chosen["rule"] == "fastest candidate that passes parity"


def counting_opens(monkeypatch) -> list[Path]:
    """The engines `choose` opens, in order, through its real `open_runner` (which still opens them)."""
    opened: list[Path] = []

    def open_and_count(path, **options):
        opened.append(Path(path))
        return real_open_runner(path, **options)

    real_open_runner = cpu_choice.open_runner
    monkeypatch.setattr(cpu_choice, "open_runner", open_and_count)
    return opened


def test_each_candidate_is_opened_once_for_its_parity_check_and_its_timing(toy, monkeypatch):
    """The check runs on the opener's runner, which the timing then reuses: one import (OpenVINO) or
    session (ONNX Runtime) per candidate, not one for the check and another for the timing."""
    engine_dir = toy.parent / "engines"
    (engine_dir / CHOICES_FILE).unlink(missing_ok=True)
    settings = EngineSettings(engine_dir=engine_dir, threads=1, progress=False)
    batch = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    checked = {}

    def build_and_check(backend, onnx, opener):
        engine = build_engine(onnx, backend, settings).path
        runner = checked[backend] = opener(engine)
        return engine, bool(np.abs(runner.run(batch) - batch).max() < 10)  # a residual net: near its input

    opened = counting_opens(monkeypatch)
    selection = choose_cpu_engine("fp32", {"fp32": toy}, engine_dir, build_and_check, threads=1,
                                  resolution=(32, 32))
    engines = [Path(c["engine"]) for c in selection["candidates"]]
    assert len(set(engines)) == 2
    assert sorted(opened) == sorted(engines)  # each once, its timing included
    assert all(c["parity_passed"] and len(c["runs_ms"]) == TIMED_RUNS for c in selection["candidates"])
    assert all(runner.closed for runner in checked.values())  # closed when the measurement ends


def test_int8_candidates_are_runtimes_and_q_dq_forms():
    """OpenVINO weighs both CPU Q/DQ forms; ONNX Runtime only the u8 one; a form not made is not weighed."""
    assert forms("int8") == ["int8-cpu", "int8-cpu-symmetric"]
    assert forms("int8", "ort") == ["int8-cpu"]
    both = {"int8-cpu", "int8-cpu-symmetric"}
    assert candidates("int8", both) == [("openvino", "int8-cpu"), ("ort", "int8-cpu"),
                                        ("openvino", "int8-cpu-symmetric")]
    assert candidates("int8", both, "openvino") == [("openvino", "int8-cpu"),
                                                    ("openvino", "int8-cpu-symmetric")]
    assert candidates("int8", {"int8-cpu"}) == [("openvino", "int8-cpu"), ("ort", "int8-cpu")]
    assert candidates("bf16", {"fp32"}, "ort") == []
    with pytest.raises(UserError, match="No ort engine runs bf16"):
        choose_cpu_engine("bf16", {"fp32": Path("model.onnx")}, Path("engines"), lambda b, o, _: (o, None),
                          threads=1, resolution=(32, 32), backend="ort")


def test_the_record_file_keeps_concurrent_entries_and_survives_damage(tmp_path):
    path = tmp_path / CHOICES_FILE
    path.write_text("{ half-written")  # only a cache of measurements: read as empty, then rewritten
    assert read_choices(path) == {}
    record_choice(path, "a", {"chosen": "ort"})
    record_choice(path, "b", {"chosen": "openvino"})  # read-modify-write under the lock keeps "a"
    assert json.loads(path.read_text()) == {"a": {"chosen": "ort"}, "b": {"chosen": "openvino"}}


@pytest.mark.slow
def test_build_task_auto_records_the_measured_choice_in_the_manifest(tmp_path):
    """`mirnet build --task denoise --precision fp32` on this CPU: both engines built and parity-checked,
    the fastest passing one chosen, the measurement in its manifest and in the per-machine file."""
    from mirnet_ref.weights import default_weights
    from pipeline.chain import ChainRequest, run_chain

    settings = EngineSettings(engine_dir=tmp_path / "engines", threads=1, progress=False)
    request = ChainRequest(task="denoise", checkpoint=default_weights("denoise"), precision="fp32",
                           artifacts=tmp_path, engine=settings)
    result = run_chain(request)
    assert [step.name for step in result.steps] == ["export", "choose", "build", "parity"]
    selection = load_manifest(result.engine).selection
    timed = {c["backend"]: c for c in selection["candidates"]}
    assert set(timed) == {"openvino", "ort"}
    assert all(c["parity_passed"] for c in timed.values())
    assert result.backend == selection["chosen"] == min(timed, key=lambda b: timed[b]["p50_ms"])
    assert result.manifest.backend == {"ort": "onnxruntime", "openvino": "openvino"}[result.backend]
    assert result.parity_passed
    again = run_chain(request)
    assert {step.name: step.status for step in again.steps}["choose"] == "reused"


def test_bf16_chain_on_a_cpu_without_bf16_is_refused(tmp_path, monkeypatch):
    from engines import openvino_build

    monkeypatch.setattr(openvino_build, "native_bf16", lambda core, device: False)
    toy = toy_onnx(tmp_path / "toy.onnx")
    settings = EngineSettings(engine_dir=tmp_path / "engines", progress=False)
    with pytest.raises(UserError, match="has no BF16 arithmetic"):
        build_engine(toy, "openvino", settings, precision="bf16")
    with pytest.raises(UserError, match="BF16 runs on OpenVINO only"):
        build_engine(toy, "ort", settings, precision="bf16")
