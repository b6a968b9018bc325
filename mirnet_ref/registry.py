"""The model families the toolkit deploys: one entry each, and recognising a checkpoint's family.

Every stage above the reference models asks this table instead of naming a
network: how to build a configuration, the presets, how a checkpoint's tensors
give the architecture, the size multiple the input is padded to, which output
of the forward inference uses, the tasks and the input channel count.

A checkpoint's family is recognised by its keys (each family has a signature
no other family's state dict carries); its configuration is then inferred from
tensor shapes. Checkpoint containers (`{'state_dict'}` with or without
`module.`, BasicSR's `{'params'}` / `{'params_ema'}`, a bare dict) are
unwrapped by `checkpoint.read_state_dict` for every family alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from mirnet_deploy.errors import CheckpointError, UserError

from .checkpoint import StateDict, infer_config
from .degradations import channels_of, make_degradation
from .mirnetv2 import DEFOCUS_TASK, MIRNETV2_PRESETS, ContextBlock, MIRNetV2, MIRNetV2Config
from .model import BlurDownsample, MIRNet, MIRNetConfig
from .mprnet import MPRNET_PRESETS, MPRNet, MPRNetConfig
from .presets import PRESETS as MIRNET_PRESETS
from .tasks import FAMILY_TASKS

#: Any family's configuration dataclass (each has `as_dict`, `in_channels`, `size_multiple`).
ModelConfig = Any
MacCounter = Callable[[nn.Module, torch.Tensor, torch.Tensor], int]


def _blur_macs(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    """MIRNet's fixed depthwise 3x3 blur: 9 MACs per output element."""
    return output.numel() * 9


