"""MIRNet (Zamir et al., ECCV 2020), matching the authors' published model exactly.

Module names, registration order and weight sharing mirror the official
`networks/MIRNet_model.py` so that `state_dict()` yields the official 797 keys in
the official order, aliases included (see ../shared/reference/MIRNET_SPEC.md §1-§5).

One deliberate difference: the official DAU takes `act=nn.PReLU()` as a default
argument, so one PReLU is shared by every DAU of every model *in the process*.
Here each MIRNet creates its own PReLU and hands it to all of its DAUs: the
sharing inside one model (and so the keys, the parameter count and the
numerics) is the authors', but two models are independent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import ConfiguredModel, ConstructorArguments

#: The fixed anti-aliasing kernel of the downsamplers, outer([1,2,1],[1,2,1]) / 16.
BLUR_KERNEL_1D = (1.0, 2.0, 1.0)
#: Channel attention and SKFF bottleneck reduction (fixed in the official code).
REDUCTION = 8


@dataclass(frozen=True)
class MIRNetConfig(ConstructorArguments):
    """Constructor arguments of the official MIRNet (`stride` is the stream channel factor)."""

    in_channels: int = 3
    out_channels: int = 3
    n_feat: int = 64
    kernel_size: int = 3
    stride: int = 2
    n_RRG: int = 3
    n_MSRB: int = 2
    height: int = 3
    width: int = 2
    bias: bool = False

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (the blur rounds up, the upsamplers double)."""
        return 2 ** (self.height - 1)


