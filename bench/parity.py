"""Parity of a deployed artifact against the PyTorch FP32 reference, per resolution.

Both sides are our runners (`engines.runners`: PyTorch for the reference, ONNX
Runtime or TensorRT for the artifact) wrapped as polygraphy runners, and
polygraphy's comparator decides element-wise closeness. (Polygraphy's own
PyTorch runner moves inputs to CUDA, so it cannot be the CPU reference.) On top of that we report what
image-restoration users judge by: PSNR and SSIM of the artifact's output
against the reference output, the task PSNR of both against the clean image
(so a precision's cost is visible in dB), and NaN/Inf counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mirnet_deploy.resolutions import format_resolution
from mirnet_ref.metrics import psnr, ssim

#: Pass/fail per precision: PSNR of the artifact vs the FP32 reference output, max |error|,
#: and the largest allowed drop of task PSNR (vs the clean image) below the reference's.
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"min_psnr_vs_reference": 80.0, "max_abs_error": 1e-4, "max_task_drop_db": 0.01},
    "fp16": {"min_psnr_vs_reference": 40.0, "max_abs_error": 5e-2, "max_task_drop_db": 0.1},
    # BF16 (OpenVINO, the FP32 model with the bf16 hint). Measured on the three demo models, 256x256, two
    # held-out images each: worst PSNR vs reference 61.2 dB, max |error| 4.4e-3, task drop <= 0.0014 dB
    # (README, "BF16"); OpenVINO's native BF16 gave 58.2 dB on the random-weight `full` preset. The limits
    # leave ~13 dB, 11x and 35x of headroom over those; BF16 keeps 3 mantissa bits fewer than FP16 (18 dB).
    "bf16": {"min_psnr_vs_reference": 45.0, "max_abs_error": 5e-2, "max_task_drop_db": 0.05},
    "int8": {"min_psnr_vs_reference": 30.0, "max_abs_error": 0.5, "max_task_drop_db": 0.3},
}


@dataclass(frozen=True)
class ParityCase:
    """One input image at one resolution, with the clean image it was degraded from."""

    name: str
    resolution: str
    input: np.ndarray  # 1xCxHxW float32, what the artifact is fed (C = 6 for dual-pixel views)
    clean: np.ndarray  # HxWx3 float32, ground truth at the output size


@dataclass
class ResolutionParity:
    resolution: str
    images: int
    psnr_vs_reference_db: float  # worst image
    ssim_vs_reference: float  # worst image
    max_abs_error: float
    nonfinite: int
    task_psnr_reference_db: float  # mean over images, outputs clamped to [0, 1]
    task_psnr_artifact_db: float
    polygraphy_passed: bool
    infinite: int = 0  # of the nonfinite values, those that are +-Inf (the rest are NaN)
    passed: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def task_drop_db(self) -> float:
        if self.task_psnr_reference_db == self.task_psnr_artifact_db:  # also both +inf
            return 0.0
        return self.task_psnr_reference_db - self.task_psnr_artifact_db


def parity_cases(task: str, resolutions: list[tuple[int, int]], images: int,
                 sr_scale: int) -> list[ParityCase]:
    """Built-in held-out photographs at each resolution, degraded for the task (seeded).

    For a graph that upsamples inside (`sr_scale` > 1) the input is the bicubic-reduced image
    and the resolution names the output size.
    """
    from mirnet_ref.datasets import builtin_images, image_at_resolution
    from mirnet_ref.degradations import bicubic_resize, degrade_pair, make_degradation

    degradation = make_degradation(task)
    cases = []
    for width, height in resolutions:
        for index, (name, photo) in enumerate(builtin_images("heldout")[:images]):
            if sr_scale > 1:
                out_w, out_h = width // sr_scale * sr_scale, height // sr_scale * sr_scale
                clean = image_at_resolution(photo, out_w, out_h)
                degraded = bicubic_resize(clean, clean.shape[0] // sr_scale, clean.shape[1] // sr_scale)
            else:
                rng = np.random.default_rng((2020, index))
                degraded, clean = degrade_pair(degradation, image_at_resolution(photo, width, height), rng)
            batch = np.ascontiguousarray(degraded.transpose(2, 0, 1)[None], dtype=np.float32)
            cases.append(ParityCase(name, format_resolution((width, height)), batch, clean))
    return cases


def _hwc(output: np.ndarray) -> np.ndarray:
    return np.clip(output[0].transpose(1, 2, 0), 0.0, 1.0)


def judge(row: ResolutionParity, precision: str) -> ResolutionParity:
    """Fill `passed` and `failures` from the precision's thresholds."""
    limits = THRESHOLDS[precision]
    checks = [
        (row.nonfinite == 0, f"{row.nonfinite - row.infinite} NaN and {row.infinite} Inf values in the "
                             f"{precision} output at {row.resolution} (FP16 overflow is the usual cause)"),
        (row.psnr_vs_reference_db >= limits["min_psnr_vs_reference"],
         f"PSNR vs reference {row.psnr_vs_reference_db:.1f} dB < {limits['min_psnr_vs_reference']} dB"),
        (row.max_abs_error <= limits["max_abs_error"],
         f"max |error| {row.max_abs_error:.2e} > {limits['max_abs_error']:.0e}"),
        (row.task_drop_db <= limits["max_task_drop_db"],
         f"task PSNR drop {row.task_drop_db:.3f} dB > {limits['max_task_drop_db']} dB"),
    ]
    row.failures = [message for ok, message in checks if not ok]
    row.passed = not row.failures
    return row


