"""The tasks each model family was made for, and every task a deployment verb takes.

Kept apart from the registry (which builds networks, so imports torch) so that click options
can list the tasks without importing torch. The registry's entries take their tasks from here.
"""

from __future__ import annotations

#: Family name -> its authors' tasks (MIRNet-v2's `defocus` is dual-pixel: a 6-channel input).
FAMILY_TASKS: dict[str, tuple[str, ...]] = {
    "mirnet": ("denoise", "enhance", "sr"),
    "mprnet": ("deblur", "denoise", "derain"),
    "mirnetv2": ("denoise", "enhance", "sr", "defocus"),
}
#: Every task of any family: the `--task` choices of the deployment verbs.
TASKS: tuple[str, ...] = tuple(dict.fromkeys(task for tasks in FAMILY_TASKS.values() for task in tasks))
#: The model families by name (`--arch` / `--model` choices), without importing the registry.
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILY_TASKS)
