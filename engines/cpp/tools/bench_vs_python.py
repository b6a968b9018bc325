"""C++ `mirnet_run --bench` beside `mirnet-bench --backend openvino,ort`, in one run, alternating.

    .venv/bin/python engines/cpp/tools/bench_vs_python.py --onnx build/cpp/run-checks/onnx/denoise.fp32.onnx \
        --mirnet-run build/cpp/mirnet_run --res 512,1080p --reps 4 --iters 3 --out build/bench/cpp-vs-python

Both sides run the same ONNX model compiled the same way (the engine `mirnet build --backend
openvino` makes: f32 precision hint, latency hint, OpenVINO's default thread count; mirnet-bench
gets --threads equal to it, which sets ONNX Runtime's). A shared machine's load drifts over
minutes, so the sides alternate: each repetition runs Python and C++ back to back (in ABBA order
over repetitions), each a fresh process timing --iters frames after a warm-up, and the ratio is
taken within a repetition; the table gives the median ratio and its range.

Per frame, Python is mirnet-bench's p50 of `runner.run` on an NCHW float32 array (output copied
out); C++ is mirnet_run's `infer` stage (padding, the engine call, the output) and the engine call
alone, medians. The first repetition also times ONNX Runtime, for reference. Prints Markdown.
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


def run_mirnet_bench(args: argparse.Namespace, resolution: str, backends: str, threads: int,
                     output: Path) -> dict[str, float]:
    """p50 ms per backend of one `mirnet-bench` run (each configuration in a fresh process)."""
    subprocess.run([str(Path(sys.executable).with_name("mirnet-bench")), "--model", str(args.onnx), "--res",
                    resolution, "--backend", backends, "--precision", "fp32", "--threads", str(threads),
                    "--warmup", str(args.warmup), "--min-iters", str(args.iters), "--min-seconds", "0",
                    "--cache-dir", str(args.out / "cache"), "--json", str(output)],
                   check=True, stdout=subprocess.DEVNULL)
    return {row["backend"]: row["p50_ms"] for row in json.loads(output.read_text())["results"]}


def run_mirnet_run(args: argparse.Namespace, engine: Path, image: Path) -> dict[str, float]:
    """Median ms per stage of `mirnet_run --bench` (one warm-up pass, then args.iters)."""
    result = subprocess.run([str(args.mirnet_run), "--engine", f"{engine}.json", "-i", str(image), "-o",
                             str(image.with_name(f"output-{image.name}")), "--bench", str(args.iters)],
                            capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+)", result.stdout.split("ms", 1)[1].replace("(", ""))}


def main() -> None:
    import cv2

    from engines.openvino_build import build_openvino_engine
    from engines.runners import OpenVinoRunner
    from mirnet_deploy.resolutions import format_resolution, parse_resolutions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--mirnet-run", type=Path, required=True)
    parser.add_argument("--res", default="512,1080p")
    parser.add_argument("--reps", type=int, default=4, help="alternating Python/C++ repetitions per resolution")
    parser.add_argument("--iters", type=int, default=3, help="timed frames per side and repetition")
    parser.add_argument("--warmup", type=int, default=1, help="mirnet-bench's untimed runs after its first")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "cpp-vs-python")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    engine = args.out / "engine.ovblob"
    build_openvino_engine(args.onnx, engine)
    with OpenVinoRunner(engine) as runner:  # the thread count both sides' OpenVINO uses
        threads = runner.inference_threads
    rows = [f"OpenVINO threads: {threads} (both sides); ONNX Runtime intra-op threads: {threads}", "",
            "| resolution | reps × frames | Python OpenVINO p50 (ms) | C++ infer stage (ms) | C++ engine call (ms) "
            "| C++ infer / Python: median (range) | C++ engine / Python: median | Python ONNX Runtime p50 (ms) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    samples = []
    rng = np.random.default_rng(0)
    for width, height in parse_resolutions(args.res):
        resolution = format_resolution((width, height))
        image = args.out / f"input-{width}x{height}.png"
        cv2.imwrite(str(image), (rng.random((height, width, 3)) * 255).astype(np.uint8))
        reps = []
        for rep in range(args.reps):
            def python(rep: int = rep) -> dict[str, float]:
                return run_mirnet_bench(args, resolution, "openvino,ort" if rep == 0 else "openvino", threads,
                                        args.out / f"bench-{resolution}-{rep}.json")

            def cpp() -> dict[str, float]:
                return run_mirnet_run(args, engine, image)

            if rep % 4 in (0, 3):  # ABBA: drift within a pair hits each side first equally often
                python_ms, stages = python(), cpp()
            else:
                stages, python_ms = cpp(), python()
            reps.append({"rep": rep, "python": python_ms, "cpp": stages})
            print(f"{resolution} rep {rep + 1}: Python OpenVINO {python_ms['openvino']:.1f} ms, C++ infer "
                  f"{stages['infer']:.1f} ms (engine {stages['engine']:.1f}), ratio "
                  f"{stages['infer'] / python_ms['openvino']:.3f}", flush=True)
        samples.append({"resolution": resolution, "reps": reps})
        python_p50 = np.array([r["python"]["openvino"] for r in reps])
        infer = np.array([r["cpp"]["infer"] for r in reps])
        engine_call = np.array([r["cpp"]["engine"] for r in reps])
        ratios = infer / python_p50
        rows.append(f"| {resolution} | {args.reps} × {args.iters} | {np.median(python_p50):.1f} | "
                    f"{np.median(infer):.1f} | {np.median(engine_call):.1f} | {np.median(ratios):.3f} "
                    f"({ratios.min():.3f}–{ratios.max():.3f}) | {np.median(engine_call / python_p50):.3f} | "
                    f"{reps[0]['python']['ort']:.1f} |")
    table = "\n".join(rows)
    (args.out / "samples.json").write_text(json.dumps(samples, indent=1))
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