def blur_kernel(channels: int) -> torch.Tensor:
    """The `filt` buffer of an anti-aliased downsampler: [C, 1, 3, 3], float32, on the default device.

    Computed on the CPU and then moved: built under `torch.device("meta")` (parameter and MAC
    counts), the product and division would run PyTorch's Python reference kernels, whose first
    call imports `torch._dynamo` (about 2 CPU-s)."""
    a = torch.tensor(BLUR_KERNEL_1D, dtype=torch.float64, device="cpu")
    k = a[:, None] * a[None, :]
    k = (k / k.sum()).to(torch.float32)
    return k[None, None].repeat(channels, 1, 1, 1).to(torch.get_default_device())


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 1, depthwise [1,2,1]² / 16 blur."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.pad = nn.ReflectionPad2d(1)
        self.register_buffer("filt", blur_kernel(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class SKFF(nn.Module):
    """Selective kernel feature fusion: softmax across inputs, separately per channel."""

    def __init__(
        self, in_channels: int, height: int = 3, reduction: int = REDUCTION, act: nn.Module | None = None
    ):
        """`act` follows the squeeze (MIRNet: a PReLU of its own; MIRNet-v2: LeakyReLU 0.2)."""
        super().__init__()
        self.height = height
        d = max(int(in_channels / reduction), 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(in_channels, d, 1, padding=0, bias=False), act if act is not None else nn.PReLU()
        )
        self.fcs = nn.ModuleList(
            [nn.Conv2d(d, in_channels, kernel_size=1, stride=1, bias=False) for _ in range(height)]
        )
        self.softmax = nn.Softmax(dim=1)

    def forward(self, inp_feats: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(inp_feats, dim=1)  # N, height, C, H, W
        feats_u = stacked.sum(dim=1)
        feats_z = self.conv_du(self.avg_pool(feats_u))
        attention = torch.stack([fc(feats_z) for fc in self.fcs], dim=1)  # N, height, C, 1, 1
        attention = self.softmax(attention)
        return (stacked * attention).sum(dim=1)


class SpatialConv(nn.Module):
    """The official `BasicConv(2, 1, 5, relu=False, bn=False)`: one conv, kept for its key name."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialAttention(nn.Module):
    """Per-pixel gate from [max over channels, mean over channels] (max first)."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.spatial = SpatialConv(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((torch.amax(x, dim=1, keepdim=True), torch.mean(x, dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class ChannelAttention(nn.Module):
    """Squeeze-excitation: global average pool, 1x1 C -> C//8, ReLU, 1x1 back, sigmoid."""

    def __init__(self, channels: int, reduction: int = REDUCTION, bias: bool = False):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class DAU(nn.Module):
    """Dual attention unit; `act` is the model-wide PReLU shared by every DAU."""

    def __init__(self, n_feat: int, act: nn.PReLU, kernel_size: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat, kernel_size, padding=kernel_size // 2, bias=False),
            act,
            nn.Conv2d(n_feat, n_feat, kernel_size, padding=kernel_size // 2, bias=False),
        )
        self.SA = SpatialAttention()
        self.CA = ChannelAttention(n_feat, REDUCTION, bias=False)
        self.conv1x1 = nn.Conv2d(n_feat * 2, n_feat, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res = self.conv1x1(torch.cat([self.SA(res), self.CA(res)], dim=1))
        return res + x


class ResidualDownSample(nn.Module):
    """C -> 2C at half resolution: (1x1, PReLU, 3x3, PReLU, blur/2, 1x1) + (blur/2, 1x1)."""

    def __init__(self, in_channels: int):
        super().__init__()
        c = in_channels
        self.top = nn.Sequential(
            nn.Conv2d(c, c, 1, stride=1, padding=0, bias=False),
            nn.PReLU(),
            nn.Conv2d(c, c, 3, stride=1, padding=1, bias=False),
            nn.PReLU(),
            BlurDownsample(c),
            nn.Conv2d(c, c * 2, 1, stride=1, padding=0, bias=False),
        )
        self.bot = nn.Sequential(BlurDownsample(c), nn.Conv2d(c, c * 2, 1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bot(x)


class ResidualUpSample(nn.Module):
    """C -> C/2 at double resolution: (1x1, PReLU, ConvT 3x3/s2, PReLU, 1x1) + (bilinear x2, 1x1)."""

    def __init__(self, in_channels: int):
        super().__init__()
        c = in_channels
        self.top = nn.Sequential(
            nn.Conv2d(c, c, 1, stride=1, padding=0, bias=False),
            nn.PReLU(),
            nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(c, c // 2, 1, stride=1, padding=0, bias=False),
        )
        self.bot = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c, c // 2, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bot(x)


#: Builds one resampling step from its input channel count (the factor is the model's).
ResampleStep = Callable[[int], nn.Module]


class DownSample(nn.Module):
    """log2(scale) chained down steps, multiplying channels by `stride` at each step.

    `step` defaults to MIRNet's ResidualDownSample; MIRNet-v2 passes its own (factor 1.5).
    """

    def __init__(
        self, in_channels: int, scale_factor: int, stride: float = 2, step: ResampleStep | None = None
    ):
        super().__init__()
        step = step or ResidualDownSample
        steps = []
        for _ in range(scale_factor.bit_length() - 1):
            steps.append(step(in_channels))
            in_channels = int(in_channels * stride)
        self.body = nn.Sequential(*steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpSample(nn.Module):
    """log2(scale) chained up steps, dividing channels by `stride` (floor) at each step."""

    def __init__(
        self, in_channels: int, scale_factor: int, stride: float = 2, step: ResampleStep | None = None
    ):
        super().__init__()
        step = step or ResidualUpSample
        steps = []
        for _ in range(scale_factor.bit_length() - 1):
            steps.append(step(in_channels))
            in_channels = int(in_channels // stride)
        self.body = nn.Sequential(*steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MSRB(nn.Module):
    """Multi-scale residual block: `height` streams x `width` columns of DAUs with SKFF exchange."""

    def __init__(self, n_feat: int, height: int, width: int, stride: int, bias: bool, act: nn.PReLU):
        super().__init__()
        self.n_feat, self.height, self.width = n_feat, height, width
        # One DAU per row, listed `width` times: the columns share weights (official).
        self.blocks = nn.ModuleList(
            [nn.ModuleList([DAU(int(n_feat * stride**i), act)] * width) for i in range(height)]
        )
        feats = [int((stride**i) * n_feat) for i in range(height)]
        scales = [2**i for i in range(1, height)]
        self.last_up = nn.ModuleDict()
        for i in range(1, height):
            self.last_up.update({f"{i}": UpSample(int(n_feat * stride**i), 2**i, stride)})
        # Key strings embed channel counts and their insertion order is the official one.
        scales.reverse()
        self.down = nn.ModuleDict()
        for i, feat in enumerate(feats):
            for scale in scales[i:]:
                self.down.update({f"{feat}_{scale}": DownSample(feat, scale, stride)})
        self.up = nn.ModuleDict()
        for i, feat in enumerate(reversed(feats)):
            for scale in scales[i:]:
                self.up.update({f"{feat}_{scale}": UpSample(feat, scale, stride)})
        self.conv_out = nn.Conv2d(n_feat, n_feat, kernel_size=3, padding=1, bias=bias)
        self.selective_kernel = nn.ModuleList([SKFF(n_feat * stride**i, height) for i in range(height)])

    def _resample(self, tensor: torch.Tensor, target_row: int, source_row: int) -> torch.Tensor:
        if target_row == source_row:
            return tensor
        factor = 2 ** abs(target_row - source_row)
        table = self.up if target_row < source_row else self.down
        return table[f"{tensor.shape[1]}_{factor}"](tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Column 0 cascades down the rows: row j+1 is fed from row j's DAU output.
        rows: list[torch.Tensor] = []
        feat = x
        for j in range(self.height):
            if j > 0:
                feat = self.down[f"{feat.shape[1]}_2"](feat)
            feat = self.blocks[j][0](feat)
            rows.append(feat)
        # Further columns: every row gathers all rows at its scale, fuses with SKFF_j.
        for i in range(1, self.width):
            fused = [
                self.selective_kernel[j]([self._resample(rows[k], j, k) for k in range(self.height)])
                for j in range(self.height)
            ]
            rows = [self.blocks[j][i](fused[j]) for j in range(self.height)]
        # Output aggregation reuses SKFF_0 with the dedicated last_up modules.
        out = [rows[0]] + [self.last_up[f"{k}"](rows[k]) for k in range(1, self.height)]
        out = self.conv_out(self.selective_kernel[0](out))
        return out + x


class ResidualGroup(nn.Module):
    """`blocks`, then a same-size conv, plus the input: the residual group all three families use
    (MIRNet's and MIRNet-v2's RRG, MPRNet's ORB); state_dict names `body.{i}`."""

    def __init__(self, blocks: list[nn.Module], n_feat: int, kernel_size: int = 3, bias: bool = False):
        super().__init__()
        tail = nn.Conv2d(n_feat, n_feat, kernel_size, padding=kernel_size // 2, bias=bias)
        self.body = nn.Sequential(*blocks, tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RRG(ResidualGroup):
    """Recursive residual group: MSRB x n_MSRB, a 3x3 conv (never biased), plus the input."""

    def __init__(
        self, n_feat: int, n_MSRB: int, height: int, width: int, stride: int, bias: bool, act: nn.PReLU
    ):
        super().__init__([MSRB(n_feat, height, width, stride, bias, act) for _ in range(n_MSRB)], n_feat)


class MIRNet(ConfiguredModel):
    """MIRNet with the official constructor. No clamp inside: callers clamp to [0, 1]."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        n_feat: int = 64,
        kernel_size: int = 3,
        stride: int = 2,
        n_RRG: int = 3,
        n_MSRB: int = 2,
        height: int = 3,
        width: int = 2,
        bias: bool = False,
    ):
        super().__init__()
        if stride != 2:
            raise ValueError(
                "MIRNet's stream channel factor `stride` must be 2 (the resamplers double/halve)"
            )
        if in_channels != out_channels:
            raise ValueError("MIRNet adds the input image to the output: in_channels must equal out_channels")
        self.config = MIRNetConfig(
            in_channels, out_channels, n_feat, kernel_size, stride, n_RRG, n_MSRB, height, width, bias
        )
        # Shared by every DAU of this model, not registered here, so that it appears
        # in the state_dict only under the DAUs' `body.1.weight` keys (official layout).
        dau_act = nn.PReLU()
        self.conv_in = nn.Conv2d(
            in_channels, n_feat, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=bias
        )
        self.body = nn.Sequential(
            *[RRG(n_feat, n_MSRB, height, width, stride, bias, dau_act) for _ in range(n_RRG)]
        )
        self.conv_out = nn.Conv2d(
            n_feat, out_channels, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.body(self.conv_in(x))) + x


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters without duplicates (how the authors count: 31,787,419 for `full`)."""
    return sum(p.numel() for p in model.parameters())
