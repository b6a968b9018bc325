"""INT8 forms on OpenVINO, timed side by side: `python -m bench.int8_forms --model small --res 256`.

Which INT8 graph OpenVINO runs fastest is a measurement, not a preference: the `cpu` Q/DQ target
(asymmetric u8 activations), the same graph with symmetric s8 activations (`cpu-symmetric`), and
OpenVINO's own post-training quantization (NNCF, when installed: `pip install nncf`) of the FP32
model, next to ONNX Runtime FP32, OpenVINO FP32 (the exported graph, and the graph their engines compile:
`-fp32-cpu`) and ONNX Runtime INT8. Every form runs in this one
process, timed alternately run by run (`engines.cpu_choice.time_alternately`), so load on a shared
machine hits all of them alike; the table gives medians and ratios to the first form listed
(ONNX Runtime FP32 by default).

Speed only: whether OpenVINO computes a form correctly is the parity stage's question
(`mirnet build --task denoise --precision int8 --backend auto` runs it on every candidate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.cpu_choice import time_alternately
from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import parse_resolution

from .environment import cpu_peak_around
from .models import DEFAULT_CACHE_DIR, Artifacts, gmacs, resolve_model

#: label -> (runtime, ONNX variant, extra OpenVINO compile properties)
FORMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ort-fp32": ("ort", "fp32", {}),
    "openvino-fp32": ("openvino", "fp32", {}),
    # FP32 as the CPU engines compile it (SKFF's stacked sums as Adds, `engines.cpu_graph`) against the export
    "ort-fp32-cpu": ("ort", "fp32-cpu", {}),
    "openvino-fp32-cpu": ("openvino", "fp32-cpu", {}),
    "ort-int8-cpu": ("ort", "int8-cpu", {}),
    "openvino-int8-cpu": ("openvino", "int8-cpu", {}),
    "openvino-int8-cpu-symmetric": ("openvino", "int8-cpu-symmetric", {}),
    "openvino-int8-nncf": ("openvino", "int8-nncf", {}),
    "openvino-int8-cpu-unpinned": ("openvino", "int8-cpu", {"ENABLE_CPU_PINNING": False}),
    "openvino-int8-cpu-denormals": ("openvino", "int8-cpu", {"CPU_DENORMALS_OPTIMIZATION": True}),
    # FP32 under the same properties: does any of them lift OpenVINO FP32 toward the matmul peak?
    "openvino-fp32-unpinned": ("openvino", "fp32", {"ENABLE_CPU_PINNING": False}),
    "openvino-fp32-denormals": ("openvino", "fp32", {"CPU_DENORMALS_OPTIMIZATION": True}),
    "openvino-fp32-no-hyperthreading": ("openvino", "fp32", {"ENABLE_HYPER_THREADING": False}),
}


def nncf_onnx(artifacts: Artifacts) -> Path:
    """NNCF's post-training quantization of the FP32 ONNX model with the benchmark's calibration set,
    its defaults for a CPU (symmetric activations: the PERFORMANCE preset), cached beside the others."""
    fp32 = artifacts.onnx_variant("fp32")
    path = fp32.with_name(fp32.name.removesuffix(".fp32.onnx") + ".int8-nncf.onnx")
    if path.is_file():
        return path
    import nncf
    import onnx

    from calibration.dataset import CalibrationSet
    from mirnet_deploy.atomic import atomic_write_bytes

    model = onnx.load(fp32)
    input_name = model.graph.input[0].name
    with CalibrationSet(artifacts.calibration_set()) as calibration:
        feeds = [{input_name: x} for x in calibration.inputs()]
        artifacts.log(f"NNCF {nncf.__version__}: quantizing {fp32.name} ({len(feeds)} samples) -> {path}")
        quantized = nncf.quantize(model, nncf.Dataset(feeds), target_device=nncf.TargetDevice.CPU,
                                  subset_size=len(feeds))
    atomic_write_bytes(path, quantized.SerializeToString())
    return path


def open_form(artifacts: Artifacts, label: str, threads: int) -> Callable[[np.ndarray], Any]:
    """A run function for one form (its model made and cached on first use)."""
    runtime, variant, extra = FORMS[label]
    onnx_path = nncf_onnx(artifacts) if variant == "int8-nncf" else artifacts.onnx_variant(variant)
    if runtime == "ort":
        from engines.runners import OrtRunner

        return OrtRunner(onnx_path, providers="cpu", threads=threads).run
    import openvino as ov

    from engines.openvino_build import compile_properties

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", compile_properties("f32") | extra
                                       | {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.int8_forms", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="small", help="an --arch preset (random weights) or FP32 ONNX")
    parser.add_argument("--arch", default=None, help="the preset's family: mirnet (default), mirnetv2, ...")
    parser.add_argument("--res", default="256", help="one resolution, e.g. 256 or 512x384")
    parser.add_argument("--forms", default=",".join(FORMS),
                        help=f"comma-separated, the reference of the ratios first, of: {', '.join(FORMS)}")
    parser.add_argument("--rounds", type=int, default=3, help="alternated timed rounds after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    args = parser.parse_args(argv)
    try:
        labels = [label.strip() for label in args.forms.split(",") if label.strip()]
        unknown = [label for label in labels if label not in FORMS]
        if unknown or not labels:
            raise UserError(f"--forms: unknown {', '.join(unknown) or 'none given'}; choose from "
                            f"{', '.join(FORMS)}")
        artifacts = Artifacts(resolve_model(args.model, arch=args.arch), args.cache_dir)
        runs = {label: open_form(artifacts, label, args.threads) for label in labels}
        resolution = parse_resolution(args.res)
        timings, peak = cpu_peak_around(args.threads, lambda: time_alternately(runs, resolution,
                                                                               rounds=args.rounds))
        work = gmacs(artifacts.model, resolution, 1)
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    medians = {label: statistics.median(ms) for label, ms in timings.items()}
    reference = labels[0]
    print(f"float32 matmul peak before / after: {peak['before_gmacs_per_s']:.1f} / "
          f"{peak['after_gmacs_per_s']:.1f} GMAC/s")
    print(f"| form ({args.model}, {args.res}, {args.threads} threads, {args.rounds} alternated rounds) "
          f"| median | runs (ms) | vs {reference} | % of the peak |\n| --- | --- | --- | --- | --- |")
    for label, median in medians.items():
        runs_text = ", ".join(f"{ms:,.0f}" for ms in timings[label])
        share = f"{100 * work / (median / 1000) / peak['gmacs_per_s']:.1f} %" if work else "n/a"
        print(f"| {label} | {median:,.0f} ms | {runs_text} | {medians[reference] / median:.2f}x | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
