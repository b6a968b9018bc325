"""The stack's layering, read from the source: no module imports from a stage above its own.

    mirnet_deploy (shared glue) -> mirnet_ref (models, registry) -> export -> calibration -> engines
        -> bench, serving -> pipeline (orchestration: the chain, `mirnet build`, demo, gpu-check)

Every `import` and `from ... import` statement counts, also those inside functions (lazy
imports are still dependencies). `mirnet_deploy/cli.py` names the stages' commands as strings
and imports them on use (importlib), which this check does not see: the CLI group dispatches,
it does not depend. `engines/cpp` is the C++ side; its Python files are ctest's test scripts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Stage package -> its rank; a module may import packages of its own rank or lower, never higher.
#: serving (Triton repositories, the server and its client) sits on the engines; bench above it, since
#: `mirnet-bench --server` load-tests a served model through serving's client.
LAYERS: dict[str, int] = {
    "mirnet_deploy": 0,
    "mirnet_ref": 1,
    "export": 2,
    "calibration": 3,
    "engines": 4,
    "serving": 5,
    "bench": 6,
    "pipeline": 7,
}
EXCLUDED = (REPO / "engines" / "cpp",)


def imported_stages(path: Path) -> dict[str, int]:
    """Stage package -> the line of the first statement in `path` that imports from it (absolute imports)."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS:
                found.setdefault(top, node.lineno)
    return found


def stage_modules() -> list[tuple[str, Path]]:
    modules = []
    for stage in LAYERS:
        for path in sorted((REPO / stage).rglob("*.py")):
            if not any(path.is_relative_to(excluded) for excluded in EXCLUDED):
                modules.append((stage, path))
    return modules


def violations(stage: str, path: Path) -> list[str]:
    """`path:line imports X (...)` for each stage above `stage` (or beside it) that `path` imports."""
    own = LAYERS[stage]
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [f"{shown}:{line} imports {other} (rank {LAYERS[other]}, not below {stage}'s {own})"
            for other, line in imported_stages(path).items()
            if other != stage and LAYERS[other] >= own]


def test_every_stage_package_exists_and_is_scanned():
    modules = stage_modules()
    assert {stage for stage, _ in modules} == set(LAYERS)
    assert len(modules) > 80  # the whole toolkit (91 modules today), not an empty glob


@pytest.mark.parametrize("stage", list(LAYERS))
def test_no_stage_imports_from_above(stage: str):
    found = [v for s, path in stage_modules() if s == stage for v in violations(s, path)]
    assert not found, "\n".join(found)


def test_the_check_sees_lazy_and_upward_imports(tmp_path: Path):
    """An import inside a function from a higher stage is reported, with its line."""
    module = tmp_path / "chain.py"
    module.write_text("import json\n\ndef run():\n"
                      "    from bench.parity import run_parity\n    import engines\n")
    assert imported_stages(module) == {"bench": 4, "engines": 5}
    assert violations("engines", module) == [f"{module}:4 imports bench (rank 6, not below engines's 4)"]
    assert violations("serving", module) == [f"{module}:4 imports bench (rank 6, not below serving's 5)"]
    assert violations("pipeline", module) == []
