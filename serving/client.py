"""The client side of `mirnet serve`: tiles sent over gRPC to one or more Triton servers (replicas).

`TritonReplicas` spreads requests round-robin over the servers. A request a server cannot take
(down, shutting down, restarting, its model not loaded yet) is sent to the next one, and the
round repeats with a short pause until `retry_window_s` has passed; then the request fails with
every server's last answer. Each request therefore gets exactly one answer: a response, or an
error that says why. Any other error (the model refused the input) fails at once. Inference is
stateless, so sending a request again cannot change a result.

`ConcurrentTiledRunner` keeps `concurrency` tiles of an image in flight at once, so that the
server's dynamic batcher can put tiles from this and other clients into one batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.infer import LoadedModel
from engines.runners.base import Runner, TensorSpec, to_numpy
from engines.tiling import TiledRunner
from mirnet_deploy.errors import UserError

from .triton_config import INSTALL_HINT

DEFAULT_SERVER = "localhost:8001"
DEFAULT_SERVER_TILE = 256
DEFAULT_CONCURRENCY = 8
DEFAULT_RETRY_WINDOW_S = 60.0
#: gRPC statuses of a server that cannot take the request now (down, stopping, model not loaded yet).
RETRYABLE_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND", "StatusCode.CANCELLED"}
RETRY_PAUSE_S = 0.5
#: The probe that reads the model's scale (output size / input size); the graph pads any size itself.
PROBE_SIZE = 64


def grpc_address(url: str) -> str:
    """`host:port` from `host:port` or `grpc://host:port`."""
    address = url.removeprefix("grpc://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in address:
        raise UserError(f"--server {url!r}: give a Triton gRPC address HOST:PORT, e.g. {DEFAULT_SERVER} "
                        f"(`mirnet serve` listens for gRPC on --grpc-port, 8001 by default).")
    return address


def input_channels(dims: list[int], model: str) -> int:
    """The channel count of an NCHW (or, batched by Triton, CHW) input shape; refused when the server
    does not fix it, since the images sent must have it (3 for RGB, 6 for dual-pixel views)."""
    channels = dims[-3] if len(dims) >= 3 else -1
    if channels < 1:
        raise UserError(f"{model} takes inputs of shape {dims} (-1 = any), with no fixed channel count "
                        "before height and width: it is not an image model `mirnet serve` made.")
    return int(channels)


@dataclass
class ServerTally:
    """What one server did for this client."""

    answered: int = 0  # requests: the model's metadata, the scale probe, then the tiles
    refused: int = 0  # requests it could not take, sent again elsewhere or later
    last_error: str = ""


class TritonReplicas:
    """One model on one or more Triton servers, over gRPC; thread-safe (one gRPC client per thread)."""

    def __init__(self, urls: Sequence[str], model_name: str, *,
                 retry_window_s: float = DEFAULT_RETRY_WINDOW_S, timeout_s: float = 600.0):
        try:
            import tritonclient.grpc  # noqa: F401
        except ImportError:
            raise UserError(INSTALL_HINT) from None
        if not urls:
            raise UserError("Give at least one server address.")
        self.urls = list(dict.fromkeys(grpc_address(url) for url in urls))
        self.retry_window_s, self.timeout_s = retry_window_s, timeout_s
        self.tally = {url: ServerTally() for url in self.urls}
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clients: list[Any] = []
        self.model_name, self.input_name, self.output_name, self.channels = self._with_retries(
            lambda client, url: self._describe(client, url, model_name))

    def _client(self, url: str) -> Any:
        import tritonclient.grpc as grpcclient

        clients = self._local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = grpcclient.InferenceServerClient(url)
            with self._lock:
                self._clients.append(clients[url])
        return clients[url]

    def _forget(self, url: str) -> None:
        """Drop this thread's channel to a server that refused: gRPC keeps a dead channel in reconnect
        backoff (growing to minutes) after the server is back, so a restarted replica would get no work."""
        client = self._local.__dict__.get("clients", {}).pop(url, None)
        if client is not None:
            with self._lock:
                self._clients.remove(client)
            client.close()

    @staticmethod
    def _describe(client: Any, url: str, model_name: str) -> tuple[str, str, str, int]:
        """The model's name, input, output and input channels, from its metadata (PyTriton keeps the
        repository index behind an access token, so the name must be known: `mirnet serve` names it after
        the task)."""
        metadata = client.get_model_metadata(model_name)
        if len(metadata.inputs) != 1 or len(metadata.outputs) != 1:
            raise UserError(f"Model {model_name!r} on {url} has {len(metadata.inputs)} inputs and "
                            f"{len(metadata.outputs)} outputs; an image-restoration model has one of each.")
        return (model_name, metadata.inputs[0].name, metadata.outputs[0].name,
                input_channels(list(metadata.inputs[0].shape), f"Model {model_name!r} on {url}"))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for one float32 NCHW batch, from whichever server answers first in turn."""
        import tritonclient.grpc as grpcclient

        def request(client: Any, url: str) -> np.ndarray:
            tensor = grpcclient.InferInput(self.input_name, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = client.infer(self.model_name, [tensor], client_timeout=self.timeout_s,
                                  outputs=[grpcclient.InferRequestedOutput(self.output_name)])
            return result.as_numpy(self.output_name)

        return self._with_retries(request)

    def _with_retries(self, call: Any) -> Any:
        """`call(client, url)` on the servers in turn until one answers or the retry window closes."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.retry_window_s
        first = next(self._turn)
        while True:
            for offset in range(len(self.urls)):
                url = self.urls[(first + offset) % len(self.urls)]
                try:
                    answer = call(self._client(url), url)
                except InferenceServerException as error:
                    if error.status() not in RETRYABLE_STATUSES or "restricted" in str(error.message()):
                        raise UserError(f"Server {url} refused the request: {error.message()}") from None
                    with self._lock:
                        self.tally[url].refused += 1
                        self.tally[url].last_error = f"{error.status()}: {error.message()}"
                    self._forget(url)
                    continue
                with self._lock:
                    self.tally[url].answered += 1
                return answer
            if time.monotonic() >= deadline:
                reasons = "; ".join(f"{url}: {t.last_error}" for url, t in self.tally.items())
                waited = f"within {self.retry_window_s:g} s" if self.retry_window_s > 0 else "(no retries)"
                raise UserError(f"No server answered {waited} ({reasons}). Start one "
                                f"(`.venv-serve/bin/mirnet serve`) or check the --server addresses.")
            time.sleep(RETRY_PAUSE_S)

    def report(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {url: vars(t).copy() for url, t in self.tally.items()}

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


class RemoteRunner(Runner):
    """The `Runner` interface over `TritonReplicas`: run() is one request."""

    def __init__(self, replicas: TritonReplicas):
        self.replicas = replicas
        self.name = f"triton:{replicas.model_name}@{','.join(replicas.urls)}"
        self.input_spec = TensorSpec(replicas.input_name, "float32", (-1, replicas.channels, -1, -1))
        self.output_spec = TensorSpec(replicas.output_name, "float32", (-1, 3, -1, -1))

    def run(self, x: Any) -> np.ndarray:
        return self.replicas.infer(self.check_batch(to_numpy(x)))

    def close(self) -> None:
        super().close()
        self.replicas.close()


class ConcurrentTiledRunner(TiledRunner):
    """`TiledRunner` with up to `concurrency` tiles of an image in flight, results taken in order."""

    def __init__(self, runner: Runner, *, concurrency: int = DEFAULT_CONCURRENCY, **tiling: Any):
        super().__init__(runner, **tiling)
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tile")

    def run_tiles(self, crops: Iterator[np.ndarray]) -> Iterator[Any]:
        pending: deque = deque()
        for crop in crops:
            pending.append(self._pool.submit(self.runner.run, crop))
            if len(pending) >= self.concurrency:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


def open_remote_model(urls: Sequence[str], model_name: str,
                      retry_window_s: float = DEFAULT_RETRY_WINDOW_S) -> LoadedModel:
    """The served model as `mirnet infer` sees a local one; its scale is read from one small request."""
    runner = RemoteRunner(TritonReplicas(urls, model_name, retry_window_s=retry_window_s))
    probe = runner.run(np.zeros((1, runner.replicas.channels, PROBE_SIZE, PROBE_SIZE), np.float32))
    scale = probe.shape[2] // PROBE_SIZE
    return LoadedModel(runner, ",".join(runner.replicas.urls), runner.replicas.model_name, max(scale, 1),
                       size_multiple=1, config={}, precision="served")


def remote_tiled_runner(model: LoadedModel, tile: int | None, overlap: int,
                        concurrency: int) -> tuple[Runner, str]:
    """Fixed-size tiles (so that requests batch on the server), `concurrency` of them in flight."""
    if tile == 0:
        return model.runner, "off (whole images, one request each)"
    tile = tile or DEFAULT_SERVER_TILE
    runner = ConcurrentTiledRunner(model.runner, concurrency=concurrency, tile=tile, overlap=overlap,
                                   scale=model.scale, multiple=model.size_multiple)
    return runner, f"tiles up to {tile}x{tile}, overlap {overlap}, {concurrency} in flight"
