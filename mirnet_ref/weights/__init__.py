"""The demo weights shipped with the package, one small model per (family, task) (`make demo-weights`)."""

from __future__ import annotations

from pathlib import Path

from mirnet_deploy.errors import UserError

WEIGHTS_DIR = Path(__file__).parent
#: (family, task) -> file name in WEIGHTS_DIR. MIRNet's files keep their original names.
DEMO_WEIGHTS: dict[tuple[str, str], str] = {
    ("mirnet", "denoise"): "denoise.pth",
    ("mirnet", "enhance"): "enhance.pth",
    ("mirnet", "sr"): "sr.pth",
    ("mprnet", "deblur"): "mprnet_deblur.pth",
    ("mirnetv2", "enhance"): "mirnetv2_enhance.pth",
}


def demo_family(task: str, model: str | None = None) -> str:
    """`model`, or the family whose demo weights do `task` (MIRNet's first, where several do)."""
    if model is not None:
        return model
    for family, demo_task in DEMO_WEIGHTS:
        if demo_task == task:
            return family
    shipped = ", ".join(f"{f} {t}" for f, t in DEMO_WEIGHTS)
    raise UserError(f"No demo weights are made for {task!r}: there are {shipped}. Pass --checkpoint.")


def demo_weights_path(task: str, model: str | None = None) -> Path:
    """Where the demo checkpoint of `model` (default: `demo_family(task)`) for `task` lives in the package."""
    model = demo_family(task, model)
    if (model, task) not in DEMO_WEIGHTS:
        shipped = ", ".join(f"{f} {t}" for f, t in DEMO_WEIGHTS)
        raise UserError(f"No demo weights are made for {model} {task!r}: there are {shipped}. "
                        "Pass --checkpoint.")
    return WEIGHTS_DIR / DEMO_WEIGHTS[model, task]


def default_weights(task: str, model: str | None = None) -> Path:
    """The demo checkpoint of `model` (default: `demo_family(task)`) for `task`, or a clear error
    saying how to make it."""
    path = demo_weights_path(task, model)
    if not path.is_file():
        raise UserError(f"No demo weights for {model} {task!r} at {path}: run `make demo-weights` "
                        "(about 20 minutes per model on 2 cores) or pass --checkpoint.")
    return path
