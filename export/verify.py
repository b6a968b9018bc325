"""Does the ONNX file compute what PyTorch computes? ONNX Runtime CPU against the eager module.

Run after every export and precision conversion. The reference is `DeploymentGraph` run
eagerly in float32 (the same padding, cropping and upsampling as the graph), on seeded
uniform noise: the hardest input for a restoration network, since every pixel is detail.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from mirnet_deploy.errors import UserError

from .graph import DeploymentGraph
from .spec import ModelSpec

#: (batch, height, width) checked by default: a square, odd sizes, and a batch of 2.
DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 64, 64), (1, 45, 71), (2, 33, 30))
#: Max |ONNX - PyTorch| allowed per precision. FP16 rounds every weight and activation to
#: 11 significant bits; measured on ORT CPU: about 1e-3 for a random-weight `full` MIRNet,
#: 5e-4 for the `small` demo denoiser, so 1e-2 flags broken conversions, not rounding.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}


@dataclass(frozen=True)
class ShapeCheck:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_error: float
    psnr_db: float | None  # against the PyTorch output, peak 1; None when identical


@dataclass(frozen=True)
class VerifyReport:
    model: str
    precision: str
    tolerance: float
    checks: tuple[ShapeCheck, ...]

    @property
    def max_abs_error(self) -> float:
        return max(check.max_abs_error for check in self.checks)

    @property
    def failed(self) -> list[ShapeCheck]:
        """The checks over the tolerance, NaN included (a NaN compares False)."""
        return [check for check in self.checks if not check.max_abs_error <= self.tolerance]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_abs_error": self.max_abs_error, "ok": self.ok}

    def format_lines(self) -> list[str]:
        lines = [f"ONNX Runtime CPU vs PyTorch ({self.precision}, tolerance {self.tolerance:.0e}):"]
        for check in self.checks:
            shapes = f"{_shape_text(check.input_shape)} -> {_shape_text(check.output_shape)}"
            psnr = "identical" if check.psnr_db is None else f"PSNR {check.psnr_db:.1f} dB"
            lines.append(f"  {shapes:<28} max |err| {check.max_abs_error:.2e}  {psnr}")
        return lines

    def raise_if_failed(self) -> None:
        if self.failed:
            first = self.failed[0]
            raise UserError(
                f"{self.model} does not reproduce PyTorch: max |error| {first.max_abs_error:.3g} at "
                f"input {_shape_text(first.input_shape)} is over the {self.precision} tolerance "
                f"{self.tolerance:g}. "
                "The export or conversion changed the computation; for FP16, keep the overflowing "
                "layers in FP32 (--fp32-node) or deploy the FP32 model."
            )


def default_shapes(sr_scale: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """DEFAULT_SHAPES as output sizes: with in-graph upsampling the inputs are `sr_scale` smaller."""
    scale = sr_scale or 1
    return tuple((n, max(1, h // scale), max(1, w // scale)) for n, h, w in DEFAULT_SHAPES)


def verify_onnx(
    path: str | os.PathLike,
    module: nn.Module,
    spec: ModelSpec,
    *,
    sr_scale: int | None = None,
    shapes: tuple[tuple[int, int, int], ...] = DEFAULT_SHAPES,
    seed: int = 0,
) -> VerifyReport:
    """Compare the model at `path` on ONNX Runtime CPU with `module` at each (batch, height, width).

    The tolerance is that of the model's `precision` metadata.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    precision = session.get_modelmeta().custom_metadata_map.get("precision", "fp32")
    if precision not in TOLERANCES:
        raise UserError(f"{path} has precision {precision!r}; verification knows {', '.join(TOLERANCES)}.")
    reference = DeploymentGraph(module, spec, sr_scale).eval()
    device = next(module.parameters()).device
    rng = np.random.default_rng(seed)
    checks = []
    for batch, height, width in shapes:
        x = rng.random((batch, spec.in_channels, height, width), dtype=np.float32)
        (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
        with torch.no_grad():
            torch_out = reference(torch.from_numpy(x).to(device)).cpu().numpy()
        if onnx_out.shape != torch_out.shape:
            raise UserError(
                f"{path} returns shape {onnx_out.shape} for input {x.shape}, PyTorch {torch_out.shape}: "
                "the graph's padding or cropping is wrong. Re-export the model."
            )
        checks.append(_compare(x.shape, onnx_out, torch_out))
    return VerifyReport(str(Path(path)), precision, TOLERANCES[precision], tuple(checks))


def _compare(input_shape: tuple[int, ...], onnx_out: np.ndarray, torch_out: np.ndarray) -> ShapeCheck:
    difference = onnx_out.astype(np.float64) - torch_out.astype(np.float64)
    mse = float(np.mean(difference**2))
    psnr = None if mse == 0 else 10 * math.log10(1 / mse)
    return ShapeCheck(tuple(input_shape), tuple(onnx_out.shape), float(np.abs(difference).max()), psnr)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
