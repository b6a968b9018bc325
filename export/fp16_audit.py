"""FP16 numerics audit: predict, on a CPU, whether an FP16 TensorRT engine of a model is accurate.

Why emulate: ONNX Runtime on a CPU computes an FP16 graph in higher precision, so running
`model.fp16.onnx` there says nothing about overflow or rounding in a TensorRT FP16 engine.
Instead we run the PyTorch model in float32 with FP16 *storage* emulated:

* weights are rounded to float16 (then used as float32; any beyond the range are reported);
* the input image is rounded (the FP16 graph casts it right after `input`);
* every activation is rounded to float16 right after the op that computes it: values beyond
  the FP16 range become inf (|x| >= 65520 rounds to inf; 65504 is the largest FP16 number)
  and values below the smallest subnormal (2^-24) become 0;
* inside an op everything stays float32, as TensorRT's FP16 convolutions accumulate in FP32.

Rounding mechanism: one `torch.overrides.TorchFunctionMode` sees every torch call the model
makes -- `F.conv2d` inside an `nn.Conv2d` as well as the functional ops between modules (the
residual additions, the SKFF sum and softmax inputs, the attention multiplications) -- and
rounds the float32 tensors each call computes, in place. Calls made inside a handled call are
not seen again, so `F.conv2d` is one op with float32 accumulation. Forward pre/post hooks only
keep track of which module is running, to name the report's rows: a leaf module's ops are
reported under its qualified name, a functional op as `<module>:<op>#<k>` (the k-th such op
in that module's forward, aggregated over calls). A module called several times (MIRNet's
shared DAUs and SKFF_0) has one row. Views and arguments returned as they are hold no new
values and are left alone.

Ops kept in FP32 (`keep_fp32`): the FP16 ONNX keeps global average pools / ReduceMean /
ReduceSum and Softmax in FP32 (DEPLOY_STACK.md §5). Their inputs are already rounded and
their outputs are rounded too (they feed FP16 consumers); what FP32 changes is inside: a
weighted kept module keeps its FP32 weights, and an averaging reduction sums in FP32. An
averaging reduction *not* kept is emulated as an FP16 accumulator at its best: the exact sum
rounded once to FP16, then divided (a running FP16 sum is worse still: summing ones, it
stalls at 2048).

Why global average pools must stay FP32 (the `max_pre_sum` statistic): a pool averages H*W
values by summing them first. At 1080p that is 2,073,600 values, so a feature of mean 0.05
already sums to about 100,000 > 65504: a naive FP16 sum overflows to inf, and the inf turns
the attention weights after it into NaN. Each value, and the mean, fits easily in FP16; only
the sum does not. The statistic grows as H*W, so audit at the largest deployment resolution.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import format_resolution
from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.degradations import make_degradation
from mirnet_ref.inference import pad_to_multiple
from mirnet_ref.metrics import psnr

FP16_MAX = 65504.0
#: The smallest |x| that float16 rounding turns into inf (65504 plus half its spacing of 32).
FP16_OVERFLOW = 65520.0
#: Below this, float16 values are subnormal (fewer significant bits) or zero.
FP16_MIN_NORMAL = 2.0**-14
#: Layers whose largest value exceeds this fraction of FP16_MAX are flagged (no headroom left).
FLAG_MARGIN = 0.5
#: What the FP16 ONNX keeps in FP32: module types, and op names of weight-free functional ops.
DEFAULT_KEEP_FP32: frozenset[type | str] = frozenset(
    {nn.AdaptiveAvgPool2d, nn.Softmax, "adaptive_avg_pool2d", "mean", "sum", "softmax"}
)
#: Ops that average by summing first: their pre-division sum is what an FP16 accumulator holds.
AVERAGING_OPS = frozenset({"adaptive_avg_pool2d", "mean"})
ROOT_NAME = "(model)"


@dataclass
class LayerStats:
    """FP16 risk of one layer (a leaf module or a functional op's call site), over all calls."""

    name: str  # module qualified name, or '<module>:<op>#<k>' for a functional op
    kind: str  # module class or op name
    kept_fp32: bool
    calls: int = 0  # op calls recorded (a shared module's calls add up)
    elements: int = 0
    max_abs: float = 0.0  # largest finite |value| before rounding
    overflows: int = 0  # finite values that rounding turned into inf
    underflows: int = 0  # non-zero values that rounding made subnormal or zero
    nonfinite: int = 0  # inf/NaN in the rounded output, made here or propagated from inputs
    reduction_size: int | None = None  # values averaged per output (H*W for a global pool)
    max_pre_sum: float | None = None  # largest |sum| before the division

    def record(self, stats: _TensorStats) -> None:
        self.elements += stats.elements
        self.max_abs = max(self.max_abs, stats.max_abs)
        self.overflows += stats.overflows
        self.underflows += stats.underflows
        self.nonfinite += stats.nonfinite

    @property
    def ratio(self) -> float:
        return self.max_abs / FP16_MAX

    @property
    def fp16_sum_ratio(self) -> float:
        """An averaging op left in FP16 holds its pre-division sum in FP16: that sum's share of the max."""
        return 0.0 if self.kept_fp32 else (self.max_pre_sum or 0.0) / FP16_MAX

    @property
    def risk(self) -> tuple[int, float]:
        """Sort key: overflows first, then how close the largest FP16 value comes to the max."""
        return self.overflows, max(self.ratio, self.fp16_sum_ratio)

    @property
    def flagged(self) -> bool:
        """Overflows, or less than FLAG_MARGIN headroom: keep this layer in FP32."""
        return self.overflows > 0 or max(self.ratio, self.fp16_sum_ratio) > FLAG_MARGIN


def json_float(value: float) -> float | str:
    """JSON has no inf/NaN: such values become the strings 'inf', '-inf', 'nan'."""
    return value if math.isfinite(value) else str(value)


def worst_psnr(psnrs: Sequence[float]) -> float:
    """The worst image's PSNR (NaN if any is): an engine must be good on every input."""
    return math.nan if any(math.isnan(value) for value in psnrs) else min(psnrs)


@dataclass
class AuditReport:
    """Per-layer FP16 statistics plus how far the emulated FP16 output is from FP32."""

    resolution: str  # 'WxH' of the audited (padded) images
    images: int
    layers: list[LayerStats]  # in order of first execution
    psnr_per_image: list[float]  # emulated FP16 vs FP32 output, both clamped to [0, 1]
    max_abs_error: float  # on the raw (unclamped) outputs; NaN when the FP16 output has NaN
    output_nonfinite: int  # inf/NaN values in the emulated FP16 output
    weight_overflows: list[str]  # parameters/buffers with values beyond the FP16 range
    keep_fp32: list[str]
    seconds: float

    @property
    def psnr_db(self) -> float:
        return worst_psnr(self.psnr_per_image)

    @property
    def overflows(self) -> int:
        return sum(row.overflows for row in self.layers)

    @property
    def underflows(self) -> int:
        return sum(row.underflows for row in self.layers)

    @property
    def elements(self) -> int:
        return sum(row.elements for row in self.layers)

    @property
    def flagged_layers(self) -> list[str]:
        """Layers the FP16 converter should keep in FP32, most at risk first (then weight overflows)."""
        flagged = [row.name for row in self._by_risk() if row.flagged]
        owners = dict.fromkeys(name.rpartition(".")[0] or ROOT_NAME for name in self.weight_overflows)
        return flagged + [owner for owner in owners if owner not in flagged]

    def _by_risk(self) -> list[LayerStats]:
        return sorted(self.layers, key=lambda row: row.risk, reverse=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats as strings 'inf'/'nan')."""
        layers = []
        for row in self.layers:
            fields = {key: json_float(v) if isinstance(v, float) else v for key, v in asdict(row).items()}
            layers.append({**fields, "ratio": json_float(row.ratio), "flagged": row.flagged})
        return {
            "method": "pytorch",
            "resolution": self.resolution,
            "images": self.images,
            "psnr_db": json_float(self.psnr_db),
            "psnr_per_image": [json_float(v) for v in self.psnr_per_image],
            "max_abs_error": json_float(self.max_abs_error),
            "output_nonfinite": self.output_nonfinite,
            "weight_overflows": self.weight_overflows,
            "overflows": self.overflows,
            "underflows": self.underflows,
            "elements": self.elements,
            "flagged_layers": self.flagged_layers,
            "keep_fp32": self.keep_fp32,
            "fp16_max": FP16_MAX,
            "flag_margin": FLAG_MARGIN,
            "seconds": round(self.seconds, 3),
            "layers": layers,
        }

    def format_table(self, top: int = 15) -> str:
        """The `top` layers closest to the FP16 limit, then a one-line summary (and a pool note)."""
        rows = self._by_risk()[:top]
        width = max([len("layer"), *(len(row.name) for row in rows)])
        lines = [
            f"{'layer':<{width}}  {'kind':<20} {'max |x|':>10} {'/65504':>8} {'overflow':>9} "
            f"{'underflow':>10} {'pool sum':>10}  precision"
        ]
        for row in rows:
            pool_sum = f"{row.max_pre_sum:10.4g}" if row.max_pre_sum is not None else f"{'':>10}"
            lines.append(
                f"{row.name:<{width}}  {row.kind:<20} {row.max_abs:10.4g} {row.ratio:8.2g} "
                f"{row.overflows:9d} {row.underflows / max(row.elements, 1):10.2%} {pool_sum}  "
                f"{'fp32' if row.kept_fp32 else 'fp16'}{'  FLAGGED' if row.flagged else ''}"
            )
        flagged = self.flagged_layers
        output = "finite" if self.output_nonfinite == 0 else f"{self.output_nonfinite} inf/NaN"
        lines.append(
            f"{self.resolution}: PSNR vs FP32 {self.psnr_db:.2f} dB (worst of {len(self.psnr_per_image)}), "
            f"max |error| {self.max_abs_error:.3g}, {self.overflows} overflows in "
            f"{sum(row.overflows > 0 for row in self.layers)} layers, {self.underflows} underflows "
            f"({self.underflows / max(self.elements, 1):.2%} of values), "
            f"{len(self.weight_overflows)} weights beyond FP16, output {output}; "
            f"flagged: {', '.join(flagged) if flagged else 'none'}"
        )
        big_pools = [row for row in self.layers if (row.max_pre_sum or 0.0) > FP16_MAX]
        if big_pools:
            biggest = max(big_pools, key=lambda row: row.max_pre_sum or 0.0)
            kept = sum(row.kept_fp32 for row in big_pools)
            lines.append(
                f"note: {len(big_pools)} average pools sum to more than 65504 before dividing (up to "
                f"{biggest.max_pre_sum:.4g} over {biggest.reduction_size} values): a naive FP16 sum "
                f"overflows, so the FP16 graph keeps them FP32 ({kept} of {len(big_pools)} kept here)."
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Emulation


def _split_keep(keep_fp32: Collection[type | str]) -> tuple[tuple[type, ...], frozenset[str]]:
    for entry in keep_fp32:
        if not isinstance(entry, (type, str)):
            raise UserError(
                f"keep_fp32 takes module types and names (module or op names), got {entry!r}."
            )
    types = tuple(entry for entry in keep_fp32 if isinstance(entry, type))
    return types, frozenset(entry for entry in keep_fp32 if isinstance(entry, str))


def _kept_modules(model: nn.Module, types: tuple[type, ...], names: frozenset[str]) -> set[str]:
    """Qualified names of modules kept FP32: matched by type or name, or inside such a module."""
    kept: set[str] = set()
    for name, module in model.named_modules():
        parent = name.rpartition(".")[0]
        if isinstance(module, types) or name in names or (name and parent in kept):
            kept.add(name)
    return kept


def _round_weights(model: nn.Module, kept: set[str]) -> list[str]:
    """Round the float parameters and buffers (e.g. the blur `filt`) of every FP16 module;
    returns the names of those with values that FP16 turns into inf."""
    overflowed = []
    for name, module in model.named_modules():
        if name in kept:
            continue
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for tensor_name, tensor in own:
            if tensor.is_floating_point():
                rounded = tensor.data.to(torch.float16)
                if bool((rounded.isinf() & tensor.data.isfinite()).any()):
                    overflowed.append(f"{name}.{tensor_name}" if name else tensor_name)
                tensor.data = rounded.to(tensor.dtype)
    return overflowed


#: Statistics are taken over chunks of this many values, so their temporaries stay small (4K).
STATS_CHUNK = 1 << 20


@dataclass
class _TensorStats:
    """What rounding did to some values (see the LayerStats fields of the same names)."""

    elements: int
    max_abs: float
    overflows: int
    underflows: int
    nonfinite: int


def _max_finite_abs(tensor: torch.Tensor) -> tuple[float, bool]:
    """(largest finite |value|, whether all values are finite), cheap in the common all-finite case."""
    if tensor.numel() == 0:
        return 0.0, True
    low, high = (value.item() for value in torch.aminmax(tensor))
    if math.isfinite(low) and math.isfinite(high):
        return max(-low, high), True
    finite = tensor[torch.isfinite(tensor)]
    return (finite.abs().max().item() if finite.numel() else 0.0), False


def _round_chunk(values: torch.Tensor) -> _TensorStats:
    """Round in place; the rare checks (overflow, inf/NaN) run only when the extremes call for them."""
    max_abs, all_finite = _max_finite_abs(values)
    rounded = values.to(torch.float16)
    overflows = nonfinite = 0
    if max_abs >= FP16_OVERFLOW:
        overflows = int((rounded.isinf() & values.isfinite()).sum())
    if max_abs >= FP16_OVERFLOW or not all_finite:
        nonfinite = int((~rounded.isfinite()).sum())
    underflows = int(((rounded.abs() < FP16_MIN_NORMAL) & (values != 0)).sum())
    values.copy_(rounded)
    return _TensorStats(values.numel(), max_abs, overflows, underflows, nonfinite)


def _round_in_place(tensor: torch.Tensor, row: LayerStats) -> None:
    """Round a float32 tensor to float16 values in place, recording what rounding did in `row`."""
    for chunk in tensor.view(-1).split(STATS_CHUNK) if tensor.is_contiguous() else [tensor]:
        row.record(_round_chunk(chunk))


def _tensors(values: Sequence[Any]) -> list[torch.Tensor]:
    """Tensors among call arguments or results, one level into lists (torch.cat, torch.stack)."""
    found: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(item for item in value if isinstance(item, torch.Tensor))
    return found


def _is_in_place(raw_name: str, kwargs: dict[str, Any]) -> bool:
    """relu_, add_ (also `x += y`), F.relu(inplace=True), out=...: new values in an argument."""
    trailing_underscore = raw_name.endswith("_") and not raw_name.endswith("__")
    return trailing_underscore or kwargs.get("inplace") is True or "out" in kwargs


@dataclass
class _Frame:
    """A running module: its report name, whether it is kept FP32, op counts for call-site names."""

    name: str
    module: nn.Module
    kept: bool
    op_counts: Counter[str] = field(default_factory=Counter)


class _FP16Emulation(TorchFunctionMode):
    """Round every float32 tensor the model computes to float16 and record per-layer statistics."""

    def __init__(self, model: nn.Module, kept_modules: set[str], kept_ops: frozenset[str]):
        super().__init__()
        self.kept_ops = kept_ops
        self.rows: dict[str, LayerStats] = {}
        self._stack: list[_Frame] = []
        for name, module in model.named_modules():
            frame_name = name or ROOT_NAME
            module.register_forward_pre_hook(partial(self._enter, frame_name, name in kept_modules))
            module.register_forward_hook(self._leave)

    def _enter(self, name: str, kept: bool, module: nn.Module, args: Any) -> None:
        self._stack.append(_Frame(name, module, kept))

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        self._stack.pop()

    def __torch_function__(
        self, func: Callable, types: Collection[type], args: Sequence[Any] = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self._stack:  # outside the model's forward
            return result
        raw_name = getattr(func, "__name__", str(func))
        op = raw_name.strip("_")
        frame = self._stack[-1]
        kept = frame.kept or op in self.kept_ops
        results = result if isinstance(result, (list, tuple)) else [result]
        outputs = [t for t in _tensors(results) if t.dtype == torch.float32]
        if not _is_in_place(raw_name, kwargs):
            inputs = {t.untyped_storage().data_ptr() for t in _tensors([*args, *kwargs.values()])}
            outputs = [t for t in outputs if t.untyped_storage().data_ptr() not in inputs]
        if not outputs:
            return result
        row = self._row(frame, op, kept)
        if op in AVERAGING_OPS and isinstance(result, torch.Tensor):
            result = self._average(row, args[0], result, kept)
            outputs = [result]
        for tensor in outputs:
            _round_in_place(tensor, row)
        return result

    def _row(self, frame: _Frame, op: str, kept: bool) -> LayerStats:
        """The report row of this call: the leaf module's, or the op's call site in `frame`."""
        if next(frame.module.children(), None) is None:
            name, kind = frame.name, type(frame.module).__name__
        else:
            name, kind = f"{frame.name}:{op}#{frame.op_counts[op]}", op
            frame.op_counts[op] += 1
        row = self.rows.setdefault(name, LayerStats(name, kind, kept))
        row.calls += 1
        return row

    @staticmethod
    def _average(row: LayerStats, source: torch.Tensor, mean: torch.Tensor, kept: bool) -> torch.Tensor:
        """Record the pre-division sum; without FP32, emulate an FP16 sum (may overflow to inf)."""
        count = source.numel() // max(mean.numel(), 1)
        row.reduction_size = count
        total = mean * count
        row.max_pre_sum = max(row.max_pre_sum or 0.0, _max_finite_abs(total)[0])
        if kept:
            return mean
        fp16_sum = total.to(torch.float16)
        row.overflows += int((fp16_sum.isinf() & total.isfinite()).sum())
        return fp16_sum.to(torch.float32) / count


# ---------------------------------------------------------------------------------------------
# Public API


def _describe_keep(keep_fp32: Collection[type | str]) -> list[str]:
    return sorted(entry.__name__ if isinstance(entry, type) else entry for entry in keep_fp32)


def _as_images(batch: torch.Tensor) -> list[np.ndarray]:
    """NCHW -> HxWxC float arrays clamped to [0, 1], as PSNR scores them."""
    return [image.clamp(0, 1).permute(1, 2, 0).numpy() for image in batch.detach().float().cpu()]


def compare_outputs(actual: torch.Tensor, expected: torch.Tensor) -> tuple[list[float], float, int]:
    """Emulated FP16 outputs against FP32 ones: (PSNR per image, max |error|, inf/NaN in `actual`)."""
    nonfinite = int((~torch.isfinite(actual)).sum())
    error = (actual - expected).abs().max().item()
    psnrs = [psnr(a, e) for a, e in zip(_as_images(actual), _as_images(expected), strict=True)]
    return psnrs, error, nonfinite


def worst_error(errors: Sequence[float]) -> float:
    """The largest max |error| over batches; NaN when any is (an output with NaN)."""
    return math.nan if any(math.isnan(e) for e in errors) else max(errors)


def audit_fp16(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    *,
    keep_fp32: Collection[type | str] = DEFAULT_KEEP_FP32,
) -> AuditReport:
    """Run `model` on each NCHW float32 image in FP32 and with FP16 storage emulated; compare.

    `images` must already fit the model (padded to its size multiple). `keep_fp32` names what
    the FP16 graph keeps in FP32: module types, module qualified names, or op names of
    weight-free functional ops (e.g. 'mean'). Neither the model nor the images are modified.
    """
    if not images:
        raise UserError("The FP16 audit needs at least one image.")
    start = time.perf_counter()
    reference = copy.deepcopy(model).eval()
    emulated = copy.deepcopy(model).eval()
    kept_types, kept_names = _split_keep(keep_fp32)
    kept_modules = _kept_modules(emulated, kept_types, kept_names)
    weight_overflows = _round_weights(emulated, kept_modules)
    mode = _FP16Emulation(emulated, kept_modules, kept_names)
    psnrs: list[float] = []
    errors: list[float] = []
    nonfinite = 0
    with torch.no_grad():
        for image in images:
            x = image.detach().to(torch.float32)
            expected = reference(x.clone())
            with mode:
                actual = emulated(x.to(torch.float16).to(torch.float32))
            image_psnrs, error, image_nonfinite = compare_outputs(actual, expected)
            psnrs += image_psnrs
            errors.append(error)
            nonfinite += image_nonfinite
            del expected, actual
    sizes = dict.fromkeys(format_resolution((image.shape[-1], image.shape[-2])) for image in images)
    return AuditReport(
        resolution=",".join(sizes),
        images=len(psnrs),
        layers=list(mode.rows.values()),
        psnr_per_image=psnrs,
        max_abs_error=worst_error(errors),
        output_nonfinite=nonfinite,
        weight_overflows=weight_overflows,
        keep_fp32=_describe_keep(keep_fp32),
        seconds=time.perf_counter() - start,
    )


def audit_at_resolutions(
    model: nn.Module,
    resolutions: Sequence[tuple[int, int]],
    images: Sequence[np.ndarray] | None = None,
    *,
    task: str | None = "denoise",
    keep_fp32: Collection[type | str] = DEFAULT_KEEP_FP32,
    size_multiple: int | None = None,
    seed: int = 0,
) -> dict[str, AuditReport]:
    """Audit at each (width, height): activation ranges and pool sums depend on the image size.

    `images` are clean HxWx3 float photographs (default: the held-out built-in ones); each is
    centre-cropped (or bicubic-enlarged) to the resolution, degraded there for `task` (seeded;
    `None` uses the images as they are) and reflect-padded to the model's size multiple. Keys
    are 'WxH'.
    """
    multiple = size_multiple or getattr(model, "size_multiple", 1)
    return {
        format_resolution(resolution): audit_fp16(
            model, audit_inputs(resolution, multiple, images, task=task, seed=seed), keep_fp32=keep_fp32
        )
        for resolution in resolutions
    }


def audit_inputs(
    resolution: tuple[int, int],
    size_multiple: int,
    images: Sequence[np.ndarray] | None = None,
    *,
    task: str | None = "denoise",
    seed: int = 0,
) -> list[torch.Tensor]:
    """The audit's NCHW inputs at (width, height): `images` (default: the held-out built-in photographs)
    centre-cropped or enlarged to it, degraded for `task` (seeded; `None`: as they are) and
    reflect-padded to `size_multiple`. Both audit methods (this module's and the ONNX graph's) use them."""
    photos = images if images is not None else [image for _, image in builtin_images("heldout")]
    degradation = make_degradation(task) if task is not None else None
    rng = np.random.default_rng(seed)
    inputs = []
    for photo in photos:
        sized = image_at_resolution(photo, *resolution)
        if degradation is not None:
            sized = degradation.apply(sized, rng)
        tensor = torch.from_numpy(np.ascontiguousarray(sized.transpose(2, 0, 1), np.float32))[None]
        inputs.append(pad_to_multiple(tensor, size_multiple))
    return inputs
