"""`mirnet serve` (a real Triton server, PyTriton), `mirnet infer --server` and `mirnet-bench --server`.

The servers run in the serving venv (`.venv-serve`, `make setup SERVE=1`), as users run them; the
clients run here. Tests that need that venv skip, naming it, where it is absent. The ones that start
servers are `slow` (a server starts in 5-30 s on 2 shared cores): `pytest -m slow tests/test_serving.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.latency_cli import mirnet_bench
from mirnet_deploy.cli import main
from mirnet_deploy.errors import UserError
from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.degradations import degrade_pair, make_degradation
from mirnet_ref.images import read_image, write_image
from mirnet_ref.metrics import psnr
from serving.client import grpc_address, input_channels
from serving.server import check_ports_free

REPO = Path(__file__).resolve().parents[1]
SERVE_VENV = REPO / ".venv-serve"
SERVE_MIRNET = SERVE_VENV / "bin" / "mirnet"
needs_serve_venv = pytest.mark.skipif(
    not (SERVE_VENV / ".installed").is_file(),
    reason=f"{SERVE_VENV} is absent: `make setup SERVE=1` builds the serving venv `mirnet serve` runs in")
READY_TIMEOUT_S = 240


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _noisy_heldout(folder: Path, size: tuple[int, int], copies: int = 1) -> list[Path]:
    """The held-out photographs at `size`, with the denoise task's noise, as 8-bit PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for copy in range(copies):
        for index, (name, photo) in enumerate(builtin_images("heldout")):
            rng = np.random.default_rng((copy, index))
            noisy = degrade_pair(make_degradation("denoise"), image_at_resolution(photo, *size), rng)[0]
            paths.append(folder / f"{name}-{copy:02d}.png")
            write_image(paths[-1], noisy, 8)
    return paths


# ---------------------------------------------------------------------------------------------------
# Without a server


def test_serve_outside_the_serving_venv_names_the_fix():
    try:
        import pytriton  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyTriton is installed in this venv, so serve would start here")
    result = CliRunner().invoke(main, ["serve", "--task", "denoise"])
    assert result.exit_code == 1
    assert "needs PyTriton" in result.output
    assert "make setup SERVE=1" in result.output
    assert ".venv-serve/bin/mirnet serve" in result.output
    assert "Traceback" not in result.output


@needs_serve_venv
def test_stub_of_another_python_build_is_refused_with_the_fix():
    """This interpreter (pyenv's 3.11.7) against the real PyTriton stub of the serving venv."""
    stub_root = next(SERVE_VENV.glob("lib/python3*/site-packages/pytriton"))
    code = ("import sys; from pathlib import Path; from serving.interpreter import *; "
            "found = inspect_stub(Path(sys.argv[1]))\n"
            "print(found.libpython_version, found.interpreter_version)\n"
            "try:\n    check_serving_interpreter(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e)")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    done = subprocess.run([sys.executable, "-c", code, str(stub_root)], capture_output=True, text=True,
                          cwd=REPO, env=env, check=True)
    stub_version, own_version = done.stdout.split("\n")[0].split()
    if stub_version == own_version:
        pytest.skip(f"this interpreter is {own_version}, the same as the stub's libpython: nothing to refuse")
    message = done.stdout
    assert f"This Python is {own_version}" in message
    assert f"(Python {stub_version})" in message
    assert "make setup SERVE=1" in message
    assert "_recursion_count" in message
    ok = subprocess.run([str(SERVE_VENV / "bin" / "python"), "-m", "serving.interpreter"], cwd=REPO,
                        capture_output=True, text=True, check=True)
    assert ok.stdout.startswith("ok: PyTriton's stub loads")
    assert "3.11" in ok.stdout


def test_a_taken_port_is_refused_by_name():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        free = _free_ports(2)
        with pytest.raises(UserError, match=rf"Port {port} \(grpc\) on 127.0.0.1 is taken.*--grpc-port"):
            check_ports_free("127.0.0.1", {"http": free[0], "grpc": port, "metrics": free[1]})
    with pytest.raises(UserError, match="must differ"):
        check_ports_free("127.0.0.1", {"http": free[0], "grpc": free[0], "metrics": free[1]})


def test_the_served_inputs_channel_count_is_read_from_its_metadata():
    assert input_channels([-1, 6, -1, -1], "m") == 6  # batched by Triton: N x C x H x W
    assert input_channels([3, -1, -1], "m") == 3  # without batching: C x H x W
    for unfixed in ([-1, -1, -1, -1], [-1, -1]):
        with pytest.raises(UserError, match="no fixed channel count"):
            input_channels(unfixed, "m")


def test_server_addresses_are_checked():
    assert grpc_address("grpc://10.0.0.2:8001") == "10.0.0.2:8001"
    for bad in ("localhost", "http://host:8000/v2", "host:port"):
        with pytest.raises(UserError, match="HOST:PORT"):
            grpc_address(bad)


