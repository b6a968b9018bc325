"""Shared fixtures: the authors' golden data (shipped under tests/data/reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE_DIR = Path(__file__).parent / "data" / "reference"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One PyTorch thread for the suite: on 2 shared cores two OpenMP threads wait on each other for
    seconds per small forward pass (measured: 4-8 s instead of 30-60 ms); one thread is never slower
    for the small models the tests use."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def golden() -> dict:
    """The golden npz as a dict: config, ordered keys, aliases, state dict, inputs, outputs."""
    with np.load(REFERENCE_DIR / "mirnet_official_golden_small.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["__meta_json__"]))
        arrays = {k: z[k] for k in z.files if k != "__meta_json__"}
    keys = meta["state_dict_keys_in_order"]
    return {
        "config": meta["config"],
        "keys": keys,
        "aliases": meta["aliases"],
        "state_dict": {k: torch.from_numpy(arrays[k]) for k in keys},
        "arrays": arrays,
    }


@pytest.fixture(scope="session")
def official_keys() -> dict:
    return json.loads((REFERENCE_DIR / "mirnet_official_keys.json").read_text())
