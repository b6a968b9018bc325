"""`mirnet serve`: a real Triton Inference Server, started through PyTriton, in front of one of our runners.

PyTriton starts the `tritonserver` binary it bundles (HTTP, gRPC, Prometheus metrics, health
and readiness endpoints, Triton's dynamic batcher) and calls `infer` below in this process with
each batch Triton formed: requests of the same tile size, concatenated along the batch axis. The
runner is any of ours (ONNX Runtime or OpenVINO on a CPU, TensorRT on a GPU), so a served model
computes exactly what `mirnet infer --model` computes locally.

Shutdown: SIGTERM or SIGINT stops Triton the way Triton stops: it stops taking requests, lets the
ones in flight finish (up to `exit_timeout_s`), then exits; the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.runners import Runner
from mirnet_deploy.errors import UserError

from .interpreter import check_serving_interpreter

DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000
#: Triton's metrics: latency quantiles (p50/p90/p95/p99 over a sliding window) next to its counters.
METRICS_CONFIG = ["summary_latencies=true"]


@dataclass(frozen=True)
class ServeOptions:
    """The `mirnet serve` flags that shape the server (the model comes as a runner)."""

    model_name: str
    host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch_size: int = DEFAULT_MAX_BATCH
    dynamic_batching: bool = True
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    exit_timeout_s: int = 10

    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse ports another process listens on, before Triton starts (it would exit with a log line)."""
    if len(set(ports.values())) != len(ports):
        raise UserError(f"The HTTP, gRPC and metrics ports must differ: {ports}.")
    for label, port in ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a restart is no owner
            try:
                probe.bind((host, port))
            except OSError as error:
                raise UserError(f"Port {port} ({label}) on {host} is taken: {error.strerror}. Another server "
                                f"listens there; stop it or pass another --{label}-port.") from None


def batch_limit(runner: Runner, requested: int) -> int:
    """The largest batch to let Triton form: `requested`, within what the runner takes."""
    fixed = runner.input_spec.shape[0]
    if fixed != -1:
        return min(requested, fixed)
    profiles = getattr(runner, "profiles", None)  # TensorRT: every profile must take the whole batch
    if profiles:
        return min(requested, *(p.max[0] for p in profiles))
    return requested


def infer_function(runner: Runner) -> Callable[..., dict[str, np.ndarray]]:
    """The callable PyTriton calls with each batch: the runner's input name in, its output name out."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        output = runner.run(inputs[runner.input_spec.name])
        return {runner.output_spec.name: np.asarray(output, dtype=np.float32)}

    return infer


def model_config(runner: Runner, options: ServeOptions) -> Any:
    from pytriton.model_config import DynamicBatcher, ModelConfig

    max_batch = batch_limit(runner, options.max_batch_size)
    batcher = (DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us)
               if options.dynamic_batching and max_batch > 1 else None)
    return ModelConfig(batching=True, max_batch_size=max_batch, batcher=batcher)


def serve(runner: Runner, options: ServeOptions, on_ready: Callable[[str], None]) -> None:
    """Serve `runner` until SIGTERM/SIGINT; `on_ready` gets a line saying where, once the model is ready."""
    check_serving_interpreter()
    check_ports_free(options.host, options.ports())
    from pytriton.model_config import Tensor
    from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    config = TritonConfig(http_address=options.host, http_port=options.http_port, grpc_address=options.host,
                          grpc_port=options.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s,
                          metrics_config=METRICS_CONFIG, allow_gpu_metrics=False)
    channels = runner.input_spec.shape[1]
    batching = model_config(runner, options)
    # The model goes into the repository before tritonserver starts, so Triton loads it at startup and
    # /v2/health/ready answers 200 only once it can serve (PyTriton's default loads it afterwards, and
    # the server reports ready, with no model, in between: a load balancer would send traffic too early).
    loaded_at_startup = TritonLifecyclePolicy(launch_triton_on_startup=False, local_model_store=True)
    with Triton(config=config, triton_lifecycle_policy=loaded_at_startup) as triton:
        triton.bind(model_name=options.model_name, infer_func=infer_function(runner),
                    inputs=[Tensor(name=runner.input_spec.name, dtype=np.float32, shape=(channels, -1, -1))],
                    outputs=[Tensor(name=runner.output_spec.name, dtype=np.float32, shape=(-1, -1, -1))],
                    config=batching, strict=True)
        triton.run()
        dynamic = "on" if batching.batcher else "off"
        on_ready(f"serving {options.model_name!r} ({runner.name}) on {options.host}: "
                 f"HTTP {options.http_port}, gRPC {options.grpc_port}, metrics {options.metrics_port}; "
                 f"max batch {batching.max_batch_size}, dynamic batching {dynamic}; SIGTERM stops it")
        while not stop.wait(0.5):
            if not triton.is_alive():
                raise UserError(f"Triton stopped unexpectedly while serving {options.model_name!r}; its log "
                                f"ends with:\n{_log_tail(triton)}")


def _log_tail(triton: Any, lines: int = 15) -> str:
    server = getattr(triton, "_triton_server", None)
    logs = server.logs() if server is not None else ""
    return "\n".join(logs.splitlines()[-lines:]) or "(no log)"
