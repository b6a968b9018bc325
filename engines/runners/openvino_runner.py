"""OpenVINO runner: an engine from `mirnet build --backend openvino`, or an ONNX model compiled in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import openvino as ov

from mirnet_deploy.errors import UserError

from ..cache import describe_onnx
from ..manifest import check_manifest, load_manifest
from ..openvino_build import (
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_PRECISION,
    compile_properties,
    device_name,
    openvino_version,
)
from ..openvino_int8_check import check_int8_layout
from .base import Runner, TensorSpec, to_numpy


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), port.get_element_type().to_dtype().name, shape)


class LayerTime(NamedTuple):
    """One executed node of the last run, as OpenVINO's profiling reports it."""

    name: str
    node_type: str  # Convolution, Reorder, Multiply, ...
    exec_type: str  # the kernel: brgconv_avx512_f32, jit_avx512_amx_I8, ... ("undef": fused away)
    ms: float


class OpenVinoRunner(Runner):
    """Run an OpenVINO engine (`.ovblob` with its manifest, checked first) or an `.onnx` model.

    An engine is imported on the device and with the inference precision its manifest records;
    an ONNX model is compiled for `device` with the explicit f32 precision hint (never OpenVINO's
    silent BF16 default on CPUs that have it). `threads` caps OpenVINO's inference threads (None: its
    default, one per core), as it caps ONNX Runtime's, so that the two are compared on equal terms.
    `profile=True` turns on OpenVINO's per-node timing (`layer_times`), which costs a little per run:
    for profiling, not for benchmarks.
    """

    def __init__(self, path: str | os.PathLike, *, device: str = DEFAULT_DEVICE, name: str | None = None,
                 threads: int | None = None, profile: bool = False):
        path = Path(path)
        core = ov.Core()
        extra: dict[str, Any] = {"PERF_COUNT": True} if profile else {}
        if threads:
            extra["INFERENCE_NUM_THREADS"] = threads
        if path.suffix == ".onnx":
            if not path.is_file():
                raise UserError(f"ONNX model {path} does not exist.")
            device_name(core, device)
            check_int8_layout(describe_onnx(path).metadata.get("precision"), device, path)
            self.inference_precision = DEFAULT_INFERENCE_PRECISION
            self._compiled = self._load(path, lambda: core.compile_model(
                str(path), device, compile_properties(self.inference_precision) | extra))
        else:
            manifest = load_manifest(path)
            device = manifest.device or DEFAULT_DEVICE
            check_manifest(manifest, backend="openvino", backend_version=openvino_version())
            here = device_name(core, device)
            if manifest.device_name and manifest.device_name != here:
                raise UserError(f"Engine {path.name} was compiled for the {device} {manifest.device_name!r}, "
                                f"but this {device} is {here!r}. Rebuild it here (`mirnet build "
                                f"{manifest.onnx_path} --backend openvino`).")
            check_int8_layout(manifest.precision, device, manifest.onnx_path)  # built before the check
            self.inference_precision = manifest.inference_precision or DEFAULT_INFERENCE_PRECISION
            self._compiled = self._load(path, lambda: core.import_model(
                path.read_bytes(), device, compile_properties(self.inference_precision) | extra))
        self.device = device
        self.name = name or f"openvino-{device.lower()}"
        self.input_spec = _spec(self._compiled.input(0))
        self.output_spec = _spec(self._compiled.output(0))
        self._request = self._compiled.create_infer_request()

    @property
    def inference_threads(self) -> int:
        """The thread count OpenVINO compiled the model with (benchmarks report it)."""
        return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    @staticmethod
    def _load(path: Path, load: Any) -> ov.CompiledModel:
        try:
            return load()
        except RuntimeError as exc:  # OpenVINO's errors are RuntimeError subclasses
            raise UserError(f"OpenVINO {openvino_version()} could not load {path}: {exc}") from None

    def run(self, x: Any) -> np.ndarray:
        batch = self.check_batch(to_numpy(x))
        self._request.infer({0: batch}, share_inputs=True)
        return self._request.get_output_tensor(0).data.copy()

    def layer_times(self) -> list[LayerTime]:
        """Every node of the last run with its kernel and time (needs `profile=True`)."""
        return [LayerTime(info.node_name, info.node_type, info.exec_type,
                          info.real_time.total_seconds() * 1e3)
                for info in self._request.get_profiling_info()]

    def close(self) -> None:
        super().close()
        self._request = None
        self._compiled = None
