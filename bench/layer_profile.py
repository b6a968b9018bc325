"""Where an engine's time goes, per operator type and arithmetic: `python -m bench.layer_profile`.

INT8 reaches the VNNI ceiling only if the convolutions run as INT8 kernels and little time is left
in what surrounds them: the float "islands" between quantized convolutions (attention, pooling,
activations, element-wise sums), the quantize/dequantize steps and the layout reorders. This
module runs a model once (after a warm-up run) with the runtime's own profiler and groups the
time by operator type and by the precision of the kernel that ran it:

- OpenVINO: `PERF_COUNT` / `get_profiling_info`, whose exec type names the kernel
  (`brgconv_avx512_f32`, `brgconv_avx512_I8`, `jit_avx512_bf16`, ...; `undef`: fused away);
- ONNX Runtime: session profiling (`enable_profiling`), one event per node with its operator
  (`QLinearConv`, `ConvInteger`, `Conv`, `DequantizeLinear`, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mirnet_deploy.errors import UserError
from mirnet_deploy.leftovers import scratch_folder
from mirnet_deploy.resolutions import parse_resolutions

#: ONNX Runtime operators whose arithmetic is INT8 (the quantized convolutions and matmuls).
ORT_INT8_OPS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm")
#: Quantize/dequantize steps (OpenVINO: FakeQuantize, and the Convert of INT8 data back to float): neither
#: the model's INT8 work nor its float work, the cost of the boundary between them.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "FakeQuantize", "Convert")
#: The operators doing the model's multiply-accumulates, whose kernels `summarize` lists one by one.
CONV_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul", "Conv", "ConvTranspose",
            *ORT_INT8_OPS)


class NodeTime(NamedTuple):
    node_type: str
    arithmetic: str  # int8 | bf16 | f32 | qdq | reorder | other
    ms: float
    kernel: str = ""  # OpenVINO's exec type; ONNX Runtime: the operator again
    name: str = ""  # the node's name in the runtime's (optimized) graph


def kernel_arithmetic(node_type: str, exec_type: str) -> str:
    """The arithmetic of a kernel from OpenVINO's exec type (`brgconv_avx512_I8` -> int8)."""
    if node_type in QDQ_OPS:
        return "qdq"
    if node_type == "Reorder":
        return "reorder"
    name = exec_type.lower()
    if re.search(r"(^|_)(i8|u8|int8)($|_)", name):
        return "int8"
    if "bf16" in name:
        return "bf16"
    if "f32" in name or "fp32" in name:
        return "f32"
    return "other"


def ort_arithmetic(op_name: str) -> str:
    if op_name in ORT_INT8_OPS or op_name.startswith("QLinear"):  # QLinearAdd, QLinearMul, ...: INT8 too
        return "int8"
    if op_name in QDQ_OPS:
        return "qdq"
    if op_name in ("Transpose", "ReorderInput", "ReorderOutput"):
        return "reorder"
    return "f32"


def profile_openvino(path: Path, batch: np.ndarray) -> list[NodeTime]:
    from engines.runners import OpenVinoRunner

    with OpenVinoRunner(path, profile=True) as runner:
        runner.run(batch)  # warm-up: first-run allocations and kernel selection
        runner.run(batch)
        return [NodeTime(t.node_type, kernel_arithmetic(t.node_type, t.exec_type), t.ms, t.exec_type, t.name)
                for t in runner.layer_times() if t.ms > 0]


def profile_onnxruntime(path: Path, batch: np.ndarray, threads: int | None) -> list[NodeTime]:
    import onnxruntime as ort

    with scratch_folder("ort-profile") as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / "ort")
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        session.run(None, feed)  # warm-up
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    last = max((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    return [NodeTime(e["args"]["op_name"], ort_arithmetic(e["args"]["op_name"]), e["dur"] / 1e3,
                     e["args"]["op_name"], e["name"].removesuffix("_kernel_time"))
            for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and last["ts"] <= e["ts"] <= last["ts"] + last["dur"]]


def summarize(rows: list[NodeTime], nodes: int = 0) -> dict[str, object]:
    """Total time, time per arithmetic, per convolution kernel and per (operator type, arithmetic),
    largest first; with `nodes`, also the `nodes` slowest single nodes by name."""
    total = sum(r.ms for r in rows)
    by_arithmetic: dict[str, float] = defaultdict(float)
    conv_kernels: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for row in rows:
        by_arithmetic[row.arithmetic] += row.ms
        if row.node_type in CONV_OPS:
            conv_kernels[row.kernel] += row.ms
        entry = by_op[(row.node_type, row.arithmetic)]
        entry[0] += row.ms
        entry[1] += 1
    return {"total_ms": total,
            "by_arithmetic": dict(sorted(by_arithmetic.items(), key=lambda kv: -kv[1])),
            "conv_kernels": dict(sorted(conv_kernels.items(), key=lambda kv: -kv[1])),
            "by_op": [{"op": op, "arithmetic": kind, "ms": ms, "nodes": int(count)}
                      for (op, kind), (ms, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0])],
            "slowest_nodes": [{"name": row.name, "op": row.node_type, "kernel": row.kernel, "ms": row.ms}
                              for row in sorted(rows, key=lambda row: -row.ms)[:nodes]]}


def format_summary(title: str, summary: dict[str, object], top: int = 12) -> str:
    total = summary["total_ms"]
    lines = [f"{title}: {total:,.0f} ms in profiled nodes",
             "  by arithmetic: " + ", ".join(f"{kind} {ms:,.0f} ms ({ms / total:.1%})"
                                             for kind, ms in summary["by_arithmetic"].items()),
             "  convolution kernels: " + ", ".join(f"{kernel} {ms / total:.1%}"
                                                   for kernel, ms in summary["conv_kernels"].items())]
    for row in summary["by_op"][:top]:
        lines.append(f"  {row['op']:<22} {row['arithmetic']:<8} {row['nodes']:>4} nodes "
                     f"{row['ms']:>10,.1f} ms {row['ms'] / total:>6.1%}")
    for row in summary["slowest_nodes"]:
        lines.append(f"  node {row['name']} ({row['kernel']}) {row['ms']:,.1f} ms {row['ms'] / total:.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layer_profile", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="an .onnx model (either runtime) or an OpenVINO .ovblob")
    parser.add_argument("--backend", choices=("openvino", "ort"), default="openvino")
    parser.add_argument("--res", default="256", help="one resolution: 256, 512, 720p, WxH")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--channels", type=int, default=3, help="input channels (MIRNet-v2 defocus: 6)")
    parser.add_argument("--nodes", type=int, default=0, help="also list the N slowest nodes by name")
    parser.add_argument("--json", type=Path, help="write the summary as JSON")
    args = parser.parse_args(argv)
    try:
        (width, height), = parse_resolutions(args.res)
        batch = np.random.default_rng(0).random((1, args.channels, height, width), dtype=np.float32)
        rows = (profile_openvino(args.model, batch) if args.backend == "openvino"
                else profile_onnxruntime(args.model, batch, args.threads))
    except (UserError, ValueError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    summary = summarize(rows, args.nodes)
    print(format_summary(f"{args.model.name} on {args.backend} at {width}x{height}", summary))
    if args.json:
        from mirnet_deploy.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
