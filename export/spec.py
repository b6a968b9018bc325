"""What the pipeline needs to know about an image-to-image network, and nothing model-specific.

Past `mirnet_ref/`, every stage takes a network as an `nn.Module` plus a `ModelSpec`
(DESIGN.md): supporting another restoration network means writing its spec at the CLI
boundary, not changing export, calibration, engines or bench.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirnet_deploy.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """An image-to-image network: (N, in_channels, H, W) -> (N, out_channels, H*scale, W*scale).

    `size_multiple` is what H and W must be multiples of (the exported graph pads to it);
    `config` holds the constructor arguments, recorded in the ONNX metadata;
    `checkpoint_sha256` identifies the weights the network was loaded from.
    """

    name: str
    task: str
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    scale: int = 1
    config: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str = ""

    def __post_init__(self) -> None:
        counts = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "size_multiple": self.size_multiple,
            "scale": self.scale,
        }
        bad = [f"{key}={value!r}" for key, value in counts.items() if not isinstance(value, int) or value < 1]
        if bad:
            raise UserError(f"Invalid spec for {self.name!r}: {', '.join(bad)} (integers >= 1 expected).")

    def config_json(self) -> str:
        """The configuration as canonical JSON (sorted keys), as the metadata stores it."""
        return json.dumps(dict(self.config), sort_keys=True)
