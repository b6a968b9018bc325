"""Training the way the authors did (MIRNET_SPEC.md §9), iteration-based and resumable, for any family.

Charbonnier loss (eps 1e-3) on the clamped output, summed over every output the
registry's family returns (MPRNet's three stages, as its authors do), plus the
authors' edge loss where the family gives it a weight for the task (MPRNet
deblur/derain: 0.05); Adam (0.9, 0.999, eps 1e-8,
weight decay 1e-8); learning rate 2e-4 with a linear warm-up then cosine
annealing to 1e-6; random crops with the 8 dihedral transforms; optional
mixup (per-sample lambda ~ Beta(1.2, 1.2), from 10 % of the run on, as the
authors start it at epoch 6 of 60). Every batch is a pure function of
(seed, iteration), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mirnet_deploy.errors import UserError

from .checkpoint import load_payload, read_state_dict, save_checkpoint
from .inference import restore
from .metrics import naming_image, psnr, ssim
from .model import MIRNetConfig
from .registry import family_named, training_outputs
from .train_log import LOG_NAME, append_record

#: (degraded, clean) float32 NCHW tensors for one iteration.
Batch = tuple[torch.Tensor, torch.Tensor]
#: (name, degraded HxWx3, clean HxWx3) validation images.
ValidationPair = tuple[str, np.ndarray, np.ndarray]


@dataclass
class TrainConfig:
    """Everything that defines a run; saved inside every checkpoint for `--resume`."""

    task: str
    model: dict = field(default_factory=lambda: MIRNetConfig().as_dict())
    family: str = "mirnet"
    iterations: int = 2000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 2e-4
    lr_min: float = 1e-6
    warmup: int = 100
    mixup: bool = True
    val_every: int = 250
    seed: int = 0
    charbonnier_eps: float = 1e-3
    edge_loss_weight: float = 0.0


def charbonnier(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt(diff^2 + eps^2)), the authors' loss, computed on the clamped output."""
    diff = output.clamp(0.0, 1.0) - target
    return torch.sqrt(diff * diff + eps * eps).mean()


#: MPRNet's edge-loss smoothing: the 5-tap binomial-like kernel [.05 .25 .4 .25 .05], separable.
_EDGE_TAPS = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])


def _gauss(x: torch.Tensor) -> torch.Tensor:
    kernel = (_EDGE_TAPS[:, None] * _EDGE_TAPS[None, :]).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """One Laplacian-pyramid level as MPRNet's EdgeLoss computes it: x minus its blurred,
    2x decimated and re-expanded (zero-filled, x4, blurred again) self."""
    decimated = torch.zeros_like(x)
    decimated[..., ::2, ::2] = _gauss(x)[..., ::2, ::2] * 4
    return x - _gauss(decimated)


