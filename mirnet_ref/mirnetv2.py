"""MIRNet-v2 (Zamir et al., TPAMI 2022), matching the authors' published model exactly.

Module names and registration order mirror the official
`basicsr/models/archs/mirnet_v2_arch.py`, so `state_dict()` yields the official
238 keys in the official order (../shared/reference/MIRNETV2_SPEC.md §2). Quirks
kept on purpose: the body always has four RRGs (groups 1, 2, 4, 4) whatever
`n_RRG` says; `height`, `width` and `scale` are stored but change nothing (SR
is same-size refinement of a bicubic-upsampled input); with
`task='defocus_deblurring'` the residual is on features, not on the image.
SKFF and the resampler chains are MIRNet's, with v2's activation and steps.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .configuration import ConfiguredModel, constructor_config
from .model import SKFF, DownSample, ResidualGroup, UpSample

#: H and W must be multiples of this: two levels of 2x2 pooling (ceil mode), then x2 upsampling.
MIRNETV2_SIZE_MULTIPLE = 4
#: The group counts of the RCB 3x3 convs in the four RRGs (hard-coded upstream).
RRG_GROUPS = (1, 2, 4, 4)
#: The `task` value that switches to the dual-pixel defocus residual.
DEFOCUS_TASK = "defocus_deblurring"
LEAKY_SLOPE = 0.2


class ContextBlock(nn.Module):
    """Global context: softmax over all pixels of a 1-channel mask pools a C-vector, which passes
    1x1 -> LeakyReLU -> 1x1 and is added to every pixel."""

    def __init__(self, n_feat: int, bias: bool = False):
        super().__init__()
        self.conv_mask = nn.Conv2d(n_feat, 1, kernel_size=1, bias=bias)
        self.softmax = nn.Softmax(dim=2)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2d(n_feat, n_feat, kernel_size=1, bias=bias),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(n_feat, n_feat, kernel_size=1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        mask = self.softmax(self.conv_mask(x).flatten(2))  # N, 1, HW
        context = torch.matmul(x.flatten(2), mask.transpose(1, 2))  # N, C, 1
        return x + self.channel_add_conv(context.reshape(batch, channels, 1, 1))


class RCB(nn.Module):
    """Residual context block: grouped conv, LeakyReLU, grouped conv, context block, LeakyReLU, + x."""

    def __init__(self, n_feat: int, bias: bool = False, groups: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat, 3, stride=1, padding=1, bias=bias, groups=groups),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(n_feat, n_feat, 3, stride=1, padding=1, bias=bias, groups=groups),
        )
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.gcnet = ContextBlock(n_feat, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.gcnet(self.body(x))) + x


class Down(nn.Module):
    """2x2 average pool (ceil mode, padding excluded) then a bias-free 1x1 conv C -> int(C * factor)."""

    def __init__(self, in_channels: int, chan_factor: float):
        super().__init__()
        self.bot = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(in_channels, int(in_channels * chan_factor), 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bot(x)


class Up(nn.Module):
    """A bias-free 1x1 conv C -> int(C // factor) **then** bilinear x2 (align_corners False)."""

    def __init__(self, in_channels: int, chan_factor: float):
        super().__init__()
        self.bot = nn.Sequential(
            nn.Conv2d(in_channels, int(in_channels // chan_factor), 1, stride=1, padding=0, bias=False),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bot(x)


class MRB(nn.Module):
    """Multi-scale residual block: three scales made from the input in parallel, two rounds of the
    same three RCBs with SKFF fusion (mid before top; bottom never fused), a 1x1 conv, plus x."""

    def __init__(self, n_feat: int, chan_factor: float, bias: bool, groups: int):
        super().__init__()
        c0, c1, c2 = (int(n_feat * chan_factor**i) for i in range(3))
        down = partial(DownSample, scale_factor=2, stride=chan_factor,
                       step=partial(Down, chan_factor=chan_factor))
        up = partial(UpSample, scale_factor=2, stride=chan_factor, step=partial(Up, chan_factor=chan_factor))
        self.dau_top = RCB(c0, bias=bias, groups=groups)
        self.dau_mid = RCB(c1, bias=bias, groups=groups)
        self.dau_bot = RCB(c2, bias=bias, groups=groups)
        self.down2 = down(c0)
        self.down4 = nn.Sequential(down(c0), down(c1))
        self.up21_1 = up(c1)
        self.up21_2 = up(c1)
        self.up32_1 = up(c2)
        self.up32_2 = up(c2)
        self.conv_out = nn.Conv2d(n_feat, n_feat, kernel_size=1, padding=0, bias=bias)
        self.skff_top = SKFF(c0, 2, act=nn.LeakyReLU(LEAKY_SLOPE))
        self.skff_mid = SKFF(c1, 2, act=nn.LeakyReLU(LEAKY_SLOPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, mid, bot = x, self.down2(x), self.down4(x)
        for up21, up32 in ((self.up21_1, self.up32_1), (self.up21_2, self.up32_2)):
            top, mid, bot = self.dau_top(top), self.dau_mid(mid), self.dau_bot(bot)
            mid = self.skff_mid([mid, up32(bot)])
            top = self.skff_top([top, up21(mid)])
        return self.conv_out(top) + x


class MIRNetV2(ConfiguredModel):
    """MIRNet_v2 with the official constructor. No clamp inside: callers clamp to [0, 1].

    The streams have n_feat, int(1.5 n_feat), int(2.25 n_feat) channels; n_feat must be a
    multiple of 16 (4 groups at every stream). `n_RRG`, `height`, `width` and `scale` are
    stored, as upstream, and change nothing. Defaults: the released 3-channel models.
    """

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, n_feat: int = 80,
                 chan_factor: float = 1.5, n_RRG: int = 4, n_MRB: int = 2, height: int = 3, width: int = 2,
                 scale: int = 1, bias: bool = False, task: str | None = None):
        super().__init__()
        self.config = MIRNetV2Config(inp_channels, out_channels, n_feat, chan_factor, n_RRG, n_MRB, height,
                                     width, scale, bias, task)
        if task != DEFOCUS_TASK and inp_channels != out_channels:
            raise ValueError("MIRNet-v2 adds the input image to the output: inp_channels must equal "
                             f"out_channels unless task={DEFOCUS_TASK!r}")
        self.image_residual = task != DEFOCUS_TASK
        self.conv_in = nn.Conv2d(inp_channels, n_feat, kernel_size=3, padding=1, bias=bias)
        self.body = nn.Sequential(*[
            ResidualGroup([MRB(n_feat, chan_factor, bias, groups) for _ in range(n_MRB)], n_feat, bias=bias)
            for groups in RRG_GROUPS
        ])
        self.conv_out = nn.Conv2d(n_feat, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.conv_in(x)
        deep = self.body(shallow)
        if self.image_residual:
            return self.conv_out(deep) + x
        return self.conv_out(deep + shallow)


#: MIRNet_v2's constructor arguments as a frozen dataclass (`in_channels` = inp_channels, multiple 4).
MIRNetV2Config = constructor_config(
    MIRNetV2,
    in_channels=property(lambda config: config.inp_channels),
    size_multiple=property(lambda config: MIRNETV2_SIZE_MULTIPLE),
)

#: The released models (`Options/*.yml`): one set of tensors for every 3-channel task (5,858,560
#: parameters; SR's `scale` changes nothing) and the 6-channel defocus model (5,860,720).
MIRNETV2_PRESETS: dict[str, MIRNetV2Config] = {
    "denoise": MIRNetV2Config(),
    "enhance": MIRNetV2Config(),
    "sr_x2": MIRNetV2Config(scale=2),
    "sr_x3": MIRNetV2Config(scale=3),
    "sr_x4": MIRNetV2Config(scale=4),
    "defocus": MIRNetV2Config(inp_channels=6, task=DEFOCUS_TASK),
    # Not released: the CPU demo size (4 RRGs of one MRB, 16 channels), trained by `make demo-weights`.
    "small": MIRNetV2Config(n_feat=16, n_MRB=1),
}
