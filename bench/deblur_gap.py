"""Why the blind MPRNet deblur demo stays below deconvolution handed the true kernel: the demo's
recipe trained on ONE motion kernel, so that the network knows the kernel as the oracle does,
scored on the held-out photographs blurred by that kernel beside the oracles (Wiener and
Richardson-Lucy given the kernel, best setting per image) and the shipped blind demo.

    python -m bench.deblur_gap --length 9 --kernel-seed 1 --output runs/gap-9 --md gap-9.md
    python -m bench.deblur_gap --length 9 --kernel-seed 1 --augment --output runs/gap-9-aug

`--augment` keeps the training loader's dihedral transforms. They act after the blur, so they show
the network the kernel in 8 orientations: a first step from knowing the kernel towards blind.
The defaults are the recipe of `make demo-weights-mprnet_deblur` at half its iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from mirnet_deploy.atomic import check_writable
from mirnet_deploy.errors import UserError
from mirnet_ref.degradations import MotionBlur

from .report import publish_rows


@dataclass(frozen=True)
class FixedMotionBlur(MotionBlur):
    """`MotionBlur` that blurs every image with the one kernel `kernel_seed` draws (plus the usual
    fresh noise): the non-blind setting of the deblur task."""

    kernel_seed: int = 0

    def kernel(self, rng: np.random.Generator) -> np.ndarray:
        return super().kernel(np.random.default_rng(self.kernel_seed))


def gap_rows(length: float, kernel_seed: int, *, augment: bool, iterations: int, batch_size: int,
             patch_size: int, lr: float, warmup: int, val_every: int, seed: int, output: Path) -> list[dict]:
    """Train MPRNet `small` on the fixed kernel, then one row per held-out photograph and their mean."""
    from mirnet_ref.baselines import richardson_lucy_deconvolution, wiener_deconvolution
    from mirnet_ref.checkpoint import load_model
    from mirnet_ref.data_sources import EVAL_SEED
    from mirnet_ref.datasets import PatchSampler, builtin_images, synthesize_pairs
    from mirnet_ref.images import from_tensor, to_tensor
    from mirnet_ref.inference import restore
    from mirnet_ref.metrics import psnr
    from mirnet_ref.registry import family_named
    from mirnet_ref.train import TrainConfig, Trainer
    from mirnet_ref.weights import default_weights

    blur = FixedMotionBlur(length=(length, length), kernel_seed=kernel_seed)
    family = family_named("mprnet")
    config = TrainConfig(task="deblur", model=family.presets["small"].as_dict(), family="mprnet",
                         iterations=iterations, batch_size=batch_size, patch_size=patch_size, lr=lr,
                         warmup=warmup, mixup=False, val_every=val_every, seed=seed,
                         edge_loss_weight=family.edge_loss_weight["deblur"])
    sampler = PatchSampler.from_clean([pixels for _, pixels in builtin_images("train")], blur,
                                      patch_size=patch_size, batch_size=batch_size, seed=seed,
                                      augment=augment, as_torch=True)
    validation = [(p.name, p.input, p.target)
                  for p in synthesize_pairs(builtin_images("validation"), blur, EVAL_SEED)]
    trainer = Trainer(config, sampler.batch, validation, output)
    trainer.run(progress=False)
    methods = {
        "trained_on_kernel": load_model(trainer.best_path, "mprnet"),
        "blind_demo": load_model(default_weights("deblur", "mprnet"), "mprnet"),
    }
    rows = []
    for pair in synthesize_pairs(builtin_images("heldout"), blur, EVAL_SEED):
        restored = {"input": pair.input}
        for name, model in methods.items():
            restored[name] = from_tensor(restore(model, to_tensor(pair.input)))
        oracle = {"clean": pair.target, **pair.known}
        restored["wiener_true_kernel"] = wiener_deconvolution(pair.input, **oracle)
        restored["rl_true_kernel"] = richardson_lucy_deconvolution(pair.input, **oracle)
        rows.append({"image": pair.name, **{name: psnr(x, pair.target) for name, x in restored.items()}})
    columns = [key for key in rows[0] if key != "image"]
    rows.append({"image": "mean", **{c: float(np.mean([row[c] for row in rows])) for c in columns}})
    return [{"length": length, "kernel_seed": kernel_seed, "augment": augment, "iterations": iterations,
             "best_validation_psnr": trainer.best_psnr, **row} for row in rows]


def to_markdown(rows: list[dict]) -> str:
    lines = ["| kernel | dihedral augmentation | iterations | image | input | MPRNet `small` trained on the "
             "kernel | blind demo | Wiener, true kernel | Richardson-Lucy, true kernel |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['length']:g} px (seed {r['kernel_seed']}) | {'yes' if r['augment'] else 'no'} | "
                     f"{r['iterations']} | {r['image']} | {r['input']:.2f} | {r['trained_on_kernel']:.2f} | "
                     f"{r['blind_demo']:.2f} | {r['wiener_true_kernel']:.2f} | {r['rl_true_kernel']:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--length", type=float, default=9.0, show_default=True,
              help="Motion length of the kernel (pixels).")
@click.option("--kernel-seed", type=int, default=1, show_default=True, help="Seed of the one kernel drawn.")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Dihedral transforms in training (after the blur: the kernel in 8 orientations).")
@click.option("--iterations", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--patch-size", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="PyTorch threads (the demo recipe's one).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the run's checkpoints and train_log.jsonl.")
@click.option("--md", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON here.")
def main(length: float, kernel_seed: int, augment: bool, iterations: int, batch_size: int, patch_size: int,
         lr: float, warmup: int, val_every: int, seed: int, threads: int, output: Path, md: str | None,
         json_path: str | None) -> None:
    """Train the MPRNet deblur demo's recipe on one known kernel and score it against the oracles."""
    torch.set_num_threads(threads)
    try:
        check_writable(output, "--output", folder=True)  # before minutes of training, not after
        for path, option in ((md, "--md"), (json_path, "--json")):
            if path:
                check_writable(path, option)
        rows = gap_rows(length, kernel_seed, augment=augment, iterations=iterations, batch_size=batch_size,
                        patch_size=patch_size, lr=lr, warmup=warmup, val_every=val_every, seed=seed,
                        output=output)
        publish_rows(to_markdown(rows), rows, md, json_path)
    except UserError as error:  # a kernel length the kernel cannot hold, a path it cannot write: one line
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
