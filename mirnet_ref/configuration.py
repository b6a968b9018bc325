"""A model family's configuration: its authors' constructor arguments as a frozen dataclass.

Every family's model keeps its arguments as `self.config` (recorded in the ONNX
metadata, compared with what a checkpoint's tensors imply) and is rebuilt by
`Model.from_config(config)`.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, field, make_dataclass
from typing import Any

from torch import nn


class ConstructorArguments:
    """Mixin for the frozen dataclasses that hold a model's constructor arguments."""

    def as_dict(self) -> dict:
        """The arguments by name, for `Model(**config.as_dict())` and JSON."""
        return asdict(self)  # type: ignore[call-overload]


def constructor_config(model_class: type, **members: Any) -> type:
    """A frozen dataclass `<Model>Config` of `model_class.__init__`'s arguments and defaults.

    The authors' constructor signature is then the one statement of a configuration;
    `members` adds properties such as `in_channels` and `size_multiple`.
    """
    arguments = list(inspect.signature(model_class.__init__).parameters.values())[1:]
    return make_dataclass(
        f"{model_class.__name__}Config",
        [(a.name, a.annotation, field(default=a.default)) for a in arguments],
        bases=(ConstructorArguments,),
        namespace={"__module__": model_class.__module__, **members},
        frozen=True,
    )


class ConfiguredModel(nn.Module):
    """A network built from its authors' constructor arguments, kept as `self.config`."""

    config: Any

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config.as_dict())

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return self.config.size_multiple