def edge_loss(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The authors' edge loss: Charbonnier between the Laplacians (MPRNET_SPEC.md §10)."""
    diff = laplacian(output) - laplacian(target)
    return torch.sqrt(diff * diff + eps * eps).mean()


def training_loss(model: nn.Module, degraded: torch.Tensor, clean: torch.Tensor,
                  config: TrainConfig) -> torch.Tensor:
    """Charbonnier (+ weighted edge loss) summed over every output the model's family returns."""
    total = degraded.new_zeros(())
    for output in training_outputs(model, degraded):
        total = total + charbonnier(output, clean, config.charbonnier_eps)
        if config.edge_loss_weight:
            total = total + config.edge_loss_weight * edge_loss(output, clean, config.charbonnier_eps)
    return total


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine from 1 to lr_min/lr over the remaining iterations."""
    if iteration < config.warmup:
        return (iteration + 1) / config.warmup
    span = max(config.iterations - config.warmup, 1)
    progress = min((iteration - config.warmup) / span, 1.0)
    floor = config.lr_min / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def mixup(degraded: torch.Tensor, clean: torch.Tensor, rng: np.random.Generator) -> Batch:
    """Blend each sample with a random partner, inputs and targets alike."""
    lam = torch.from_numpy(rng.beta(1.2, 1.2, size=(degraded.shape[0], 1, 1, 1)).astype(np.float32))
    partner = torch.from_numpy(rng.permutation(degraded.shape[0]))
    return (lam * degraded + (1 - lam) * degraded[partner], lam * clean + (1 - lam) * clean[partner])


def evaluate(model: nn.Module, pairs: Sequence[ValidationPair]) -> dict[str, float]:
    """Mean RGB PSNR/SSIM of the restored validation images (the authors' RGB protocol)."""
    model.eval()
    scores = []
    for name, degraded, clean in pairs:
        x = torch.from_numpy(np.ascontiguousarray(degraded.transpose(2, 0, 1)))
        restored = restore(model, x).numpy().transpose(1, 2, 0)
        with naming_image(name):
            scores.append((psnr(restored, clean), ssim(restored, clean)))
    model.train()
    return {"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))}


class Trainer:
    """Owns the model, optimizer and schedule; `run()` trains to `config.iterations`."""

    def __init__(self, config: TrainConfig, batches: Callable[[int], Batch],
                 validation: Sequence[ValidationPair], output_dir: str | Path):
        self.config = config
        self.batches = batches
        self.validation = validation
        self.output_dir = Path(output_dir)
        torch.manual_seed(config.seed)
        family = family_named(config.family)
        self.model = family.build(family.config_class(**config.model))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                          eps=1e-8, weight_decay=1e-8)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(it, config))
        self.iteration = 0
        self.best_psnr = -math.inf

    @property
    def latest_path(self) -> Path:
        return self.output_dir / "model_latest.pth"

    @property
    def best_path(self) -> Path:
        return self.output_dir / "model_best.pth"

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint this trainer wrote (same config, model, optimizer, schedule)."""
        payload = load_payload(path)
        if not isinstance(payload, dict) or "train_config" not in payload or "optimizer" not in payload:
            raise UserError(f"{path} has no training state: --resume needs a model_latest.pth written "
                            "by `mirnet train` (a bare or official checkpoint can only be fine-tuned).")
        saved = json.loads(payload["train_config"])
        before = (saved.get("family", "mirnet"), saved["task"], saved["model"])
        if before != (self.config.family, self.config.task, self.config.model):
            raise UserError(f"{path} was trained with {before[0]} {before[2]} for task {before[1]}, not "
                            f"{self.config.family} {self.config.model} for task {self.config.task}.")
        self.model.load_state_dict(read_state_dict(path))
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.iteration = int(payload["iteration"])
        self.best_psnr = float(payload["best_psnr"])

    def _save(self, path: Path) -> None:
        save_checkpoint(self.model, path, iteration=self.iteration, best_psnr=self.best_psnr,
                        optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                        train_config=json.dumps(asdict(self.config)))

    def _log(self, record: dict) -> None:
        append_record(self.output_dir / LOG_NAME, record)

    def _validate(self) -> dict[str, float]:
        scores = evaluate(self.model, self.validation)
        if scores["psnr"] > self.best_psnr:
            self.best_psnr = scores["psnr"]
            self._save(self.best_path)
        self._save(self.latest_path)
        self._log({"iteration": self.iteration, **{f"val_{k}": v for k, v in scores.items()},
                   "best_psnr": self.best_psnr})
        return scores

    def run(self, progress: bool = True) -> dict[str, float]:
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        mixup_from = config.iterations // 10
        bar = tqdm(total=config.iterations, initial=self.iteration, disable=not progress,
                   desc=f"train {config.task}", unit="it")
        scores = {"psnr": float("nan"), "ssim": float("nan")}
        window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
        while self.iteration < config.iterations:
            degraded, clean = self.batches(self.iteration)
            if config.mixup and self.iteration >= mixup_from:
                rng = np.random.default_rng([config.seed, self.iteration, 1])
                degraded, clean = mixup(degraded, clean, rng)
            loss = training_loss(self.model, degraded, clean, config)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.iteration += 1
            window_loss, window_count = window_loss + loss.item(), window_count + 1
            bar.update(1)
            if self.iteration % config.val_every == 0 or self.iteration == config.iterations:
                scores = self._validate()
                elapsed = time.perf_counter() - window_start
                self._log({"iteration": self.iteration, "loss": window_loss / window_count,
                           "lr": self.scheduler.get_last_lr()[0], "it_per_s": window_count / elapsed})
                window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
            bar.set_postfix(loss=f"{loss.item():.4f}", val_psnr=f"{scores['psnr']:.2f}")
        bar.close()
        return {**scores, "best_psnr": self.best_psnr}
