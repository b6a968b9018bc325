"""MPRNet (Zamir et al., CVPR 2021), matching the authors' published model exactly.

Module names, registration order and the one shared PReLU mirror the official
`MPRNet.py` (Deblurring/, Denoising/ and Deraining/ differ only in their
defaults), so `state_dict()` yields the official 316 keys in the official order
with the 54 alias keys of the PReLU (../shared/reference/MPRNET_SPEC.md §2, §6).

The multi-patch hierarchy (§5) runs stage 1 on four quarters and stage 2 on two
halves, each patch on its own: the authors loop over the patches, here they are
stacked along the batch axis, which is the same computation (every conv pads
and every attention pools per batch element) in one call instead of four.
The forward returns [stage-3 image, stage-2 image, stage-1 image]; inference
uses the first.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration import ConfiguredModel, constructor_config
from .model import ChannelAttention, ResidualGroup

#: H and W must be multiples of this: a split in halves, then two 0.5x resizes per patch.
MPRNET_SIZE_MULTIPLE = 8


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """The authors' `conv`: stride 1, zero padding k//2."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class CAB(nn.Module):
    """Channel attention block: conv, shared PReLU, conv, channel attention, plus the input.

    `CA` is assigned before `body`, as upstream, so its keys come first in the state_dict.
    """

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.PReLU):
        super().__init__()
        self.CA = ChannelAttention(n_feat, reduction, bias=bias)
        self.body = nn.Sequential(
            conv(n_feat, n_feat, kernel_size, bias=bias), act, conv(n_feat, n_feat, kernel_size, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CA(self.body(x)) + x


class Resample(nn.Module):
    """Bilinear resize (align_corners False, no antialias) **then** a bias-free 1x1 conv.

    Upstream's DownSample (x0.5, C -> C+s) and UpSample (x2, C+s -> C); the key is `up.1` or `down.1`.
    """

    def __init__(self, name: str, in_channels: int, out_channels: int, scale: float):
        super().__init__()
        self.name = name
        layers = nn.Sequential(
            nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False),
        )
        self.add_module(name, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.name)(x)


def down_sample(in_channels: int, s_factor: int) -> Resample:
    return Resample("down", in_channels, in_channels + s_factor, 0.5)


def up_sample(in_channels: int, s_factor: int) -> Resample:
    return Resample("up", in_channels + s_factor, in_channels, 2.0)


class SAM(nn.Module):
    """Supervised attention: an image estimate conv2(x) + x_img, whose sigmoid gates conv1(x)."""

    def __init__(self, n_feat: int, kernel_size: int, bias: bool):
        super().__init__()
        self.conv1 = conv(n_feat, n_feat, kernel_size, bias=bias)
        self.conv2 = conv(n_feat, 3, kernel_size, bias=bias)
        self.conv3 = conv(3, n_feat, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.conv2(x) + x_img
        return self.conv1(x) * torch.sigmoid(self.conv3(img)) + x, img


def _cabs(count: int, channels: int, config: MPRNetConfig, act: nn.PReLU) -> list[nn.Module]:
    return [CAB(channels, config.kernel_size, config.reduction, config.bias, act) for _ in range(count)]


class Encoder(nn.Module):
    """Three U-Net levels of 2 CABs at n, n+s, n+2s channels; stage 2 adds cross-stage fusion (CSFF)."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU, csff: bool):
        super().__init__()
        n, s = config.n_feat, config.scale_unetfeats
        widths = (n, n + s, n + 2 * s)
        self.encoder_level1, self.encoder_level2, self.encoder_level3 = (
            nn.Sequential(*_cabs(2, c, config, act)) for c in widths
        )
        self.down12 = down_sample(n, s)
        self.down23 = down_sample(n + s, s)
        self.csff = csff
        if csff:
            for kind in ("enc", "dec"):
                for level, c in enumerate(widths, start=1):
                    self.add_module(f"csff_{kind}{level}", nn.Conv2d(c, c, kernel_size=1, bias=config.bias))

    def _level(self, level: int, x: torch.Tensor, encoder_outs: list[torch.Tensor] | None,
               decoder_outs: list[torch.Tensor] | None) -> torch.Tensor:
        out = getattr(self, f"encoder_level{level}")(x)
        if self.csff and encoder_outs is not None and decoder_outs is not None:
            out = (out + getattr(self, f"csff_enc{level}")(encoder_outs[level - 1])
                   + getattr(self, f"csff_dec{level}")(decoder_outs[level - 1]))
        return out

    def forward(self, x: torch.Tensor, encoder_outs: list[torch.Tensor] | None = None,
                decoder_outs: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        enc1 = self._level(1, x, encoder_outs, decoder_outs)
        enc2 = self._level(2, self.down12(enc1), encoder_outs, decoder_outs)
        enc3 = self._level(3, self.down23(enc2), encoder_outs, decoder_outs)
        return [enc1, enc2, enc3]


class Decoder(nn.Module):
    """U-Net decoder: each level adds the upsampled lower level to its skip, which passes a CAB."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        n, s = config.n_feat, config.scale_unetfeats
        self.decoder_level1, self.decoder_level2, self.decoder_level3 = (
            nn.Sequential(*_cabs(2, c, config, act)) for c in (n, n + s, n + 2 * s)
        )
        self.skip_attn1 = CAB(n, config.kernel_size, config.reduction, config.bias, act)
        self.skip_attn2 = CAB(n + s, config.kernel_size, config.reduction, config.bias, act)
        self.up21 = up_sample(n, s)
        self.up32 = up_sample(n + s, s)

    def forward(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3) + self.skip_attn2(enc2))
        dec1 = self.decoder_level1(self.up21(dec2) + self.skip_attn1(enc1))
        return [dec1, dec2, dec3]


class ORSNet(nn.Module):
    """Stage 3 at full resolution: three ORBs, each followed by the stage-2 encoder/decoder features."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        n, s, o = config.n_feat, config.scale_unetfeats, config.scale_orsnetfeats
        for index in (1, 2, 3):  # ORB = num_cab CABs, a 3x3 conv that is never biased, plus the input
            self.add_module(f"orb{index}", ResidualGroup(
                _cabs(config.num_cab, n + o, config, act), n + o, config.kernel_size))
        self.up_enc1 = up_sample(n, s)
        self.up_dec1 = up_sample(n, s)
        self.up_enc2 = nn.Sequential(up_sample(n + s, s), up_sample(n, s))
        self.up_dec2 = nn.Sequential(up_sample(n + s, s), up_sample(n, s))
        for kind in ("enc", "dec"):
            for index in (1, 2, 3):
                self.add_module(f"conv_{kind}{index}", nn.Conv2d(n, n + o, kernel_size=1, bias=config.bias))

    def forward(self, x: torch.Tensor, encoder_outs: list[torch.Tensor],
                decoder_outs: list[torch.Tensor]) -> torch.Tensor:
        x = self.orb1(x) + self.conv_enc1(encoder_outs[0]) + self.conv_dec1(decoder_outs[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(encoder_outs[1])) + self.conv_dec2(
            self.up_dec1(decoder_outs[1]))
        return self.orb3(x) + self.conv_enc3(self.up_enc2(encoder_outs[2])) + self.conv_dec3(
            self.up_dec2(decoder_outs[2]))


def patches_to_batch(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Cut spatial `dim` at int(size/2) and stack the two parts along the batch: [first; second]."""
    half = x.shape[dim] // 2
    return torch.cat([x.narrow(dim, 0, half), x.narrow(dim, half, x.shape[dim] - half)], dim=0)


def batch_to_patches(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of `patches_to_batch`: the batch's two halves side by side along `dim`."""
    n = x.shape[0] // 2
    return torch.cat([x[:n], x[n:]], dim=dim)


class MPRNet(ConfiguredModel):
    """MPRNet with the official constructor. Returns [stage 3, stage 2, stage 1]; no clamp inside.

    The U-Net levels have n_feat, n_feat + s, n_feat + 2s channels (s = scale_unetfeats),
    stage 3 works at n_feat + scale_orsnetfeats; each ORB has num_cab CABs; every channel
    attention squeezes C to C // reduction. Defaults: the deblurring file's.
    """

    def __init__(self, in_c: int = 3, out_c: int = 3, n_feat: int = 96, scale_unetfeats: int = 48,
                 scale_orsnetfeats: int = 32, num_cab: int = 8, kernel_size: int = 3, reduction: int = 4,
                 bias: bool = False):
        super().__init__()
        self.config = config = MPRNetConfig(in_c, out_c, n_feat, scale_unetfeats, scale_orsnetfeats, num_cab,
                                            kernel_size, reduction, bias)
        # One PReLU for every CAB of this model, registered only under the CABs' keys (official layout).
        act = nn.PReLU()
        for index in (1, 2, 3):
            self.add_module(f"shallow_feat{index}", nn.Sequential(
                conv(in_c, n_feat, kernel_size, bias=bias), CAB(n_feat, kernel_size, reduction, bias, act)))
        self.stage1_encoder = Encoder(config, act, csff=False)
        self.stage1_decoder = Decoder(config, act)
        self.stage2_encoder = Encoder(config, act, csff=True)
        self.stage2_decoder = Decoder(config, act)
        self.stage3_orsnet = ORSNet(config, act)
        self.sam12 = SAM(n_feat, kernel_size=1, bias=bias)
        self.sam23 = SAM(n_feat, kernel_size=1, bias=bias)
        self.concat12 = conv(n_feat * 2, n_feat, kernel_size, bias=bias)
        self.concat23 = conv(n_feat * 2, n_feat + scale_orsnetfeats, kernel_size, bias=bias)
        self.tail = conv(n_feat + scale_orsnetfeats, out_c, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        halves = patches_to_batch(x, 2)  # [top; bottom]
        quarters = patches_to_batch(halves, 3)  # [top-left; bottom-left; top-right; bottom-right]
        # Stage 1: encoder per quarter, decoder per half (left|right joined along the width).
        feat1 = [batch_to_patches(f, 3) for f in self.stage1_encoder(self.shallow_feat1(quarters))]
        res1 = self.stage1_decoder(feat1)
        samfeats, stage1_img = self.sam12(res1[0], halves)
        # Stage 2: encoder per half with cross-stage fusion, decoder on the whole image.
        x2 = self.concat12(torch.cat([self.shallow_feat2(halves), samfeats], dim=1))
        feat2 = [batch_to_patches(f, 2) for f in self.stage2_encoder(x2, feat1, res1)]
        res2 = self.stage2_decoder(feat2)
        samfeats, stage2_img = self.sam23(res2[0], x)
        # Stage 3: full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x), samfeats], dim=1))
        stage3_img = self.tail(self.stage3_orsnet(x3, feat2, res2)) + x
        return [stage3_img, stage2_img, batch_to_patches(stage1_img, 2)]


#: MPRNet's constructor arguments as a frozen dataclass (`in_channels` = in_c, size multiple 8).
MPRNetConfig = constructor_config(
    MPRNet,
    in_channels=property(lambda config: config.in_c),
    out_channels=property(lambda config: config.out_c),
    size_multiple=property(lambda config: MPRNET_SIZE_MULTIPLE),
)

#: The released models are each `MPRNet.py`'s file defaults (MPRNET_SPEC.md §1).
MPRNET_PRESETS: dict[str, MPRNetConfig] = {
    # Deblurring/: GoPro, HIDE, RealBlur; 20,127,073 parameters.
    "deblur": MPRNetConfig(n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32),
    # Denoising/: SIDD, DND; 15,741,025 parameters.
    "denoise": MPRNetConfig(n_feat=80, scale_unetfeats=48, scale_orsnetfeats=32),
    # Deraining/: Rain100L/H, Test100, Test1200, Test2800; 3,637,249 parameters.
    "derain": MPRNetConfig(n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16),
    # Not released: the CPU demo size (same three stages, 2 CABs per ORB), trained by `make demo-weights`.
    "small": MPRNetConfig(n_feat=16, scale_unetfeats=8, scale_orsnetfeats=8, num_cab=2),
}