def _context_macs(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    """MIRNet-v2's context pooling, a (C x HW) by (HW x 1) matrix product: C*H*W MACs per image."""
    return x.numel()


def _named(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise UserError(f"Unknown {what} {name!r}: choose one of {', '.join(table)}.")
    return table[name]


@dataclass(frozen=True)
class ModelFamily:
    """What a stage needs to know about one network family."""

    name: str  # the --model / --arch value
    title: str
    build: Callable[[ModelConfig], nn.Module]
    config_class: type
    presets: dict[str, ModelConfig]
    tasks: tuple[str, ...]
    #: A state dict belongs to the family when one of its keys matches this.
    signature: re.Pattern[str]
    infer_config: Callable[[StateDict], ModelConfig]
    #: Config fields the tensors do not determine (kept from a matching preset or the default).
    untracked_fields: tuple[str, ...] = ()
    #: Index of the forward's output that inference uses; None when the forward returns one tensor.
    #: Training supervises every output of a multi-output forward (`training_outputs`).
    output_index: int | None = None
    #: Weight of the authors' edge (Laplacian) Charbonnier loss per task, added per output.
    edge_loss_weight: dict[str, float] = field(default_factory=dict)
    #: MAC counters for the family's functional layers (complexity.count_macs `extra_counters`).
    mac_counters: dict[type, MacCounter] = field(default_factory=dict)
    #: Peak activation memory of one forward, in float32 feature maps of `n_feat` channels at the
    #: input's resolution: the ru_maxrss growth of a fresh process running one image (PyTorch CPU eager,
    #: 1 thread), rounded up. `mirnet infer` sizes its tiles with it.
    peak_feature_maps: float = 24.0

    def preset(self, name: str) -> ModelConfig:
        return _named(self.presets, name, f"{self.title} preset")

    def matching_presets(self, config: ModelConfig) -> list[str]:
        """The presets whose tensors `config` has (several when they differ only in untracked fields)."""
        def tracked(c: ModelConfig) -> dict:
            return {k: v for k, v in c.as_dict().items() if k not in self.untracked_fields}
        return [name for name, preset in self.presets.items() if tracked(preset) == tracked(config)]

    def check_task(self, task: str) -> None:
        """Refuse a task the family was not made for (its authors' tasks, MIRNet-v2's defocus aside)."""
        if task not in self.tasks:
            raise UserError(f"{self.title} does not do {task!r}: its tasks are {', '.join(self.tasks)}.")

    def recognises(self, state: StateDict) -> bool:
        return any(self.signature.match(key) for key in state)


def _count(state: StateDict, pattern: str) -> int:
    """1 + the largest integer captured by `pattern` over the keys (0 when none matches)."""
    regex = re.compile(pattern)
    return max((int(m.group(1)) + 1 for k in state if (m := regex.match(k))), default=0)


def _weight(state: StateDict, key: str) -> torch.Tensor:
    tensor = state.get(key)
    if tensor is None or tensor.dim() != 4:
        raise CheckpointError(f"The checkpoint has no 4-D {key!r}, which every model of its family has.")
    return tensor


def infer_mprnet_config(state: StateDict) -> MPRNetConfig:
    """MPRNet's constructor arguments from tensor shapes (MPRNET_SPEC.md §2-§3)."""
    n_feat, in_c, kernel_size, _ = _weight(state, "shallow_feat1.0.weight").shape
    unet = _weight(state, "stage1_encoder.down12.down.1.weight").shape[0] - n_feat
    orsnet = _weight(state, "concat23.weight").shape[0] - n_feat
    # The attention bottleneck is the floor C // reduction: keep the official 4 when it fits every CAB.
    bottlenecks = {(w.shape[1], w.shape[0]) for k, w in state.items() if k.endswith("CA.conv_du.0.weight")}
    fitting = [r for r in range(1, n_feat + 1) if all(c // r == d for c, d in bottlenecks)]
    return MPRNetConfig(
        in_c=int(in_c),
        out_c=int(_weight(state, "tail.weight").shape[0]),
        n_feat=int(n_feat),
        scale_unetfeats=int(unet),
        scale_orsnetfeats=int(orsnet),
        num_cab=_count(state, r"stage3_orsnet\.orb1\.body\.(\d+)\.") - 1,
        kernel_size=int(kernel_size),
        reduction=4 if 4 in fitting or not fitting else fitting[0],
        bias="shallow_feat1.0.bias" in state,
    )


def infer_mirnetv2_config(state: StateDict) -> MIRNetV2Config:
    """MIRNet-v2's constructor arguments from tensor shapes; 6 input channels mean the defocus task."""
    n_feat, inp_channels = _weight(state, "conv_in.weight").shape[:2]
    out_channels = _weight(state, "conv_out.weight").shape[0]
    mid = _weight(state, "body.0.body.0.dau_mid.body.0.weight").shape[0]
    default = MIRNetV2Config()
    return MIRNetV2Config(
        inp_channels=int(inp_channels),
        out_channels=int(out_channels),
        n_feat=int(n_feat),
        chan_factor=default.chan_factor if int(n_feat * default.chan_factor) == mid else mid / n_feat,
        n_MRB=_count(state, r"body\.0\.body\.(\d+)\.dau_top\."),
        bias="conv_in.bias" in state,
        task=DEFOCUS_TASK if inp_channels != out_channels else None,
    )


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            name="mirnet", title="MIRNet", build=MIRNet.from_config, config_class=MIRNetConfig,
            presets=MIRNET_PRESETS, tasks=FAMILY_TASKS["mirnet"],
            signature=re.compile(r"body\.\d+\.body\.\d+\.blocks\."), infer_config=infer_config,
            mac_counters={BlurDownsample: _blur_macs},
            peak_feature_maps=24,  # 23-24 for `small` at 256 and 512, 24 for `full` at 256
        ),
        ModelFamily(
            name="mprnet", title="MPRNet", build=MPRNet.from_config, config_class=MPRNetConfig,
            presets=MPRNET_PRESETS, tasks=FAMILY_TASKS["mprnet"],
            signature=re.compile(r"stage3_orsnet\."), infer_config=infer_mprnet_config,
            output_index=0, edge_loss_weight={"deblur": 0.05, "derain": 0.05},
            peak_feature_maps=35,  # 32.4 / 33.9 for `small` at 256 / 512
        ),
        ModelFamily(
            name="mirnetv2", title="MIRNet-v2", build=MIRNetV2.from_config, config_class=MIRNetV2Config,
            presets=MIRNETV2_PRESETS, tasks=FAMILY_TASKS["mirnetv2"],
            signature=re.compile(r"body\.\d+\.body\.\d+\.dau_top\."), infer_config=infer_mirnetv2_config,
            untracked_fields=("n_RRG", "height", "width", "scale"),
            mac_counters={ContextBlock: _context_macs},
            peak_feature_maps=20,  # 19.3 / 14.6 for `small` at 256 / 512
        ),
    )
}


def family_named(name: str) -> ModelFamily:
    return _named(FAMILIES, name, "model family")


def family_titled(title: str) -> ModelFamily | None:
    """The family an ONNX model's `model_name` metadata names (its title), or None."""
    return next((family for family in FAMILIES.values() if family.title == title), None)


def family_of_config(config: ModelConfig) -> ModelFamily:
    """The entry whose configuration class `config` is (a model's family: `family_of_config(m.config)`)."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_class):
            return family
    raise UserError(f"{type(config).__name__} is not the configuration of a registered model family.")


def recognise(state: StateDict, arch: str | None = None) -> ModelFamily:
    """The family whose signature the keys carry; an explicit `arch` must agree with it."""
    found = [family for family in FAMILIES.values() if family.recognises(state)]
    if len(found) != 1:
        first = ", ".join(list(state)[:3])
        raise CheckpointError(
            "Not a MIRNet checkpoint, nor an MPRNet or MIRNet-v2 one: "
            + ("its keys match none of their layouts" if not found else
               f"its keys mix the layouts of {' and '.join(f.title for f in found)}")
            + f" ({len(state)} tensors, first keys: {first})."
        )
    family = found[0]
    if arch is not None and family_named(arch) is not family:
        raise CheckpointError(
            f"Explicit model family {arch} (--arch/--model) contradicts the checkpoint, whose tensors "
            f"are {family.title}'s (keys like {next(k for k in state if family.signature.match(k))}); "
            "drop the option to use the family the file holds."
        )
    return family


def task_channels(task: str) -> int:
    """Input channels of a task's degraded images: 3 (RGB), 6 for dual-pixel defocus."""
    return channels_of(make_degradation(task))


def checkpoint_task(config: ModelConfig, recorded: str | None, explicit: str | None) -> str | None:
    """The task a checkpoint of `config` is run for, or None when nothing says which.

    `explicit` (a --task) must fit the network's input channels and agree with the task the
    checkpoint records (`checkpoint.recorded_task`); without it the recorded task counts, else the
    family's only task of that channel count (MIRNet-v2 with 6 input channels: defocus). The
    authors' 3-channel checkpoints record nothing and fit several tasks: None, and the network
    computes the same whatever it is called.
    """
    family = family_of_config(config)
    fitting = [task for task in family.tasks if task_channels(task) == config.in_channels]
    described = f"a {family.title} taking {config.in_channels} input channels"
    if explicit is not None and task_channels(explicit) != config.in_channels:
        hint = f"it does {' or '.join(fitting)}: pass --task {fitting[0]}" if fitting else "check the file"
        raise CheckpointError(f"--task {explicit} feeds {task_channels(explicit)}-channel inputs, but the "
                              f"checkpoint is {described}: {hint}, or omit --task to read it from the "
                              "checkpoint.")
    if explicit is not None and recorded is not None and explicit != recorded:
        raise CheckpointError(f"The checkpoint was trained for {recorded!r}, not {explicit!r}: omit --task "
                              f"(the checkpoint names its task) or pass a {explicit} checkpoint.")
    if recorded is not None and recorded not in fitting:
        raise CheckpointError(f"The checkpoint records the task {recorded!r}, which {described} does not "
                              f"do ({', '.join(fitting) or 'no task'} fits): the file was altered or "
                              "mislabelled; pass --task.")
    return explicit or recorded or (fitting[0] if len(fitting) == 1 else None)


def check_arguments(family: ModelFamily, explicit: dict[str, Any]) -> None:
    """Reject explicit constructor arguments the family does not have."""
    unknown = set(explicit) - {f.name for f in fields(family.config_class)}
    if unknown:
        raise CheckpointError(f"Unknown {family.title} arguments: {', '.join(sorted(unknown))}.")


class SelectedOutput(nn.Module):
    """A network whose forward returns several images, reduced to the one inference uses."""

    def __init__(self, network: nn.Module, index: int):
        super().__init__()
        self.network = network
        self.index = index

    @property
    def config(self) -> ModelConfig:
        """The network's configuration: runners read channels and the size multiple from it."""
        return self.network.config

    @property
    def size_multiple(self) -> int:
        return self.network.config.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[self.index]


def _family_of_model(model: nn.Module) -> ModelFamily | None:
    config = getattr(model, "config", None)
    return next((f for f in FAMILIES.values() if isinstance(config, f.config_class)), None)


def training_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every image `model`'s forward returns, which training supervises against the one target
    (MPRNet's authors sum the loss over its three stages, MPRNET_SPEC.md §10)."""
    family = _family_of_model(model)
    outputs = model(x)
    return [outputs] if family is None or family.output_index is None else list(outputs)


def inference_module(model: nn.Module) -> nn.Module:
    """`model` as inference (and export) runs it: one output tensor, e.g. MPRNet's final stage.

    Modules of no registered family are returned as they are.
    """
    family = _family_of_model(model)
    if family is None or family.output_index is None:
        return model
    return SelectedOutput(model, family.output_index)
