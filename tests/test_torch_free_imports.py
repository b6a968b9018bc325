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


#: The verbs `make demo` runs, by their modules: none degrades with a blur or runs a deconvolution or root
#: search, so none imports scipy.signal, scipy.ndimage or scipy.optimize (about 1.5 CPU-s a process; the
#: blur, rain and deconvolution code imports them where it runs).
SCIPY_FREE = ("mirnet_ref.cli", "mirnet_ref.model_costs", "calibration.cli", "pipeline.cli", "pipeline.demo",
              "bench.latency_cli")


def test_demo_verbs_do_not_import_scipy_signal_ndimage_or_optimize():
    script = ("import importlib, sys\n"
              f"for name in {SCIPY_FREE!r}:\n"
              "    importlib.import_module(name)\n"
              "    loaded = [m for m in ('scipy.signal', 'scipy.ndimage', 'scipy.optimize')\n"
              "              if m in sys.modules]\n"
              "    assert not loaded, (name, loaded)\n")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
