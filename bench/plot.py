"""Latency against image size, one line per backend and precision, log-log, as a PNG for reports.

On log-log axes a cost linear in pixels is a line of slope 1; the dashed guide has that slope,
so a backend whose line bends away from it (fixed overheads at small sizes, cache or memory
effects at large ones) shows it at a glance. The band above each line reaches the p90 latency.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure state
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from mirnet_deploy.atomic import atomic_open
from mirnet_deploy.errors import UserError

from .environment import machine_label
from .report import BenchResult, model_title

BACKEND_LABELS = {"torch": "PyTorch eager", "ort": "ONNX Runtime CPU", "openvino": "OpenVINO CPU",
                  "ort-cuda": "ONNX Runtime CUDA", "ort-trt": "ONNX Runtime TensorRT EP",
                  "tensorrt": "TensorRT"}
BACKEND_COLORS = {"torch": "#d62728", "ort": "#1f77b4", "openvino": "#8c564b", "ort-cuda": "#2ca02c",
                  "ort-trt": "#9467bd", "tensorrt": "#ff7f0e"}
PRECISION_STYLES = {"fp32": ("-", "o"), "fp16": ("--", "s"), "int8": (":", "^")}


def _series(results: Sequence[BenchResult]) -> dict[tuple, list[BenchResult]]:
    """Measured rows grouped by (backend, host allocator, precision, tile, overlap), sorted by size."""
    groups: dict[tuple, list[BenchResult]] = {}
    for r in results:
        if r.status == "ok":
            groups.setdefault((r.backend, r.host_allocator, r.precision, r.tile, r.overlap), []).append(r)
    return {key: sorted(rows, key=lambda r: r.output_mp) for key, rows in groups.items()}


def _label(backend: str, allocator: str, precision: str, tile: int | None, overlap: int | None) -> str:
    label = f"{BACKEND_LABELS.get(backend, backend)} · {precision.upper()}"
    label += " · system malloc" if allocator == "system" else ""
    return label + (f" · tiles {tile} (overlap {overlap})" if tile else "")


def _faded(color: str) -> str:
    """`color` (#rrggbb) blended halfway to white."""
    channels = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{(c + 255) // 2:02x}" for c in channels)


def plot_latency(results: Sequence[BenchResult], environment: dict[str, Any],
                 path: str | os.PathLike) -> None:
    """Write the latency-vs-megapixels plot of the measured rows to `path` (PNG, atomically)."""
    series = _series(results)
    if not series:
        raise UserError("Nothing to plot: no configuration was measured (every row is unsupported or "
                        "failed).")
    fig = Figure(figsize=(9, 5.6), dpi=150, layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")  # before the ticks: setting a scale resets the locators
    ax.set_yscale("log")
    for (backend, allocator, precision, tile, overlap), rows in series.items():
        mp = [r.output_mp for r in rows]
        color = BACKEND_COLORS.get(backend, "#7f7f7f")
        linestyle, marker = PRECISION_STYLES.get(precision.split("-")[0], ("-", "o"))  # int8-cpu: int8's
        if tile:  # tiled runs: dash-dot, hollow markers
            linestyle = "-."
        if allocator == "system":  # the untuned allocator: the same colour, faded
            color = _faded(color)
        ax.plot(mp, [r.p50_ms for r in rows], linestyle=linestyle, marker=marker, color=color, linewidth=1.8,
                markersize=6, markerfacecolor="white" if tile else color,
                label=_label(backend, allocator, precision, tile, overlap))
        ax.fill_between(mp, [r.p50_ms for r in rows], [r.p90_ms for r in rows], color=color, alpha=0.15,
                        linewidth=0)
    _slope_one_guide(ax, series)
    _size_ticks(ax, results)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    low, high = ax.get_ylim()
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five if high / low > 20 else _any))
    ax.margins(x=0.06)
    ax.tick_params(axis="y", which="minor", labelsize=7, labelcolor="#666666")
    ax.set_xlabel("image size: output megapixels per run (log scale)")
    ax.set_ylabel("latency per run, ms (log scale)\nline: median; band: up to p90")
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    ax.grid(True, which="minor", color="#f0f0f0", linewidth=0.5)
    ax.legend(loc="upper left", fontsize=9, frameon=True, framealpha=0.9)
    model = next(r.model for r in results if r.status == "ok")
    fig.suptitle(f"{model_title(model)}: latency vs image size", fontsize=13, fontweight="bold")
    batches_text = ", ".join(f"batch {b}" for b in sorted({r.batch for r in results if r.status == "ok"}))
    ax.set_title(f"{machine_label(environment)}; {batches_text}", fontsize=9, color="#444444")
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")


def _two_and_five(value: float, _position: int) -> str:
    """Minor log ticks of a tall axis: labelled at 2 and 5 times a power of ten only, to stay readable."""
    text = f"{value:g}"
    return text if text.lstrip("0.")[:1] in ("2", "5") else ""


def _any(value: float, _position: int) -> str:
    """Minor log ticks of a short axis (under 20x): all labelled, or it would show one number or none."""
    return f"{value:g}"


def _slope_one_guide(ax: Axes, series: dict[tuple, list[BenchResult]]) -> None:
    """A dashed slope-1 line (cost proportional to pixels) through the slowest series' smallest point."""
    rows = [r for group in series.values() for r in group]
    low, high = min(r.output_mp for r in rows), max(r.output_mp for r in rows)
    if high <= low:
        return
    anchor = max((group[0] for group in series.values()), key=lambda r: r.p50_ms / r.output_mp)
    scale = anchor.p50_ms / anchor.output_mp
    ax.plot([low, high], [scale * low, scale * high], linestyle=(0, (4, 4)), color="#888888", linewidth=1,
            label="∝ pixels (linear scaling)", zorder=0)


def _size_ticks(ax: Axes, results: Sequence[BenchResult]) -> None:
    """X ticks at the measured sizes, labelled WxH and megapixels."""
    sizes = sorted({(r.output_mp, r.resolution, r.batch) for r in results if r.status == "ok"})
    positions, labels = [], []
    for mp, resolution, batch in sizes:
        if positions and mp / positions[-1] < 1.25:  # too close to the previous tick to label both
            continue
        positions.append(mp)
        labels.append(f"{resolution}{f' ×{batch}' if batch > 1 else ''}\n{mp:.3g} MP")
    ax.xaxis.set_major_locator(FixedLocator(positions))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(labels, fontsize=8)
    if len(positions) == 1:  # one size: widen the axis so the point is not on its edge
        ax.set_xlim(positions[0] / 2, positions[0] * 2)
