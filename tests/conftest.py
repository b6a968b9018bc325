"""Shared fixtures: the authors' golden data (shipped under tests/data/reference)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

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


@functools.cache
def load_golden(filename: str) -> dict:
    """A golden npz as a dict: config, ordered keys, aliases, state dict, inputs, outputs."""
    with np.load(REFERENCE_DIR / filename, allow_pickle=False) as z:
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


@functools.cache
def load_official_keys(filename: str) -> dict:
    return json.loads((REFERENCE_DIR / filename).read_text())


@pytest.fixture(scope="session")
def golden() -> dict:
    return load_golden("mirnet_official_golden_small.npz")


@pytest.fixture(scope="session")
def official_keys() -> dict:
    return load_official_keys("mirnet_official_keys.json")


@pytest.fixture(scope="session")
def reference() -> SimpleNamespace:
    """The reference files of every family by name: `reference.golden(npz)`, `reference.keys(json)`."""
    return SimpleNamespace(golden=load_golden, keys=load_official_keys)
