"""A checkpoint of any registered family as the pipeline sees it: one-output network plus `ModelSpec`.

This is where the model families (`mirnet_ref.registry`) meet the model-agnostic stages: the
registry says the channel counts, the size multiple and which output inference uses, and
every stage past here sees only an `nn.Module` and its spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import ModelSpec

#: The task label of a checkpoint that names no task and fits several (outputs `<stem>_restored.png`).
UNNAMED_TASK = "restored"

if TYPE_CHECKING:
    from torch import nn


def load_network(checkpoint: Path, task: str | None, arch: str | None = None,
                 fallback_task: str = UNNAMED_TASK) -> tuple[nn.Module, ModelSpec]:
    """A checkpoint of any registered family (recognised by its keys; `arch` must agree) as a network
    with one output (the one inference uses, e.g. MPRNet's final stage) and its spec.

    The spec's task is `task`, refused when it does not fit the checkpoint (registry.checkpoint_task);
    without `task`, the one the checkpoint records or implies; with neither (a 3-channel checkpoint
    that records none) `fallback_task`."""
    from mirnet_deploy.hashing import file_sha256
    from mirnet_ref.checkpoint import model_from_state_dict, naming_file, read_checkpoint
    from mirnet_ref.registry import checkpoint_task, inference_module

    with naming_file(checkpoint):
        state, recorded = read_checkpoint(checkpoint)
        model = model_from_state_dict(state, arch)
        task = checkpoint_task(model.config, recorded, task) or fallback_task
    return inference_module(model), spec_of(model.config, task, file_sha256(checkpoint))


def spec_of(config, task: str, checkpoint_sha256: str = "") -> ModelSpec:
    """The spec of a registered family's configuration: channels and size multiple from the registry."""
    from mirnet_ref.registry import family_of_config

    return ModelSpec(
        name=family_of_config(config).title,
        task=task,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        size_multiple=config.size_multiple,
        config=config.as_dict(),
        checkpoint_sha256=checkpoint_sha256,
    )
