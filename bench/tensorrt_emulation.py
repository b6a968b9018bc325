"""ONNX Runtime's Q/DQ fusion on or off: what a TensorRT-target INT8 model computes on the CPU.

    mirnet quantize --onnx denoise.fp32.onnx --target tensorrt --no-budget -o denoise.int8-tensorrt.onnx
    python -m bench.tensorrt_emulation denoise.int8-tensorrt.onnx --res 256,448x296

`calibration/ort_cpu.py` opens every tensorrt-target graph on ONNX Runtime's CPU provider with the
Q/DQ fusion off (the ONNX semantics), since with it on ONNX Runtime refuses some graphs (MPRNet's).
This measures what that choice changes on models that load both ways: each model goes through the
parity harness against PyTorch FP32 (the task's demo weights unless --checkpoint) on the held-out
photographs with the fusion off and on, and the table gives the task PSNR drop and PSNR vs FP32 of
both, the largest difference between their outputs and their ONNX Runtime time per image (median,
the two ways run alternately in this process).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import numpy as np
import onnx

from mirnet_deploy.resolutions import parse_resolutions

from .report import publish_rows

#: (label, `qdq_fusion` of the runner): the default (fusion off) first.
WAYS = (("unfused", False), ("fused", True))


def compare_ways(model: Path, reference, cases) -> dict:
    """Parity rows of `model` both ways against the `reference` (polygraphy) runner, their outputs'
    largest difference and time per image."""
    from engines.runners import OrtRunner, as_polygraphy_runner

    from .parity import run_parity

    runners = {label: OrtRunner(model, providers="cpu", qdq_fusion=fusion, name=f"onnxruntime-{label}")
               for label, fusion in WAYS}
    try:
        row: dict = {"model": model.name}
        for label, runner in runners.items():
            parity = run_parity(reference, as_polygraphy_runner(runner), cases, "int8")
            row[label] = {"drops_db": {r.resolution: r.task_drop_db for r in parity},
                          "psnr_vs_fp32_db": {r.resolution: r.psnr_vs_reference_db for r in parity},
                          "passed": all(r.passed for r in parity)}
        seconds: dict[str, list[float]] = {label: [] for label in runners}
        difference = 0.0
        for case in cases:
            outputs = {}
            for label, runner in runners.items():
                started = time.perf_counter()
                outputs[label] = runner.run(case.input)
                seconds[label].append(time.perf_counter() - started)
            difference = max(difference, float(np.abs(outputs["unfused"] - outputs["fused"]).max()))
        row["max_abs_difference"] = difference
        row["median_ms"] = {label: 1e3 * statistics.median(values) for label, values in seconds.items()}
        return row
    finally:
        for runner in runners.values():
            runner.close()


def to_markdown(rows: list[dict]) -> str:
    resolutions = list(rows[0]["unfused"]["drops_db"])
    lines = ["| model | ONNX Runtime Q/DQ fusion | " + " | ".join(f"drop @{r} (dB)" for r in resolutions)
             + " | worst PSNR vs FP32 (dB) | parity passed | max \\|unfused - fused\\| | ms per image |",
             "|" + " --- |" * (6 + len(resolutions))]
    for row in rows:
        for label, _ in WAYS:
            way = row[label]
            drops = " | ".join(f"{way['drops_db'][r]:.4f}" for r in resolutions)
            lines.append(f"| {row['model']} | {'on' if label == 'fused' else 'off (default)'} | {drops} | "
                         f"{min(way['psnr_vs_fp32_db'].values()):.2f} | {way['passed']} | "
                         f"{row['max_abs_difference']:.2e} | {row['median_ms'][label]:,.0f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("models", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The PyTorch reference [the task's demo weights].")
@click.option("--res", default="256,448x296", show_default=True, help="Held-out resolutions.")
@click.option("--images", default=2, show_default=True, help="Held-out photographs per resolution.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON here.")
def main(models: tuple[Path, ...], checkpoint: Path | None, res: str, images: int, md_path: str | None,
         json_path: str | None) -> None:
    """Parity of TensorRT-target INT8 MODELS on ONNX Runtime CPU with its Q/DQ fusion off and on."""
    from engines.runners import TorchRunner, as_polygraphy_runner
    from export.graph import DeploymentGraph
    from export.network import load_network
    from export.onnx_file import read_metadata
    from mirnet_ref.weights import default_weights

    from .parity import parity_cases

    rows = []
    for model in models:
        task = read_metadata(onnx.load(model, load_external_data=False)).get("task", "denoise")
        network, spec = load_network(checkpoint or default_weights(task), task)
        reference = as_polygraphy_runner(TorchRunner(DeploymentGraph(network, spec), name="pytorch-fp32"))
        cases = parity_cases(task, parse_resolutions(res), images=images, sr_scale=1)
        rows.append(compare_ways(model, reference, cases))
    publish_rows(to_markdown(rows), rows, md_path, json_path)


if __name__ == "__main__":
    main()
