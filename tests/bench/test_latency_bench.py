"""pytest-benchmark suite: the `small` preset per backend and resolution (`make bench-pytest`).

Excluded from `make test` by the `bench` marker. Runs in this process (pytest-benchmark
times the calls), with the same runner and input the `mirnet-bench` workers use, and the
thread count of the test session (tests/conftest.py pins PyTorch to 1 thread; ONNX Runtime
gets the same), under the host allocator policy `mirnet-bench` uses by default (glibc keeps
freed memory: without it PyTorch eager page-faults its activations in on every call, see
mirnet_deploy/host_allocator.py). For peak memory per configuration, the other policy and
the full report, use `mirnet-bench`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models import Artifacts, gmacs, resolve_model
from bench.worker import Job, open_bench_runner, random_batch
from mirnet_deploy.host_allocator import HostAllocator, configure_host_allocator

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def host_allocator() -> HostAllocator:
    """Process-wide and not undone: this suite runs in its own pytest process (`make bench-pytest`)."""
    return configure_host_allocator("retain")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    return Artifacts(resolve_model("small"), tmp_path_factory.mktemp("bench-cache"), log=lambda _: None)


@pytest.mark.parametrize("backend", ["torch", "ort"])
@pytest.mark.parametrize("side", [256, 512])
def test_latency(benchmark, artifacts: Artifacts, host_allocator: HostAllocator, backend: str,
                 side: int) -> None:
    resolution = (side, side)
    job = Job(backend, str(artifacts.for_run(backend, "fp32", resolution, 1)), resolution,
              threads=torch.get_num_threads())
    with open_bench_runner(job) as runner:
        batch = random_batch(job, channels=3)
        benchmark.group = f"{side}x{side}"
        benchmark.extra_info.update(backend=backend, resolution=f"{side}x{side}", threads=job.threads,
                                    host_allocator=host_allocator.description, megapixels=side * side / 1e6,
                                    gmacs=gmacs(artifacts.model, resolution, 1))
        output = benchmark.pedantic(runner.run, args=(batch,), rounds=5, warmup_rounds=1, iterations=1)
    assert output.shape == batch.shape
    assert np.isfinite(output).all()
