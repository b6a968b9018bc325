"""Reading an ONNX file that a user names: every failure of the protobuf parser or the file system
becomes one UserError naming the file, and a parse that holds no graph is refused too (random bytes
can parse as an empty protobuf message)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from mirnet_deploy.errors import UserError


def load_onnx(path: str | os.PathLike, *, load_external_data: bool = True) -> onnx.ModelProto:
    """The model in `path`, with at least one graph input and output, or a UserError that says why not."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX model {path} does not exist (no such file): export one first "
                        "(`mirnet export`).")
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except Exception as error:  # protobuf's DecodeError, OSError, onnx's ValueError/ValidationError flavours
        cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise UserError(
            f"{path} is not a readable ONNX model ({type(error).__name__}{': ' + cause if cause else ''}). "
            "Check that it is a complete .onnx file and that its external-data file (for example "
            "model.onnx.data), if any, lies next to it."
        ) from None
    if not model.HasField("graph") or not model.graph.input or not model.graph.output:
        raise UserError(f"{path} is not an ONNX model: it holds no graph with an input and an output "
                        "(truncated, or another kind of file). Re-export the model.")
    return model
