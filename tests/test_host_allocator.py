"""The host allocator policy: with `retain`, an eager forward pass reuses the memory the last one freed."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from mirnet_deploy.host_allocator import configure_host_allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the retain policy needs glibc")

# Four eager forward passes of the small preset at 256x256; the minor page faults of the fourth
# count the activations that were mapped and zero-filled again although the same sizes were freed.
_PROBE = """
import json, resource, sys
from mirnet_deploy.host_allocator import configure_host_allocator
allocator = configure_host_allocator(sys.argv[1])
import torch
from mirnet_ref.presets import build_preset
torch.manual_seed(0)
model, image = build_preset("small").eval(), torch.rand(1, 3, 256, 256)
with torch.inference_mode():
    model(image), model(image), model(image)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(image)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"policy": allocator.policy, "description": allocator.description, "faults": faults}))
"""


def _fourth_pass(policy: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", _PROBE, policy], capture_output=True, text=True,
                               check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_retained_memory_is_reused_by_the_next_pass_and_the_system_default_faults_it_in_again():
    retained, system = _fourth_pass("retain"), _fourth_pass("system")
    assert (retained["policy"], system["policy"]) == ("retain", "system")
    assert "retaining freed memory" in retained["description"]
    assert "default thresholds" in system["description"]
    # 15,800-40,000 faults (62-155 MiB zero-filled) by default on our machine; 0 when retained
    assert system["faults"] > 5_000
    assert retained["faults"] < system["faults"] // 8


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="retain, system"):
        configure_host_allocator("jemalloc")
