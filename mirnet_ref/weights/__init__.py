"""The demo weights shipped with the package, one small model per task (`make demo-weights`)."""

from __future__ import annotations

from pathlib import Path

from mirnet_deploy.errors import UserError

TASKS = ("denoise", "enhance", "sr")
WEIGHTS_DIR = Path(__file__).parent


def demo_weights_path(task: str) -> Path:
    """Where the demo checkpoint of `task` lives inside the installed package."""
    if task not in TASKS:
        raise UserError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
    return WEIGHTS_DIR / f"{task}.pth"


def default_weights(task: str) -> Path:
    """The task's demo checkpoint, or a clear error saying how to make it."""
    path = demo_weights_path(task)
    if not path.is_file():
        raise UserError(f"No demo weights for task {task!r} at {path}: run `make demo-weights` "
                        "(about 20 minutes per task on 2 cores) or pass --checkpoint.")
    return path
