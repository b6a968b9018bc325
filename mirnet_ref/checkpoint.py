"""Official MIRNet checkpoints: load them as they are, infer the architecture, save the same format.

The authors' training script saves `{'epoch', 'state_dict', 'optimizer'}` with
keys that may carry DataParallel's `module.` prefix; the state dict holds every
alias of a shared module (DAU columns, the model-wide PReLU) and the fixed
`filt` blur buffers. We accept that, a bare state dict, and BasicSR's
`{'params': ...}`, check that aliases agree and blur buffers hold the fixed
kernel, and fail with a short message naming the offending keys otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mirnet_deploy.atomic import atomic_write_bytes
from mirnet_deploy.errors import CheckpointError

from .model import MIRNetConfig, blur_kernel

StateDict = dict[str, torch.Tensor]

#: Container keys under which known training scripts store the weights.
WRAPPER_KEYS = ("state_dict", "params", "params_ema", "model")
#: How many offending keys an error message lists before "and N more".
MAX_LISTED = 3


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint file safely (`weights_only=True`) and return its bare state dict.

    Every way the file can fail to load is one CheckpointError naming it; tensors holding NaN or
    infinity are refused too, since every output of such a model would be NaN.
    """
    return read_checkpoint(path)[0]


def load_payload(path: str | os.PathLike) -> Any:
    """The checkpoint file's object, tensors only (`weights_only`), or one clear CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist or is not a file.")
    try:
        with warnings.catch_warnings():  # its pickle-protocol warning is noise before our own error
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler raises IndexError, KeyError, ... on junk
        raise CheckpointError(
            f"Checkpoint {path} could not be read: {_load_failure(path, error)}. Re-download or re-save it."
        ) from None


def read_checkpoint(path: str | os.PathLike) -> tuple[StateDict, str | None]:
    """The checkpoint's bare state dict (as `read_state_dict`) and the task it records, if any."""
    obj = load_payload(path)
    state = unwrap_state_dict(obj, source=str(path))
    nonfinite = [key for key, tensor in state.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if nonfinite:
        raise CheckpointError(f"Checkpoint {path} holds NaN or infinite values in {len(nonfinite)} of its "
                              f"{len(state)} tensors "
                              f"({_listing(nonfinite)}): training diverged or the file was damaged. Use an "
                              "earlier checkpoint.")
    return state, recorded_task(obj)


def recorded_task(payload: Any) -> str | None:
    """The task a checkpoint says it was trained for: `mirnet train --publish` stores `task`, the run's
    own checkpoints their `train_config`; the authors' checkpoints store none (None)."""
    if not isinstance(payload, Mapping):
        return None
    if isinstance(payload.get("task"), str):
        return payload["task"]
    try:
        task = json.loads(payload["train_config"])["task"]
    except (KeyError, TypeError, ValueError):
        return None
    return task if isinstance(task, str) else None


def _load_failure(path: Path, error: Exception) -> str:
    """One sentence of ours for torch.load's failures (its own messages run to a paragraph)."""
    if isinstance(error, OSError) and not isinstance(error, zipfile.BadZipFile):
        return f"{error.strerror or error}"
    if path.stat().st_size == 0:
        return "the file is empty"
    refused = re.search(r"GLOBAL (\S+)", str(error))
    if refused:
        return (f"it holds a Python object ({refused.group(1)}) besides tensors, which would run code when "
                "loaded; it was refused without running (only tensors, dicts and numbers are loaded)")
    if isinstance(error, (EOFError, zipfile.BadZipFile)) or "failed finding central directory" in str(error):
        return "the file is truncated or corrupt (its zip or pickle data ends early)"
    return "it is not a PyTorch checkpoint (neither a zip archive nor a pickle of tensors)"


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> StateDict:
    """Find the tensors in a checkpoint object and strip DataParallel's `module.` prefix."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source} holds no state dict: expected {{'state_dict': {{...}}}}, "
            "{'params': {...}} or a bare dict of tensors."
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source} holds a dict without tensors: it is not a model checkpoint.")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _indices(state: StateDict, pattern: str) -> set[int]:
    regex = re.compile(pattern)
    return {int(m.group(1)) for k in state if (m := regex.match(k))}


def infer_config(state: StateDict) -> MIRNetConfig:
    """Architecture from tensor names and shapes (conv_in gives n_feat/channels/kernel)."""
    conv_in = state.get("conv_in.weight")
    conv_out = state.get("conv_out.weight")
    if conv_in is None or conv_out is None or conv_in.dim() != 4 or conv_out.dim() != 4:
        found = [k for k in state if k.startswith(("conv_in", "conv_out"))]
        raise CheckpointError(
            "Not a MIRNet checkpoint: no 4-D 'conv_in.weight' and 'conv_out.weight' "
            f"(found {len(state)} tensors, first keys: {_listing(list(state))}"
            + (f"; conv keys: {_listing(found)}" if found else "")
            + ")."
        )
    n_feat, in_channels, kernel_size, _ = conv_in.shape
    rrgs = _indices(state, r"body\.(\d+)\.body\.\d+\.blocks\.")
    msrbs = _indices(state, r"body\.0\.body\.(\d+)\.blocks\.")
    rows = _indices(state, r"body\.0\.body\.0\.blocks\.(\d+)\.")
    columns = _indices(state, r"body\.0\.body\.0\.blocks\.0\.(\d+)\.")
    if not (rrgs and msrbs and rows and columns):
        raise CheckpointError(
            "Not a MIRNet (v1) checkpoint: it has conv_in/conv_out but no "
            "'body.R.body.M.blocks.J.I.*' dual-attention units "
            f"(first keys: {_listing(list(state))})."
        )
    return MIRNetConfig(
        in_channels=int(in_channels),
        out_channels=int(conv_out.shape[0]),
        n_feat=int(n_feat),
        kernel_size=int(kernel_size),
        n_RRG=max(rrgs) + 1,
        n_MSRB=max(msrbs) + 1,
        height=max(rows) + 1,
        width=max(columns) + 1,
        bias="conv_in.bias" in state,
    )


def _config_text(config: MIRNetConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.as_dict().items())


def _alias_groups(model: nn.Module) -> dict[str, str]:
    """Every state_dict key that shares its tensor with an earlier key -> that first key."""
    first_key_of: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        ident = id(tensor)
        if ident in first_key_of:
            aliases[key] = first_key_of[ident]
        else:
            first_key_of[ident] = key
    return aliases


def check_state_dict(model: nn.Module, state: StateDict, contradictions: str = "") -> None:
    """Raise CheckpointError unless `state` fits `model` key for key and shape for shape.

    Alias keys and `filt` buffers may be absent (our model supplies them); when
    present, aliases must equal their first key and buffers the fixed kernel.
    """
    expected = model.state_dict()
    aliases = _alias_groups(model)
    required = [k for k in expected if k not in aliases and not k.endswith(".filt")]
    missing = [k for k in required if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatches: {_listing(wrong_shape)}")
        if contradictions:
            raise CheckpointError(
                f"{contradictions}; drop the explicit argument to use the architecture inferred "
                "from the file. Offending tensors: " + "; ".join(problems) + "."
            )
        raise CheckpointError(
            f"Checkpoint does not fit {type(model).__name__}("
            + _config_text(model.config)
            + "): "
            + "; ".join(problems)
            + f". It is not a {type(model).__name__} checkpoint of this architecture."
        )
    for key, first in aliases.items():
        if key in state and first in state and not torch.equal(state[key], state[first]):
            diff = (state[key].double() - state[first].double()).abs().max().item()
            raise CheckpointError(
                f"Aliased key {key} disagrees with {first} (max |difference| {diff:.3g}): in "
                f"{type(model).__name__} they are one shared tensor, so this checkpoint was edited or "
                "not saved from it."
            )
    for key, value in state.items():
        if key.endswith(".filt"):
            fixed = blur_kernel(value.shape[0])
            if value.shape != fixed.shape or not torch.allclose(value.float(), fixed, atol=1e-7):
                raise CheckpointError(
                    f"Blur buffer {key} does not hold the fixed [1,2,1]x[1,2,1]/16 kernel: "
                    "the checkpoint was modified or is not from MIRNet."
                )


def model_from_state_dict(state: StateDict, arch: str | None = None, **explicit: Any) -> nn.Module:
    """Recognise the family (registry), build it with the inferred architecture (explicit
    arguments win; an explicit `arch` must match the tensors) and load `state`."""
    # Imported here: the registry sits above this module (it names `infer_config`).
    from .registry import check_arguments, recognise

    explicit = {k: v for k, v in explicit.items() if v is not None}
    family = recognise(state, arch)
    check_arguments(family, explicit)
    inferred = family.infer_config(state).as_dict()
    contradictions = "; ".join(
        f"Explicit {k}={v!r} contradicts the checkpoint, whose tensors give {k}={inferred[k]!r}"
        for k, v in explicit.items()
        if inferred[k] != v
    )
    config = replace(family.infer_config(state), **explicit)
    try:
        model = family.build(config)
    except ValueError as error:
        raise CheckpointError(
            f"Invalid {family.title} configuration ({_config_text(config)}): {error}"
        ) from None
    check_state_dict(model, state, contradictions)
    complete = dict(model.state_dict())
    complete.update({k: v for k, v in state.items()})
    # Fill absent alias keys from their first key so every shared tensor gets one value.
    for key, first in _alias_groups(model).items():
        complete[key] = complete[first]
    model.load_state_dict(complete, strict=True)
    return model.eval()


def load_model(path: str | os.PathLike, arch: str | None = None, **explicit: Any) -> nn.Module:
    """Load an official-format (or bare, or `module.`-prefixed, or BasicSR) checkpoint of any
    registered family into a new model."""
    with naming_file(path):
        return model_from_state_dict(read_state_dict(path), arch, **explicit)


@contextlib.contextmanager
def naming_file(path: str | os.PathLike) -> Iterator[None]:
    """Prefix the file's name to a CheckpointError raised by checks that see only tensors."""
    try:
        yield
    except CheckpointError as error:
        if str(path) in str(error):
            raise
        raise CheckpointError(f"Checkpoint {path}: {error}") from None


def official_state_dict(model: nn.Module) -> StateDict:
    """All keys in the official order (797 for `full`), aliases included, detached on CPU."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Write `{'state_dict': ..., **extra}` atomically, loadable by the authors' code.

    Shared tensors are written once (torch keeps storage sharing), so aliases cost no space.
    """
    payload: dict[str, Any] = {"state_dict": official_state_dict(model)}
    payload.update(extra)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
