"""Named model sizes. `full` is the authors' default; `small` is sized for CPU demos and tests."""

from __future__ import annotations

from mirnet_deploy.errors import UserError

from .model import MIRNet, MIRNetConfig

PRESETS: dict[str, MIRNetConfig] = {
    # The official default: 31,787,419 parameters, 479.4 G MACs at 256x256.
    "full": MIRNetConfig(),
    # Same topology (3 streams, 2 columns, mesh exchange), 1/4 of the channels and
    # 1/3 of the blocks: 663,615 parameters, 0.15 M MAC/pixel; trains on 2 CPU cores.
    "small": MIRNetConfig(n_feat=16, n_RRG=1, n_MSRB=2),
}


def preset_config(name: str) -> MIRNetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.") from None


def build_preset(name: str) -> MIRNet:
    return MIRNet.from_config(preset_config(name))
