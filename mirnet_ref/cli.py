"""The reference stage's verbs: `mirnet info`, `mirnet train`, `mirnet eval`."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from mirnet_deploy.errors import UserError
from mirnet_deploy.resolutions import format_resolution, parse_resolutions

from .baselines import BASELINES
from .checkpoint import load_model, naming_file, read_state_dict, save_checkpoint
from .data_sources import LAYOUTS, evaluation_pairs, training_sampler, validation_pairs
from .degradations import TASK_KINDS, Degradation, channels_of, make_degradation, picture_of
from .images import from_tensor, to_tensor
from .inference import restore
from .metrics import naming_image, psnr, ssim
from .model_costs import describe
from .registry import (
    FAMILIES,
    ModelConfig,
    ModelFamily,
    check_arguments,
    family_named,
    family_of_config,
    recognise,
)
from .train import TrainConfig, Trainer
from .weights import default_weights


def _info_source(source: str, model: str | None) -> tuple[ModelConfig, str]:
    """A preset of the `--model` family (MIRNet when not given), or a checkpoint of any family."""
    presets = family_named(model or "mirnet").presets
    if source in presets and not Path(source).is_file():
        return presets[source], f"preset {source}"
    with naming_file(source):
        state = read_state_dict(source)
        return recognise(state, model).infer_config(state), f"checkpoint {Path(source).name}"


@click.command()
@click.argument("source")
@click.option("--model", type=click.Choice(sorted(FAMILIES)),
              help="Model family of a preset name [mirnet]; for a checkpoint, the family it must hold.")
@click.option(
    "--res",
    "res",
    default="256,1080p",
    show_default=True,
    help="Resolutions: 256, 512, 480p, 720p, 1080p, 1440p, 4k or WxH, comma-separated.",
)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def info(source: str, model: str | None, res: str, batch: int, as_json: bool) -> None:
    """Show the family, architecture, parameters and multiply-accumulates of SOURCE.

    SOURCE is a preset name of the --model family (MIRNet: full, small; MPRNet:
    deblur, denoise, derain; MIRNet-v2: denoise, enhance, sr_x2, sr_x3, sr_x4,
    defocus) or a checkpoint file of any family (official format, BasicSR
    `params`, bare state dict, with or without `module.` prefixes): its family
    is recognised from its keys and its architecture inferred from its tensors.

    \b
    Examples:
      mirnet info full --res 256,1080p
      mirnet info deblur --model mprnet
      mirnet info model_deblurring.pth --res 4k --json
    """
    config, origin = _info_source(source, model)
    result = {"source": origin, **describe(config, parse_resolutions(res), batch)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    family = family_named(result["family"])
    click.echo(f"{family.title} from {origin}")
    click.echo("  " + ", ".join(f"{k}={v}" for k, v in result["config"].items()))
    presets = ", ".join(result["presets"]) or "none (configuration inferred from the tensors)"
    click.echo(f"  official preset(s) with these tensors: {presets}")
    click.echo(f"  parameters: {result['parameters']:,} (deduplicated, as the authors count)")
    click.echo(f"  state_dict keys: {result['state_dict_keys']} (aliases and fixed buffers included)")
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


def task_degradation(task: str, sigma: float | None, scale: int) -> Degradation:
    """The task's synthetic degradation: `sigma` in 0-255 units for denoise, `scale` for sr."""
    if task == "denoise" and sigma is not None:
        return make_degradation(task, sigma=sigma / 255)
    if task == "sr":
        return make_degradation(task, scale=scale)
    return make_degradation(task)


def _model_config(family: ModelFamily, preset: str, overrides: dict) -> ModelConfig:
    overrides = {k: v for k, v in overrides.items() if v is not None}
    check_arguments(family, overrides)
    return replace(family.preset(preset), **overrides)


@click.command()
@click.option("--task", type=click.Choice(list(TASK_KINDS)), required=True)
@click.option("--model", "family_name", type=click.Choice(sorted(FAMILIES)), default="mirnet",
              show_default=True, help="Model family to train.")
@click.option("--preset", default="small", show_default=True,
              help="A preset of the --model family (every family has `small`, the CPU demo size).")
@click.option("--n-feat", type=int, help="Override the preset's n_feat.")
@click.option("--n-rrg", "n_RRG", type=int, help="Override the preset's n_RRG (MIRNet).")
@click.option("--n-msrb", "n_MSRB", type=int, help="Override the preset's n_MSRB (MIRNet).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Training folder (default: the built-in training photographs).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="clean", show_default=True,
              help="How --data is organised: clean images to degrade, or a paired layout.")