def compare(reference_outputs: Sequence[np.ndarray], artifact_outputs: Sequence[np.ndarray],
            cases: Sequence[ParityCase], polygraphy_passed: bool, precision: str) -> ResolutionParity:
    """Metrics for the cases of one resolution (outputs are 1x3xHxW, unclamped)."""
    psnrs, ssims, task_ref, task_art = [], [], [], []
    for ref, art, case in zip(reference_outputs, artifact_outputs, cases, strict=True):
        ref_img, art_img = _hwc(ref), _hwc(np.nan_to_num(art, nan=0.0))
        psnrs.append(psnr(art_img, ref_img))
        ssims.append(ssim(art_img, ref_img) if min(ref_img.shape[:2]) >= 11 else float("nan"))
        task_ref.append(psnr(ref_img, case.clean))
        task_art.append(psnr(art_img, case.clean))
    row = ResolutionParity(
        resolution=cases[0].resolution,
        images=len(cases),
        psnr_vs_reference_db=float(min(psnrs)),
        ssim_vs_reference=float(min(ssims)),
        max_abs_error=float(max(np.nanmax(np.abs(a - r)) for a, r in zip(artifact_outputs,
                                                                       reference_outputs, strict=True))),
        nonfinite=int(sum((~np.isfinite(a)).sum() for a in artifact_outputs)),
        infinite=int(sum(np.isinf(a).sum() for a in artifact_outputs)),
        task_psnr_reference_db=float(np.mean(task_ref)),
        task_psnr_artifact_db=float(np.mean(task_art)),
        polygraphy_passed=polygraphy_passed,
    )
    return judge(row, precision)


def run_parity(reference_runner, artifact_runner, cases: Sequence[ParityCase],
               precision: str) -> list[ResolutionParity]:
    """Run both polygraphy runners on every case; one row per resolution.

    Polygraphy's comparator checks element-wise closeness with the precision's
    max |error| as absolute tolerance; the row adds the image metrics.
    """
    from polygraphy.comparator import Comparator, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR
    G_LOGGER.colors = False  # else polygraphy prints a hint about the `colored` module to stdout
    rows = []
    for resolution in dict.fromkeys(case.resolution for case in cases):
        subset = [case for case in cases if case.resolution == resolution]
        results = Comparator.run([reference_runner, artifact_runner],
                                 data_loader=[{"input": case.input} for case in subset])
        accuracy = Comparator.compare_accuracy(
            results, compare_func=SimpleCompareFunc(atol=THRESHOLDS[precision]["max_abs_error"], rtol=0.0,
                                                     check_shapes=True))
        reference, artifact = (results[runner.name] for runner in (reference_runner, artifact_runner))
        rows.append(compare([np.asarray(r["output"]) for r in reference],
                            [np.asarray(r["output"]) for r in artifact],
                            subset, bool(accuracy), precision))
    return rows


def rows_to_dict(rows: Sequence[ResolutionParity]) -> list[dict]:
    """JSON-ready rows; an infinite PSNR (bit-identical outputs) becomes null."""
    def clean(value):
        return None if isinstance(value, float) and np.isinf(value) else value

    return [{k: clean(v) for k, v in {**asdict(row), "task_drop_db": row.task_drop_db}.items()}
            for row in rows]


def format_table(rows: Sequence[ResolutionParity], precision: str) -> str:
    header = (f"{'resolution':>11} {'imgs':>4} {'PSNR vs ref':>11} {'SSIM':>7} {'max|err|':>9} "
              f"{'NaN/Inf':>7} {'task ref':>8} {'task art':>8} {'drop':>6}  result")
    lines = [f"parity ({precision}; thresholds {THRESHOLDS[precision]})", header]
    for row in rows:
        verdict = "pass" if row.passed else "FAIL: " + "; ".join(row.failures)
        lines.append(
            f"{row.resolution:>11} {row.images:>4} {row.psnr_vs_reference_db:>9.1f}dB "
            f"{row.ssim_vs_reference:>7.4f} {row.max_abs_error:>9.2e} {row.nonfinite:>7} "
            f"{row.task_psnr_reference_db:>8.2f} {row.task_psnr_artifact_db:>8.2f} {row.task_drop_db:>6.3f}  "
            f"{verdict}")
    return "\n".join(lines)
