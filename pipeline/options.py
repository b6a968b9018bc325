"""Click options the pipeline's verbs share: which weights to run (`--task`, `--checkpoint`, `--arch`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from export.cli import ARCH_HELP
from mirnet_ref.tasks import FAMILY_NAMES, TASKS

Command = TypeVar("Command", bound=Callable)


def weights_options(task_help: str, checkpoint_help: str) -> Callable[[Command], Command]:
    """`--task T`, `--checkpoint C` (an existing file) and `--arch F`, with each verb's own help for the
    first two (what the task means to it, what it does with the checkpoint)."""
    def decorate(command: Command) -> Command:
        for option in reversed((
            click.option("--task", type=click.Choice(TASKS), help=task_help),
            click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                         help=checkpoint_help),
            click.option("--arch", type=click.Choice(FAMILY_NAMES), help=ARCH_HELP),
        )):
            command = option(command)
        return command
    return decorate