@click.option("--val-data", type=click.Path(exists=True, file_okay=False),
              help="Validation folder, same layout (default: the built-in validation photographs, "
                   "disjoint from the training and the held-out ones).")
@click.option("--sigma", type=float, help="denoise: Gaussian noise sigma in 0-255 units [25].")
@click.option("--scale", type=click.IntRange(2, 4), default=4, show_default=True, help="sr: scale.")
@click.option("--iterations", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--patch-size", type=click.IntRange(min=8), default=128, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Peak learning rate.")
@click.option("--warmup", type=click.IntRange(min=1), default=100, show_default=True,
              help="Linear warm-up iterations before cosine annealing to 1e-6.")
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--mixup/--no-mixup", default=True, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", type=click.Path(file_okay=False), required=True,
              help="Run folder: model_best.pth, model_latest.pth, train_log.jsonl.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/model_latest.pth.")
@click.option("--publish", type=click.Path(dir_okay=False),
              help="At the end, write the best weights (official format, no optimizer) here.")
@click.option("--threads", type=click.IntRange(min=1),
              help="PyTorch CPU threads (on busy shared cores 1 wastes no time spin-waiting).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(task: str, family_name: str, preset: str, n_feat: int | None, n_RRG: int | None, n_MSRB: int | None,
          data: str | None, layout: str, val_data: str | None, sigma: float | None, scale: int,
          iterations: int, batch_size: int, patch_size: int, lr: float, warmup: int, val_every: int,
          mixup: bool, seed: int, output: str, resume: bool, publish: str | None, threads: int | None,
          quiet: bool) -> None:
    """Train a model of any family for TASK the authors' way (Charbonnier on every output the
    family returns, plus MPRNet's edge loss for deblur/derain; Adam, warm-up + cosine, dihedral
    augmentation, mixup), iteration-based, validated every --val-every iterations.

    \b
    Examples:
      mirnet train --task denoise --output runs/denoise
      mirnet train --model mprnet --task deblur --output runs/mprnet-deblur
      mirnet train --task denoise --data SIDD_Medium_Srgb --layout sidd --preset full \\
          --val-data SIDD_val --layout sidd --output runs/sidd --iterations 700000
      mirnet train --task denoise --output runs/denoise --resume
    """
    if threads:
        torch.set_num_threads(threads)
    family = family_named(family_name)
    family.check_task(task)
    degradation = task_degradation(task, sigma, scale)
    model = _model_config(family, preset, {"n_feat": n_feat, "n_RRG": n_RRG, "n_MSRB": n_MSRB})
    if model.in_channels != channels_of(degradation):
        fitting = [name for name, c in family.presets.items() if c.in_channels == channels_of(degradation)]
        raise UserError(f"{task} inputs have {channels_of(degradation)} channels, but the {family.title} "
                        f"preset {preset} takes {model.in_channels}: choose --preset "
                        f"{' or '.join(fitting) or '(none of this family fits)'}.")
    config = TrainConfig(task=task, model=model.as_dict(), family=family.name, iterations=iterations,
                         batch_size=batch_size, patch_size=patch_size, lr=lr, warmup=warmup, mixup=mixup,
                         val_every=val_every, seed=seed,
                         edge_loss_weight=family.edge_loss_weight.get(task, 0.0))
    sampler = training_sampler(degradation, folder=data, layout=layout, scale=scale,
                               patch_size=patch_size, batch_size=batch_size, seed=seed)
    validation = [(p.name, p.input, p.target)
                  for p in validation_pairs(degradation, val_data, layout, scale)]
    trainer = Trainer(config, sampler.batch, validation, output)
    if resume:
        trainer.resume(trainer.latest_path)
        click.echo(f"Resuming at iteration {trainer.iteration} (best PSNR {trainer.best_psnr:.2f} dB)")
    start = trainer.iteration
    scores = trainer.run(progress=not quiet)
    if trainer.iteration == start:  # a resumed run that had already finished: nothing was validated
        click.echo(f"Nothing left to train: the run is at iteration {start} of {iterations}; best "
                   f"{scores['best_psnr']:.2f} dB; checkpoints in {output}")
    else:
        click.echo(f"Done: validation PSNR {scores['psnr']:.2f} dB, best {scores['best_psnr']:.2f} dB; "
                   f"checkpoints in {output}")
    if publish:
        best = load_model(trainer.best_path)
        save_checkpoint(best, publish, task=task, degradation=json.dumps(degradation.describe()),
                        train_config=json.dumps(asdict(config)), best_psnr=scores["best_psnr"])
        click.echo(f"Published the best weights to {publish}")


