"""C++ `mirnet_run --bench` beside `mirnet-bench --backend openvino,ort`, on one ONNX file, in one run.

    .venv/bin/python engines/cpp/tools/bench_vs_python.py --onnx build/cpp/run-checks/onnx/denoise.fp32.onnx \
        --mirnet-run build/cpp/mirnet_run --res 512,1080p --iters 3 --rounds 2 --out build/bench/cpp-vs-python

Both sides run the same OpenVINO compiled model (the engine `mirnet build --backend openvino` makes,
f32 inference precision) on the same machine, in alternating rounds (a shared machine's load
drifts over minutes, so only ratios of one round are compared); the table compares medians
per frame: Python's is `runner.run(batch)` on a prepared NCHW array (mirnet-bench), C++'s is the
engine stage of mirnet_run (`infer`: tiling/padding around the engine call included), and its
whole pass (read, pre, infer, post, write) for reference; "engine" is the Engine::infer call alone.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))


def run_mirnet_bench(args: argparse.Namespace, resolution: str, backends: str, output: Path) -> dict[str, float]:
    """p50 ms per backend of one `mirnet-bench` run (each configuration in a fresh process)."""
    subprocess.run([str(Path(sys.executable).with_name("mirnet-bench")), "--model", str(args.onnx), "--res",
                    resolution, "--backend", backends, "--precision", "fp32", "--warmup", "1", "--min-iters",
                    str(args.iters), "--min-seconds", "0", "--json", str(output)], check=True,
                   stdout=subprocess.DEVNULL)
    return {row["backend"]: row["p50_ms"] for row in json.loads(output.read_text())["results"]}


def run_mirnet_run(args: argparse.Namespace, engine: Path, image: Path) -> dict[str, float]:
    """Median ms per stage of `mirnet_run --bench` (one warm-up pass, then args.iters)."""
    result = subprocess.run([str(args.mirnet_run), "--engine", f"{engine}.json", "-i", str(image), "-o",
                             str(image.with_name(f"output-{image.name}")), "--bench", str(args.iters)],
                            capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+)", result.stdout.split("ms", 1)[1].replace("(", ""))}


def alternate_frames(engine: Path, mirnet_run: Path, width: int, height: int, frames: int) -> list[tuple[float, float]]:
    """(Python ms, C++ ms) per frame, alternating frame by frame under the same load.

    Python: OpenVinoRunner.run on an NCHW array. C++: one raw RGB24 frame through a running
    `mirnet_run --raw` (so its time also holds the pipe transfer and the 8-bit conversions).
    """
    from engines.runners import OpenVinoRunner

    rng = np.random.default_rng(1)
    frame = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    batch = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    process = subprocess.Popen([str(mirnet_run), "--engine", f"{engine}.json", "--raw", f"{width}x{height}"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    pairs = []
    with OpenVinoRunner(engine) as runner:
        for index in range(frames + 1):  # the first pair warms both up
            started = time.perf_counter()
            runner.run(batch)
            python_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            process.stdin.write(frame.tobytes())
            process.stdin.flush()
            process.stdout.read(frame.size)
            cpp_ms = (time.perf_counter() - started) * 1000
            if index:
                pairs.append((python_ms, cpp_ms))
    process.stdin.close()
    process.wait()
    return pairs


def main() -> None:
    import cv2

    from engines.openvino_build import build_openvino_engine
    from mirnet_deploy.resolutions import format_resolution, parse_resolutions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--mirnet-run", type=Path, required=True)
    parser.add_argument("--res", default="512,1080p")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3, help="alternating Python/C++ frames per resolution")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "cpp-vs-python")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    engine = args.out / "engine.ovblob"
    build_openvino_engine(args.onnx, engine)
    rows = ["| resolution | round | C++ engine call (ms) | C++ infer stage (ms) | C++ whole pass (ms) | "
            "Python OpenVINO (ms) | C++ engine / Python | C++ infer / Python | Python ONNX Runtime (ms) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    for width, height in parse_resolutions(args.res):
        resolution = format_resolution((width, height))
        image = args.out / f"input-{width}x{height}.png"
        cv2.imwrite(str(image), (rng.random((height, width, 3)) * 255).astype(np.uint8))
        # Rounds alternate Python and C++, so that both see the same load on a shared machine.
        for round_index in range(args.rounds):
            backends = "openvino,ort" if round_index == 0 else "openvino"
            python = run_mirnet_bench(args, resolution, backends, args.out / f"bench-{resolution}-{round_index}.json")
            stages = run_mirnet_run(args, engine, image)
            ort_ms = f"{python['ort']:.1f}" if "ort" in python else "-"
            ov_ms = python["openvino"]
            rows.append(f"| {resolution} | {round_index + 1} | {stages['engine']:.1f} | {stages['infer']:.1f} | "
                        f"{stages['total']:.1f} | {ov_ms:.1f} | {stages['engine'] / ov_ms:.3f} | "
                        f"{stages['infer'] / ov_ms:.3f} | {ort_ms} |")
            print(rows[-1], flush=True)
    rows += ["", "| resolution | frames | Python OpenVINO median (ms) | C++ raw-mode median (ms) | "
             "median of C++ / Python per frame pair |", "| --- | --- | --- | --- | --- |"]
    for width, height in parse_resolutions(args.res):
        pairs = alternate_frames(engine, args.mirnet_run, width, height, args.frames)
        python_ms, cpp_ms = (float(np.median(side)) for side in zip(*pairs, strict=True))
        ratio = float(np.median([c / p for p, c in pairs]))
        rows.append(f"| {format_resolution((width, height))} | {len(pairs)} | {python_ms:.1f} | {cpp_ms:.1f} | "
                    f"{ratio:.3f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
