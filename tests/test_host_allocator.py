"""The host allocator policy: with `retain`, an eager forward pass reuses the memory the last one freed;
a process started again with huge pages faults a fresh block in 2 MiB at a time."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mirnet_deploy.host_allocator import MALLOC_HUGE_PAGES, configure_host_allocator

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


@pytest.mark.slow
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


# A fresh 64 MiB block (above glibc's mmap threshold) written once: 16,384 minor faults with 4 KiB pages.
_HUGE_PAGES_PROBE = """
import json, os, resource, sys
from mirnet_deploy.host_allocator import reexec_with_malloc_huge_pages
if sys.argv[1] == "reexec":
    reexec_with_malloc_huge_pages()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 << 20)  # plain malloc (numpy would ask for huge pages itself)
block[::4096] = b"\\x01" * (16 << 10)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "faults": faults, "sum": block.count(1)}))
"""


def _fresh_block(mode: str) -> dict:
    environment = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.top_pad=131072"}
    completed = subprocess.run([sys.executable, "-c", _HUGE_PAGES_PROBE, mode], capture_output=True,
                               text=True, check=True, timeout=120, env=environment)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_process_started_again_with_huge_pages_keeps_its_tunables_and_faults_less():
    huge, plain = _fresh_block("reexec"), _fresh_block("plain")
    assert huge["tunables"] == f"glibc.malloc.top_pad=131072:{MALLOC_HUGE_PAGES}"
    assert plain["tunables"] == "glibc.malloc.top_pad=131072"
    assert huge["sum"] == plain["sum"] == 16_384
    assert plain["faults"] >= 16_000
    if "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(encoding="utf-8"):
        pytest.skip("this kernel grants no transparent huge pages: only the tunable is checked")
    # 544 with huge pages on our machine, 16,388 without
    assert huge["faults"] < plain["faults"] // 8


# `mirnet audit-fp16` started as the command (its `main` is `__main__`'s), its audits replaced by a probe
# of the process they would run in: method pytorch keeps freed memory, method graph runs under the
# system allocator and restarts once with huge pages. No torch is imported: the probe is all it runs.
_AUDIT_PROBE = """
import json, os, sys, types
from mirnet_deploy import cli, host_allocator
from mirnet_ref import weights

main = cli.main
def probe(*args, **kwargs):
    allocator = host_allocator.configure_host_allocator("system")  # says what is in effect, changes nothing
    print(json.dumps({"policy": allocator.policy, "tunables": os.environ.get("GLIBC_TUNABLES")}))
    sys.exit(0)
sys.modules["export.network"] = types.SimpleNamespace(load_network=lambda *args: (None, None))
sys.modules["export.fp16_emulation"] = types.SimpleNamespace(audit_network_graph=probe)
sys.modules["export.fp16_audit"] = types.SimpleNamespace(audit_at_resolutions=probe)
weights.default_weights = lambda task, arch: "demo.pth"
main(["audit-fp16", "--res", "16", "--method", sys.argv[1]])
"""


@pytest.mark.parametrize(("method", "policy", "huge_pages"), [("pytorch", "retain", False),
                                                              ("graph", "system", True)])
def test_each_audit_method_runs_under_the_allocator_it_needs(method, policy, huge_pages):
    environment = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    completed = subprocess.run([sys.executable, "-c", _AUDIT_PROBE, method], capture_output=True, text=True,
                               timeout=120, env=environment)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found == {"policy": policy, "tunables": MALLOC_HUGE_PAGES if huge_pages else None}