def _known_facts(degradation: Degradation, clean: np.ndarray) -> dict:
    """What the baselines may know: the true noise sigma, the clean image (oracle best cases);
    synthetic pairs add their own facts (the blur kernel)."""
    return {"sigma": getattr(degradation, "sigma", 0.0), "target_mean": float(clean.mean()), "clean": clean}


@click.command(name="eval")
@click.option("--task", type=click.Choice(list(TASK_KINDS)), required=True)
@click.option("--model", "family_name", type=click.Choice(sorted(FAMILIES)),
              help="Family whose demo weights to score [mirnet]; with --checkpoint, the family it must hold.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Checkpoint of any family to score (default: the family's demo weights for the task).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Folder to score (default: the built-in held-out photographs, degraded, seed 2020).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="clean", show_default=True)
@click.option("--sigma", type=float, help="denoise: Gaussian noise sigma in 0-255 units [25].")
@click.option("--scale", type=click.IntRange(2, 4), default=4, show_default=True, help="sr: scale.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also score the classical baselines (NLM, gamma, CLAHE, bicubic, Wiener and "
                   "Richardson-Lucy with the true kernel or defocus disk), each in its oracle best case.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_command(task: str, family_name: str | None, checkpoint: str | None, data: str | None,
                     layout: str, sigma: float | None, scale: int, baselines: bool, as_json: bool) -> None:
    """Score a model on paired images: PSNR/SSIM per image and the mean.

    Denoise, enhance, deblur, derain and defocus are scored on RGB (the authors' SIDD/LOL/GoPro/
    DPDD protocol); sr on the Y channel (MATLAB rgb2ycbcr) with a border of `scale` pixels
    cropped, as BasicSR and the MIRNet-v2 evaluation do. Defocus inputs are dual-pixel views
    (6 channels): the "input" column and the baselines take the photograph they make together
    (the views' mean).

    \b
    Examples:
      mirnet eval --task denoise
      mirnet eval --model mprnet --task deblur
      mirnet eval --task sr --checkpoint runs/sr/model_best.pth --json
      mirnet eval --task denoise --data SIDD_val --layout paired --no-baselines
      mirnet eval --task defocus --checkpoint runs/defocus/model_best.pth
    """
    degradation = task_degradation(task, sigma, scale)
    path = Path(checkpoint) if checkpoint else default_weights(task, family_name or "mirnet")
    model = load_model(path, family_name)
    family = family_of_config(model.config)
    family.check_task(task)
    metric = {"crop_border": scale, "y_channel": True} if task == "sr" else {}
    methods = BASELINES[task] if baselines else {}
    rows = []
    for pair in tqdm(evaluation_pairs(degradation, data, layout, scale), desc="eval", disable=as_json,
                     leave=False):
        restored = from_tensor(restore(model, to_tensor(pair.input)))
        known = {**_known_facts(degradation, pair.target), **pair.known}
        picture = picture_of(degradation, pair.input)
        scores = {"input": picture, family.name: restored}
        scores.update({name: method(picture, **known) for name, method in methods.items()})
        with naming_image(pair.name):
            rows.append({
                "name": pair.name,
                "size": format_resolution((pair.target.shape[1], pair.target.shape[0])),
                "psnr": {k: psnr(v, pair.target, **metric) for k, v in scores.items()},
                "ssim": {k: ssim(v, pair.target, **metric) for k, v in scores.items()},
            })
    columns = list(rows[0]["psnr"])
    mean = {kind: {c: float(np.mean([r[kind][c] for r in rows])) for c in columns}
            for kind in ("psnr", "ssim")}
    result = {"task": task, "checkpoint": str(path), "degradation": degradation.describe(),
              "metric": f"Y-channel, border crop {scale}" if task == "sr" else "RGB",
              "images": rows, "mean": mean}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{task}: {path.name} on {len(rows)} images, {result['metric']} PSNR (dB) / SSIM")
    click.echo(f"  {'image':<22}" + "".join(f"{c:>20}" for c in columns))
    for row in [*rows, {"name": "mean", **mean}]:
        cells = "".join(f"{row['psnr'][c]:>12.2f} / {row['ssim'][c]:.3f}" for c in columns)
        click.echo(f"  {row['name']:<22}{cells}")
