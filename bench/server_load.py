"""`mirnet-bench --server`: a load test of a served model (`mirnet serve` or any Triton server).

For each concurrency level, that many clients (threads, each with its own gRPC connection)
send the same image again and again for `duration_s`; each answer's round trip is one latency
sample, each refused or failed request one error (no retries: a load test counts them). The
server's Prometheus counters, read before and after each level, give what the client cannot see:
the mean batch Triton's dynamic batcher formed (inferences / executions) and the mean time a
request waited in its queue.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mirnet_deploy.errors import UserError
from serving.client import TritonReplicas, grpc_address

from .latency import summarize

#: Triton's per-model counters used here (cumulative since the server started).
COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_request_duration_us")
WARMUP_REQUESTS = 2


@dataclass(frozen=True)
class LoadResult:
    """One concurrency level: what the clients measured and what the server's counters say."""

    server: str
    model: str
    resolution: str
    batch: int
    concurrency: int
    seconds: float
    requests: int  # answered
    errors: int
    images_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    server_batch_mean: float | None  # images per model execution
    server_queue_ms: float | None  # mean wait in Triton's queue per request
    first_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics_url(server: str) -> str:
    """`mirnet serve`'s metrics endpoint beside a gRPC address: the gRPC port + 1 (8001 -> 8002)."""
    host, _, port = grpc_address(server).rpartition(":")
    return f"http://{host}:{int(port) + 1}/metrics"


def scrape(url: str, model: str) -> dict[str, float] | None:
    """The model's counters (summed over versions and reasons); None when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    totals = dict.fromkeys(COUNTERS, 0.0)
    pattern = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match and match.group(1) in totals and f'model="{model}"' in match.group(2):
            totals[match.group(1)] += float(match.group(3))
    return totals


def run_level(replicas: TritonReplicas, images: np.ndarray, concurrency: int,
              duration_s: float) -> tuple[list[float], int, str, float]:
    """`concurrency` clients for `duration_s`: (latencies in ms, errors, first error, elapsed seconds)."""
    latencies: list[float] = []
    errors = 0
    first_error = ""
    lock = threading.Lock()
    start = time.perf_counter()
    end = start + duration_s

    def client() -> None:
        nonlocal errors, first_error
        while time.perf_counter() < end:
            sent = time.perf_counter()
            try:
                replicas.infer(images)
            except UserError as error:
                with lock:
                    errors += 1
                    first_error = first_error or str(error)
                continue
            with lock:
                latencies.append((time.perf_counter() - sent) * 1e3)

    threads = [threading.Thread(target=client, name=f"load-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, first_error, time.perf_counter() - start


def load_test(server: str, model_name: str, images: np.ndarray, resolution: str,
              concurrencies: list[int], duration_s: float, metrics: str | None = None) -> list[LoadResult]:
    """Each concurrency level in turn against one server; `images` is one float32 NCHW request."""
    replicas = TritonReplicas([server], model_name, retry_window_s=0.0)
    metrics = metrics or metrics_url(server)
    try:
        for _ in range(WARMUP_REQUESTS):
            replicas.infer(images)
        results = []
        for concurrency in concurrencies:
            before = scrape(metrics, replicas.model_name)
            latencies, errors, first_error, elapsed = run_level(replicas, images, concurrency, duration_s)
            after = scrape(metrics, replicas.model_name)
            results.append(_result(replicas, server, resolution, images.shape[0], concurrency, latencies,
                                   errors, first_error, elapsed, before, after))
        return results
    finally:
        replicas.close()


def _result(replicas: TritonReplicas, server: str, resolution: str, batch: int, concurrency: int,
            latencies: list[float], errors: int, first_error: str, elapsed: float,
            before: dict[str, float] | None, after: dict[str, float] | None) -> LoadResult:
    stats = summarize(latencies) if latencies else None
    delta = {k: after[k] - before[k] for k in COUNTERS} if before and after else None

    def ratio(numerator: str, denominator: str, scale: float = 1.0) -> float | None:
        if not delta or delta[denominator] <= 0:
            return None
        return round(delta[numerator] / delta[denominator] * scale, 3)

    return LoadResult(
        server=server, model=replicas.model_name, resolution=resolution, batch=batch, concurrency=concurrency,
        seconds=round(elapsed, 2), requests=len(latencies), errors=errors,
        images_per_s=round(len(latencies) * batch / elapsed, 3),
        p50_ms=stats and round(stats.p50_ms, 1), p90_ms=stats and round(stats.p90_ms, 1),
        p99_ms=stats and round(stats.p99_ms, 1), mean_ms=stats and round(stats.mean_ms, 1),
        server_batch_mean=ratio("nv_inference_count", "nv_inference_exec_count"),
        server_queue_ms=ratio("nv_inference_queue_duration_us", "nv_inference_request_success", 1e-3),
        first_error=first_error)


def format_load_table(results: list[LoadResult]) -> str:
    """A Markdown table, one row per server and concurrency level."""
    header = ("| server | model | resolution | clients | seconds | requests | errors | images/s | p50 ms "
              "| p90 ms | p99 ms | server batch (mean) | server queue ms (mean) |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        cells = [r.server, r.model, r.resolution, r.concurrency, r.seconds, r.requests, r.errors,
                 r.images_per_s, r.p50_ms, r.p90_ms, r.p99_ms, r.server_batch_mean, r.server_queue_ms]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    errors = [f"{r.server} at {r.concurrency} clients: {r.first_error}" for r in results if r.first_error]
    return "\n".join(lines + [f"first error: {e}" for e in errors])
