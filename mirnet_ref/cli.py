"""`mirnet info`: what a checkpoint or preset is, and what it costs per resolution."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from mirnet_deploy.resolutions import format_resolution, parse_resolutions

from .checkpoint import infer_config, read_state_dict
from .complexity import count_macs, learned_macs
from .model import BlurDownsample, MIRNet, MIRNetConfig, count_parameters
from .presets import PRESETS, preset_config


def _blur_macs(module: BlurDownsample, x: torch.Tensor, output: torch.Tensor) -> int:
    """The fixed depthwise 3x3 blur: 9 MACs per output element."""
    return output.numel() * 9


def describe(config: MIRNetConfig, resolutions: list[tuple[int, int]], batch: int = 1) -> dict:
    """Configuration, parameter count and MACs per resolution, as plain data."""
    with torch.device("meta"):
        model = MIRNet.from_config(config)
        parameters = count_parameters(model)
        keys = len(model.state_dict())
    multiple = config.size_multiple
    costs = []
    for width, height in resolutions:
        padded_w, padded_h = -(-width // multiple) * multiple, -(-height // multiple) * multiple
        totals = count_macs(
            lambda: MIRNet.from_config(config),
            (batch, config.in_channels, padded_h, padded_w),
            {BlurDownsample: _blur_macs},
        )
        learned = learned_macs(totals)
        costs.append(
            {
                "resolution": format_resolution((width, height)),
                "padded": format_resolution((padded_w, padded_h)),
                "batch": batch,
                "gmacs": learned / 1e9,
                "gmacs_with_fixed_ops": sum(totals.values()) / 1e9,
                "macs_per_pixel": learned / (batch * width * height),
                "breakdown_gmacs": {k: v / 1e9 for k, v in sorted(totals.items())},
            }
        )
    return {
        "config": config.as_dict(),
        "parameters": parameters,
        "state_dict_keys": keys,
        "size_multiple": config.size_multiple,
        "macs": costs,
    }


@click.command()
@click.argument("source")
@click.option(
    "--res",
    "res",
    default="256,1080p",
    show_default=True,
    help="Resolutions: 256, 512, 480p, 720p, 1080p, 1440p, 4k or WxH, comma-separated.",
)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def info(source: str, res: str, batch: int, as_json: bool) -> None:
    """Show the architecture, parameters and multiply-accumulates of SOURCE.

    SOURCE is a preset name (full, small) or a checkpoint file (official format,
    bare state dict, with or without `module.` prefixes); a checkpoint's
    architecture is inferred from its tensors.

    \b
    Examples:
      mirnet info full --res 256,1080p
      mirnet info model_denoising.pth --res 4k --json
    """
    if source in PRESETS:
        config, origin = preset_config(source), f"preset {source}"
    else:
        config, origin = infer_config(read_state_dict(source)), f"checkpoint {Path(source).name}"
    result = {"source": origin, **describe(config, parse_resolutions(res), batch)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"MIRNet from {origin}")
    click.echo("  " + ", ".join(f"{k}={v}" for k, v in result["config"].items()))
    click.echo(f"  parameters: {result['parameters']:,} (deduplicated, as the authors count)")
    click.echo(f"  state_dict keys: {result['state_dict_keys']} (aliases and blur buffers included)")
    click.echo(f"  input H, W padded to a multiple of {result['size_multiple']}")
    click.echo(
        f"  {'resolution':>11} {'batch':>5} {'GMAC':>11} {'MAC/pixel':>11}  (learned convs; "
        "transposed convs per input pixel)"
    )
    for cost in result["macs"]:
        click.echo(
            f"  {cost['resolution']:>11} {cost['batch']:>5} {cost['gmacs']:>11.1f} "
            f"{cost['macs_per_pixel'] / 1e6:>10.2f}M"
        )
