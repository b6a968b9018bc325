"""Benchmark results as records, and the same records as a terminal table, JSON, CSV and Markdown.

One record per configuration (backend x precision x resolution). A configuration that does not
apply (PyTorch at INT8, an engine on ONNX Runtime) is a record with status `unsupported` and its
reason, never a silent gap; a configuration that failed is `error`, with what went wrong.
Backends that cannot run on the machine at all are listed apart, as `skipped`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import click

from mirnet_deploy.atomic import atomic_write_text
from mirnet_deploy.errors import UserError

from .environment import machine_label

STATUSES = ("ok", "unsupported", "error")

#: What the less obvious fields mean; written into the JSON report next to the records.
FIELD_NOTES = {
    "resolution": "input width x height; output pixels are scale^2 times more for super-resolution graphs",
    "first_ms": "the very first run, alone (initialization, kernel selection); not in the statistics",
    "p50_ms..std_ms": "steady state after warm-up, host wall clock around a run that returns host memory",
    "mp_per_s": "output megapixels per second (batch / mean latency x output pixels)",
    "gmacs_per_s": "learned-convolution multiply-accumulates per second (as `mirnet info` counts them)",
    "cpu_peak_fraction": "gmacs_per_s / the float32 matmul peak measured in the same run (before and after "
                         "the configurations; the better of the two) (CPU runs only)",
    "peak_host_mb": "absolute peak resident memory (VmHWM, MiB) of the fresh process that ran the row",
    "host_baseline_mb": "that process's resident memory after importing PyTorch and ONNX Runtime",
    "peak_host_delta_mb": "peak_host_mb - host_baseline_mb: what the model, its input and the runs added",
    "host_allocator": "retain: glibc keeps freed memory (mirnet's default); system: the C library's defaults",
    "peak_gpu_mb": "peak device memory above the CUDA context, sampled every 2 ms (device-wide)",
    "h2d_ms/compute_ms/d2h_ms": "CUDA-event medians of one run's copy in, execution, copy out (GPU only)",
}


@dataclass
class BenchResult:
    """One configuration's record (see FIELD_NOTES); measurement fields are None unless status is ok."""

    model: str
    backend: str
    precision: str
    resolution: str
    batch: int
    status: str
    reason: str | None = None
    device: str | None = None
    runner: str | None = None
    threads: int | None = None
    tile: int | None = None
    overlap: int | None = None
    output_mp: float | None = None  # output megapixels per run, the whole batch
    first_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    iterations: int | None = None
    measured_s: float | None = None
    images_per_s: float | None = None
    mp_per_s: float | None = None
    gmacs: float | None = None  # per run, the whole batch
    gmacs_per_s: float | None = None
    cpu_peak_fraction: float | None = None
    peak_host_mb: float | None = None
    host_baseline_mb: float | None = None
    peak_host_delta_mb: float | None = None
    peak_gpu_mb: float | None = None
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None
    split_note: str | None = None
    artifact: str | None = None
    host_allocator: str = "retain"  # mirnet_deploy.host_allocator policy the row ran with


FIELDS = tuple(f.name for f in fields(BenchResult))


# ---------------------------------------------------------------------------------------------------
# Table columns, shared by the terminal and Markdown tables


def _number(value: float | None) -> str:
    """Three significant digits without exponents: 0.0123, 1.23, 12.3, 123, 1234."""
    if value is None:
        return "-"
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if abs(value) >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.3g}"


def _host_memory(r: BenchResult) -> str:
    if r.peak_host_mb is None:
        return "-"
    return f"{r.peak_host_mb:.0f} (+{r.peak_host_delta_mb:.0f})"


def _gpu_split(r: BenchResult) -> str:
    if r.compute_ms is None:
        return "-"
    return " / ".join(_number(v) for v in (r.h2d_ms, r.compute_ms, r.d2h_ms))


COLUMNS: list[tuple[str, Callable[[BenchResult], str]]] = [
    ("backend", lambda r: r.backend + (" (system malloc)" if r.host_allocator == "system" else "")),
    ("precision", lambda r: r.precision),
    ("resolution", lambda r: r.resolution + (f" tile {r.tile}/{r.overlap}" if r.tile else "")),
    ("batch", lambda r: str(r.batch)),
    ("first ms", lambda r: _number(r.first_ms)),
    ("p50 ms", lambda r: _number(r.p50_ms)),
    ("p90 ms", lambda r: _number(r.p90_ms)),
    ("p99 ms", lambda r: _number(r.p99_ms)),
    ("mean ± std ms", lambda r: "-" if r.mean_ms is None else f"{_number(r.mean_ms)} ± {_number(r.std_ms)}"),
    ("runs", lambda r: "-" if r.iterations is None else str(r.iterations)),
    ("img/s", lambda r: _number(r.images_per_s)),
    ("MP/s", lambda r: _number(r.mp_per_s)),
    ("GMAC/s", lambda r: _number(r.gmacs_per_s)),
    ("% CPU peak", lambda r: _number(100 * r.cpu_peak_fraction) if r.cpu_peak_fraction is not None else "-"),
    ("host MiB peak (+model)", _host_memory),
    ("GPU MiB", lambda r: _number(r.peak_gpu_mb)),
    ("H2D / compute / D2H ms", _gpu_split),
]
#: Columns a row that did not run still fills; the rest of the row is its status and reason.
_KEY_COLUMNS = 4