def test_no_server_answering_is_reported_and_nothing_is_written(tmp_path: Path):
    _noisy_heldout(tmp_path / "in", (64, 48))
    port = _free_ports(1)[0]
    result = CliRunner().invoke(main, ["infer", "--server", f"127.0.0.1:{port}", "--task", "denoise",
                                       "--retry-window", "1", "-i", str(tmp_path / "in"),
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"No server answered within 1 s (127.0.0.1:{port}: StatusCode.UNAVAILABLE" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------------------------------
# Real servers (slow)


@dataclass
class Server:
    """One `mirnet serve` process of the serving venv on loopback ports."""

    args: list[str]
    log: Path
    http: int
    grpc: int
    metrics: int
    process: subprocess.Popen | None = None
    model: str = "denoise"  # the served model's name

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self) -> Server:
        ports = ["--host", "127.0.0.1", "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                 "--metrics-port", str(self.metrics)]
        handle = open(self.log, "ab")  # noqa: SIM115 (the process owns it)
        self.process = subprocess.Popen([str(SERVE_MIRNET), "serve", *self.args, *ports], cwd=REPO,
                                        stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log_tail()}"
            if self.ready():  # the model is loaded by then: the load balancer's probe can trust it
                assert self.ready(f"/v2/models/{self.model}/ready"), self.log_tail()
                return self
            time.sleep(0.5)
        raise AssertionError(f"server not ready after {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def ready(self, path: str = "/v2/health/ready") -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as answer:
            return answer.read().decode()

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, as an orchestrator stops a replica; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'model="denoise"' in line)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers the test starts; any still running at the end are stopped (and killed if they hang)."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process and server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(60)
            except subprocess.TimeoutExpired:
                server.process.kill()


def _served(servers: list[Server], tmp_path: Path, args: list[str], name: str,
            model: str = "denoise") -> Server:
    server = Server(args, tmp_path / f"{name}.log", *_free_ports(3), model=model)
    servers.append(server)
    return server.start()


def _infer(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["infer", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.slow
@needs_serve_venv
def test_served_denoise_equals_local_onnxruntime_and_stops_cleanly(tmp_path: Path, servers: list[Server]):
    inputs = _noisy_heldout(tmp_path / "in", (320, 224))
    (tmp_path / "in" / "truncated.png").write_bytes(inputs[0].read_bytes()[:200])
    server = _served(servers, tmp_path, ["--task", "denoise"], "serve")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/v2/health/live", timeout=5) as live:
        assert live.status == 200

    code, summary = _infer("--server", server.address, "--task", "denoise", "-i", str(tmp_path / "in"),
                           "-o", str(tmp_path / "served"))
    assert code == 1  # the truncated file, named; the photographs are restored
    assert [Path(f["input"]).name for f in summary["failed"]] == ["truncated.png"]
    assert len(summary["restored"]) == len(inputs)
    tiles = 2 * len(inputs)  # 320x224 in 256-pixel tiles with 32 overlap: 2 x 1 each
    assert summary["servers"][server.address]["answered"] == tiles + 2  # + the metadata and scale probe

    code, local = _infer("--task", "denoise", "--backend", "ort", "--tile", "256", "-i", str(tmp_path / "in"),
                         "-o", str(tmp_path / "local"))
    assert code == 1
    assert local["backend"] == "onnxruntime-cpu"
    assert local["tiling"] == "tiles up to 256x256, overlap 32"  # the tiles the client sent
    for src in inputs:
        served = read_image(tmp_path / "served" / f"{src.stem}_denoise.png")
        expected = read_image(tmp_path / "local" / f"{src.stem}_denoise.png")
        assert served.bit_depth == expected.bit_depth == 8
        assert psnr(served.pixels, expected.pixels) >= 60.0, src.name

    text = server.metrics_text()
    assert metric(text, "nv_inference_request_success") == tiles + 1
    assert metric(text, "nv_inference_count") == tiles + 1
    assert 1 <= metric(text, "nv_inference_exec_count") <= tiles + 1
    assert metric(text, "nv_inference_queue_duration_us") > 0
    assert 'nv_inference_request_summary_us_count{model="denoise"' in text  # latency quantiles are on

    load_json = tmp_path / "load.json"
    bench = CliRunner().invoke(mirnet_bench, ["--server", server.address, "--res", "64", "--concurrency",
                                              "1,4", "--duration", "3", "--json", str(load_json),
                                              "--metrics-url", f"http://127.0.0.1:{server.metrics}/metrics"])
    assert bench.exit_code == 0, bench.output
    levels = json.loads(load_json.read_text())
    assert [(r["concurrency"], r["errors"]) for r in levels] == [(1, 0), (4, 0)]
    assert all(r["requests"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in levels)
    assert all(r["server_batch_mean"] >= 1.0 and r["server_queue_ms"] is not None for r in levels)

    assert server.stop() == 0
    assert "stopped" in server.log_tail(5)
    check_ports_free("127.0.0.1", {"http": server.http, "grpc": server.grpc, "metrics": server.metrics})


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The denoise demo model as ONNX: a server of it restarts in seconds (no export at start)."""
    from export.network import load_network
    from export.onnx_export import export_onnx
    from mirnet_ref.weights import default_weights

    network, spec = load_network(default_weights("denoise"), "denoise")
    return export_onnx(network, spec, tmp_path_factory.mktemp("onnx") / "denoise.onnx")


def _output_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
@needs_serve_venv
def test_two_replicas_one_restarted_mid_load(tmp_path: Path, servers: list[Server], demo_onnx: Path):
    """Every tile answered exactly once, every file written once, while replica A stops and comes back."""
    inputs = _noisy_heldout(tmp_path / "in", (224, 160), copies=10)
    args = ["--model", str(demo_onnx), "--backend", "ort", "--name", "denoise"]
    a, b = _served(servers, tmp_path, args, "a"), _served(servers, tmp_path, args, "b")
    out = tmp_path / "out"
    client = subprocess.Popen(
        [str(Path(sys.executable).with_name("mirnet")), "infer", "--server", a.address, "--server", b.address,
         "--task", "denoise", "--tile", "128", "--overlap", "32", "--concurrency", "4",
         "--retry-window", "120", "-i", str(tmp_path / "in"), "-o", str(out), "--json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out.is_dir() and len([p for p in out.iterdir() if p.suffix == ".png"]) >= 2):
        assert client.poll() is None, client.communicate()
        time.sleep(0.2)
    assert a.stop() == 0  # mid-load: graceful, requests in flight on A are answered
    written_while_down = len(list(out.glob("*.png")))
    a.start()
    assert client.poll() is None, "the client finished before A came back: give it more images"
    stdout, stderr = client.communicate(timeout=900)
    assert client.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)

    tiles_per_image = 4  # 224x160 in 128-pixel tiles with 32 overlap: 2 x 2
    tally = summary["servers"]
    # Each tile answered once, plus the metadata request and the scale probe:
    assert sum(t["answered"] for t in tally.values()) == tiles_per_image * len(inputs) + 2
    assert tally[a.address]["refused"] >= 1
    assert tally[b.address]["answered"] >= 1
    assert metric(a.metrics_text(), "nv_inference_count") >= 1  # A served again after its restart
    assert len(inputs) > written_while_down
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{p.stem}_denoise.png" for p in inputs)  # one file per input, no temporaries
    assert sorted(Path(r["output"]).name for r in summary["restored"]) == names

    # What the replicas wrote equals one local ONNX Runtime run over the same tiles.
    from engines.runners import OrtRunner
    from engines.tiling import TiledRunner

    with TiledRunner(OrtRunner(demo_onnx, providers="cpu"), tile=128, overlap=32) as local:
        for src in inputs[:4]:
            pixels = read_image(src).pixels
            expected = np.clip(local.run(pixels.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0), 0, 1)
            served = read_image(out / f"{src.stem}_denoise.png").pixels
            assert psnr(served, np.round(expected * 255) / 255) >= 60.0, src.name
    assert a.stop() == 0
    assert b.stop() == 0


@pytest.mark.slow
@needs_serve_venv
def test_served_six_channel_model_takes_npy_views_as_the_local_path_does(tmp_path: Path,
                                                                         servers: list[Server]):
    """MIRNet-v2 defocus (`small`, random weights, 6 input channels) served from its checkpoint, which
    names no task: served as `defocus`; the client reads the channel count from the model's metadata and
    sends H x W x 6 views; the result equals the local PyTorch run, and an RGB image is refused by name."""
    import dataclasses

    import torch

    from mirnet_ref.checkpoint import save_checkpoint
    from mirnet_ref.mirnetv2 import DEFOCUS_TASK, MIRNETV2_PRESETS, MIRNetV2

    torch.manual_seed(0)
    config = dataclasses.replace(MIRNETV2_PRESETS["small"], inp_channels=6, task=DEFOCUS_TASK)
    checkpoint = save_checkpoint(MIRNetV2.from_config(config), tmp_path / "defocus.pth")
    photo = image_at_resolution(builtin_images("heldout")[0][1], 96, 80)
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "views.npy", make_degradation("defocus").apply(photo, np.random.default_rng(3)))
    write_image(folder / "photo.png", photo, 8)
    server = _served(servers, tmp_path, ["--checkpoint", str(checkpoint)], "defocus", model="defocus")

    code, served = _infer("--server", server.address, "--server-model", "defocus", "-i", str(folder),
                          "-o", str(tmp_path / "served"))
    assert code == 1
    errors = {Path(f["input"]).name: f["error"] for f in served["failed"]}
    assert list(errors) == ["photo.png"]
    assert "takes 6 input channels, an image holds 3" in errors["photo.png"]
    code, _ = _infer("--checkpoint", str(checkpoint), "--tile", "0", "-i", str(folder / "views.npy"),
                         "-o", str(tmp_path / "local"))
    assert code == 0
    expected = read_image(tmp_path / "local" / "views_defocus.png").pixels
    assert psnr(read_image(tmp_path / "served" / "views_defocus.png").pixels, expected) >= 60.0
    assert server.stop() == 0
