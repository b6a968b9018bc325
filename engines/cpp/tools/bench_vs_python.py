"""C++ `mirnet_run --bench` beside `mirnet-bench --backend openvino,ort`, on one ONNX file, in one run.

    .venv/bin/python engines/cpp/tools/bench_vs_python.py --onnx build/cpp/run-checks/onnx/denoise.fp32.onnx \
        --mirnet-run build/cpp/mirnet_run --res 512,1080p --iters 5 --out build/bench/cpp-vs-python

Both sides run the same OpenVINO compiled model (the engine `mirnet build --backend openvino` makes,
f32 inference precision) on the same machine, one after the other; the table compares medians
per frame: Python's is `runner.run(batch)` on a prepared NCHW array (mirnet-bench), C++'s is the
engine stage of mirnet_run (`infer`: tiling/padding around the engine call included), and its
whole pass (read, pre, infer, post, write) for reference. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))


def main() -> None:
    import cv2

    from engines.openvino_build import build_openvino_engine
    from mirnet_deploy.resolutions import format_resolution, parse_resolutions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--mirnet-run", type=Path, required=True)
    parser.add_argument("--res", default="512,1080p")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "cpp-vs-python")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    engine = args.out / "engine.ovblob"
    build_openvino_engine(args.onnx, engine)
    bench_json = args.out / "mirnet-bench.json"
    subprocess.run([str(Path(sys.executable).with_name("mirnet-bench")), "--model", str(args.onnx), "--res", args.res,
                    "--backend", "openvino,ort", "--precision", "fp32", "--warmup", "1", "--min-iters",
                    str(args.iters), "--min-seconds", "0", "--json", str(bench_json)], check=True)
    python = {(row["backend"], row["resolution"]): row["p50_ms"] for row in json.loads(bench_json.read_text())["results"]}

    rows = ["| resolution | C++ mirnet_run infer (ms) | C++ whole pass (ms) | Python OpenVINO (ms) | C++ / Python | "
            "Python ONNX Runtime (ms) |", "| --- | --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    for width, height in parse_resolutions(args.res):
        image = args.out / f"input-{width}x{height}.png"
        cv2.imwrite(str(image), (rng.random((height, width, 3)) * 255).astype(np.uint8))
        result = subprocess.run([str(args.mirnet_run), "--engine", f"{engine}.json", "-i", str(image), "-o",
                                 str(args.out / f"output-{width}x{height}.png"), "--bench", str(args.iters)],
                                capture_output=True, text=True, check=True)
        stages = dict(re.findall(r"(\w+) ([0-9.]+)", result.stdout.split("ms", 1)[1]))
        resolution = format_resolution((width, height))
        ov_ms, ort_ms = python[("openvino", resolution)], python[("ort", resolution)]
        cpp_ms = float(stages["infer"])
        rows.append(f"| {resolution} | {cpp_ms:.1f} | {float(stages['total']):.1f} | {ov_ms:.1f} | "
                    f"{cpp_ms / ov_ms:.3f} | {ort_ms:.1f} |")
    table = "\n".join(rows)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