def _cells(r: BenchResult) -> list[str]:
    cells = [render(r) for _, render in COLUMNS]
    if r.status != "ok":
        cells = [*cells[:_KEY_COLUMNS], f"{r.status}: {one_line(r.reason)}"]
    return cells


def one_line(reason: str | None) -> str:
    """A reason as one table cell: a runtime's multi-line message (OpenVINO's names a source line per
    layer) as its first and last lines; the whole of it is in the JSON and CSV reports."""
    lines = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]} (the full reason: --json)"


def model_title(label: str) -> str:
    """'small' -> 'MIRNet small' (a MIRNet preset); other families' presets ('mprnet-deblur') and file
    names stay as they are."""
    return label if "." in label or "-" in label else f"MIRNet {label}"


def _header(environment: dict[str, Any], model: str) -> str:
    peak = environment.get("cpu_peak") or {}
    both = (f", the better of {peak['before_gmacs_per_s']:.1f} before and {peak['after_gmacs_per_s']:.1f} "
            "after the runs" if "after_gmacs_per_s" in peak else "")  # earlier reports measured it once
    peak_text = f"; CPU peak {peak['gmacs_per_s']:.1f} GMAC/s ({peak['matmul']}{both})" if peak else ""
    return f"{model_title(model)} on {machine_label(environment)}{peak_text}"


def _skipped_lines(skipped: Sequence[dict[str, str]]) -> list[str]:
    return [f"skipped {s['backend']}: {s['reason']}" for s in skipped]


def _allocators_text(environment: dict[str, Any]) -> str:
    allocators = environment.get("host_allocators") or {}
    return "; ".join(f"{policy}: {text}" for policy, text in allocators.items()) or "not recorded"


def format_table(results: Sequence[BenchResult], environment: dict[str, Any],
                 skipped: Sequence[dict[str, str]] = ()) -> str:
    """The terminal table: aligned columns; a row that did not run shows its status and reason."""
    headers = [name for name, _ in COLUMNS]
    rows = [_cells(r) for r in results]
    # A row that did not run spans its message over the measurement columns: only its key cells count.
    widths = [max([len(h), *(len(row[i]) for row in rows if i < _KEY_COLUMNS or len(row) == len(headers))])
              for i, h in enumerate(headers)]
    lines = [_header(environment, results[0].model if results else "-"), ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join([*lines, *_skipped_lines(skipped)])


def to_markdown(results: Sequence[BenchResult], environment: dict[str, Any],
                skipped: Sequence[dict[str, str]] = ()) -> str:
    """A Markdown section: what ran where, the table, skipped backends and what the columns mean."""
    model = results[0].model if results else "-"
    versions = ", ".join(f"{k} {v}" for k, v in environment["versions"].items() if v)
    lines = [f"### {_header(environment, model)}", "",
             f"- command: `{environment['command']}`", f"- measured: {environment['timestamp']}",
             f"- libraries: {versions}", f"- GPU: {environment['cuda']}",
             f"- host allocator: {_allocators_text(environment)}", ""]
    headers = [name for name, _ in COLUMNS]
    lines += ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for r in results:
        cells = _cells(r)
        cells += [""] * (len(headers) - len(cells))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if skipped:
        lines += ["", *(f"- {line}" for line in _skipped_lines(skipped))]
    lines += ["", "Latency: steady state after warm-up (first run reported apart), host wall clock; "
              "host memory: absolute peak of the fresh process that ran the row, and in parentheses what "
              "the model and its runs added to an interpreter with PyTorch and ONNX Runtime loaded."]
    return "\n".join(lines).rstrip() + "\n"


def _csv_text(results: Sequence[BenchResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return buffer.getvalue()


def report_dict(results: Sequence[BenchResult], environment: dict[str, Any],
                skipped: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    return {"environment": environment, "results": [asdict(r) for r in results], "skipped": list(skipped),
            "field_notes": FIELD_NOTES}


def write_json(path: str | os.PathLike, results: Sequence[BenchResult], environment: dict[str, Any],
               skipped: Sequence[dict[str, str]] = ()) -> None:
    atomic_write_text(path, json.dumps(report_dict(results, environment, skipped), indent=2) + "\n")


def write_csv(path: str | os.PathLike, results: Sequence[BenchResult]) -> None:
    atomic_write_text(path, _csv_text(results))


def write_markdown(path: str | os.PathLike, results: Sequence[BenchResult], environment: dict[str, Any],
                   skipped: Sequence[dict[str, str]] = ()) -> None:
    atomic_write_text(path, to_markdown(results, environment, skipped))


def load_json(path: str | os.PathLike) -> tuple[list[BenchResult], dict[str, Any], list[dict[str, str]]]:
    """(results, environment, skipped) of a report written by `write_json`."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return ([BenchResult(**record) for record in data["results"]], data["environment"],
                data.get("skipped", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a readable mirnet-bench JSON report ({type(exc).__name__}: {exc}): "
                        "pass a file written by `mirnet-bench --json`.") from None


def publish_rows(table: str, rows: Sequence[dict[str, Any]], md_path: str | os.PathLike | None,
                 json_path: str | os.PathLike | None) -> None:
    """Print a quality report's Markdown table; write it and its rows as JSON where asked."""
    click.echo(table)
    if md_path:
        atomic_write_text(md_path, table)
    if json_path:
        atomic_write_text(json_path, json.dumps(list(rows), indent=2) + "\n")
