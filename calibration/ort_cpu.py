"""How ONNX Runtime's CPU provider is asked to compute an INT8 Q/DQ model of each target.

The `cpu` target is made for ONNX Runtime's Q/DQ fusions (QLinearConv and friends): it runs as is.

The `tensorrt` target runs on ONNX Runtime's CPU provider only as an emulation of what TensorRT
computes (the mixed-precision search's evaluation, `bench.int8_report`, `mirnet parity` on a CPU).
ONNX Runtime fuses the Q/DQ pairs around an operator into its own INT8 kernel where it has one, and
some of those kernels lack the FP16 scales this target carries: ONNX Runtime 1.32 refuses
MPRNet's graph, whose patch merge (quantized map -> Slices -> Concat -> quantized) becomes a
`QLinearConcat` with float16 scales. With its Q/DQ transformations off
(`session.disable_quant_qdq`), ONNX Runtime computes the graph as ONNX defines it: DequantizeLinear,
the float operator, QuantizeLinear, the numbers TensorRT's fused INT8 kernels are specified to
reproduce. Every tensorrt-target graph is opened that way, not only those that fail to load, so one
semantics judges every model of the target (measured both ways on the denoise demo:
`python -m bench.tensorrt_emulation`, README "INT8").
"""

from __future__ import annotations

import os

import onnx
import onnxruntime as ort

from export.onnx_file import read_metadata
from export.onnx_read import load_onnx

#: The `precision` metadata `quantize_onnx` writes into a tensorrt-target model.
TENSORRT_PRECISION = "int8-tensorrt"
#: ONNX Runtime's session setting (kOrtSessionOptionsDisableQuantQDQ) that keeps Q/DQ pairs unfused.
DISABLE_QDQ_FUSION = "session.disable_quant_qdq"


def session_config(precision: str | None, *, qdq_fusion: bool | None = None) -> dict[str, str]:
    """ONNX Runtime session config entries that compute a model of `precision` (its metadata's) as its
    target does; `qdq_fusion` overrides the choice (to measure it: `bench.tensorrt_emulation`)."""
    fuse = precision != TENSORRT_PRECISION if qdq_fusion is None else qdq_fusion
    return {} if fuse else {DISABLE_QDQ_FUSION: "1"}


def apply_config(options: ort.SessionOptions, config: dict[str, str]) -> ort.SessionOptions:
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return options


def cpu_session(model: onnx.ModelProto | str | os.PathLike,
                threads: int | None = None) -> ort.InferenceSession:
    """A CPU session (fresh options: `threads` intra-op threads) computing `model` as its target does."""
    proto = model if isinstance(model, onnx.ModelProto) else load_onnx(model, load_external_data=False)
    options = apply_config(ort.SessionOptions(), session_config(read_metadata(proto).get("precision")))
    if threads:
        options.intra_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
