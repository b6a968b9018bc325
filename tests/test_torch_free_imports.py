"""Processes that never run PyTorch do not import it: a `mirnet-bench` worker timing an engine,
`mirnet calibrate`, the demo's engine list and photo. Importing torch costs about 3 CPU-seconds
per process (the demo starts a dozen of them), and an engine's deployment does not have it."""

from __future__ import annotations

import subprocess
import sys

#: What those processes import: the worker and the runners it opens (TorchRunner loads on first use;
#: tests/test_parity.py imports it), the calibration verbs and sets, the chain with every step
#: cached, the demo's photo (images, degradations) and the weights' location.
TORCH_FREE = ("bench.worker", "engines.runners", "engines.tiling", "calibration.cli", "calibration.dataset",
              "pipeline.chain", "pipeline.demo", "mirnet_ref.datasets", "mirnet_ref.degradations",
              "mirnet_ref.images", "mirnet_ref.weights")


def test_engine_side_modules_do_not_import_torch():
    script = ("import importlib, sys\n"
              f"for name in {TORCH_FREE!r}:\n"
              "    importlib.import_module(name)\n"
              "    assert 'torch' not in sys.modules, name\n")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
