"""Native TensorRT runner: manifest check, GPU probe, then deserialize; cuda-python for memory.

The order is the contract (DESIGN.md): the manifest must match this GPU and TensorRT
version, and a CUDA device must answer, before any TensorRT object exists, because a
mismatched or GPU-less TensorRT crashes instead of raising. Inference uses the
TensorRT 10+/11 named-tensor API: `set_input_shape`, `set_tensor_address`,
`execute_async_v3` on our own stream, with pinned host buffers for the copies.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from mirnet_deploy.errors import UserError

from ..manifest import Profile, Shape, check_manifest, load_manifest
from ..probe import import_tensorrt, probe_cuda
from .base import Runner, TensorSpec, to_numpy
from .cuda_memory import DeviceBuffer, PinnedBuffer, Stream, grown, set_device

#: TensorRT I/O data types this runner feeds (by `trt.DataType` member name) -> NumPy dtype names.
TRT_TYPES = {"FLOAT": "float32", "HALF": "float16"}

#: TensorRT requires every I/O tensor address to be a multiple of this (IExecutionContext::setTensorAddress).
IO_ALIGNMENT = 256

BUFFER_SLOTS = ("host_in", "device_in", "device_out", "host_out")


def _is_cuda_tensor(x: Any) -> bool:
    return bool(getattr(x, "is_cuda", False)) and hasattr(x, "data_ptr")


class _CudaResources:
    """The runner's stream and I/O buffers; `release()` frees each of them once."""

    def __init__(self) -> None:
        self.stream = Stream()
        self.buffers: dict[str, DeviceBuffer | PinnedBuffer | None] = dict.fromkeys(BUFFER_SLOTS)

    def grow(self, slot: str, kind: type, nbytes: int) -> Any:
        """The slot's buffer, replaced by a larger one when needed (the old one stays if that fails)."""
        self.buffers[slot] = grown(self.buffers[slot], kind, nbytes)
        return self.buffers[slot]

    def release(self) -> None:
        for slot, buffer in self.buffers.items():
            if buffer is not None:
                self.buffers[slot] = None
                buffer.free()
        self.stream.destroy()


class TensorRTRunner(Runner):
    """Run a TensorRT engine built by `build_tensorrt_engine` (it needs the engine's manifest).

    NumPy input: copied through pinned memory, NumPy output. A PyTorch CUDA tensor: read
    in place (`data_ptr()`), and the output is a new PyTorch CUDA tensor (no host copy).
    With several optimization profiles, each batch uses the tightest profile that holds
    its shape. Buffers grow when a larger shape comes and are reused otherwise.
    """

    def __init__(self, engine_path: str | os.PathLike, *, device: int = 0, onnx_sha256: str | None = None,
                 name: str | None = None):
        engine_path = Path(engine_path)
        manifest = load_manifest(engine_path)  # 1. the manifest exists and is readable
        cuda = probe_cuda()  # 2. a GPU answers (import_tensorrt repeats this and explains what is missing)
        trt = import_tensorrt()
        if device >= cuda.device_count:
            raise UserError(f"CUDA device {device} does not exist: this machine has {cuda.device_count}.")
        gpu = cuda.devices[device]
        check_manifest(manifest, onnx_sha256=onnx_sha256, backend="tensorrt", backend_version=trt.__version__,
                       gpu_name=gpu.name, compute_capability=gpu.compute_capability)
        set_device(device)
        self.name = name or f"tensorrt-{manifest.precision}"
        self.manifest = manifest
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # 3. only now: TensorRT objects
        if manifest.build_options.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # the plan carries its lean runtime
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise UserError(f"TensorRT {trt.__version__} could not deserialize {engine_path} although its "
                            f"manifest matches; the file may be damaged: rebuild it (`mirnet build`).")
        self._context = self._engine.create_execution_context()
        self.input_spec, self.output_spec = self._io_specs()
        self.profiles = [Profile(*(tuple(s) for s in self._engine.get_tensor_profile_shape(
            self.input_spec.name, index))) for index in range(self._engine.num_optimization_profiles)]
        self._profile = 0  # a new context starts on profile 0
        # CUDA resources last, once nothing above can raise; freed by close() or, for a runner
        # never closed, when it is garbage collected (pinned memory is scarce).
        self._cuda = _CudaResources()
        self._release = weakref.finalize(self, self._cuda.release)

    def _io_specs(self) -> tuple[TensorSpec, TensorSpec]:
        trt, engine = self._trt, self._engine
        specs = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtype = engine.get_tensor_dtype(name).name
            if dtype not in TRT_TYPES:
                raise UserError(f"Engine tensor {name!r} is {dtype}; this runner feeds only "
                                f"{', '.join(TRT_TYPES)} images.")
            specs[engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, name] = TensorSpec(
                name, TRT_TYPES[dtype], tuple(engine.get_tensor_shape(name)))
        inputs = [spec for (is_input, _), spec in specs.items() if is_input]
        outputs = [spec for (is_input, _), spec in specs.items() if not is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"The engine has {len(inputs)} inputs and {len(outputs)} outputs; image "
                            f"restoration engines have one of each.")
        return inputs[0], outputs[0]

    def _select_profile(self, shape: Shape) -> int:
        """The profile with the smallest max shape that contains `shape`."""
        fitting = [i for i, profile in enumerate(self.profiles) if profile.contains(shape)]
        if not fitting:
            ranges = "; ".join(f"{p.min}..{p.max}" for p in self.profiles)
            raise UserError(f"Input shape {shape} is outside every optimization profile of this engine "
                            f"({ranges}). Rebuild it with a resolution bucket that holds it (`mirnet build "
                            f"--res ...`), or tile the image.")
        return min(fitting, key=lambda i: int(np.prod(self.profiles[i].max)))

    def _set_shape(self, shape: Shape) -> tuple[int, ...]:
        """Switch profile if needed, set the input shape; returns the output shape."""
        index = self._select_profile(shape)
        if index != self._profile:
            if not self._context.set_optimization_profile_async(index, self._cuda.stream.handle):
                raise RuntimeError(f"TensorRT refused optimization profile {index}")
            self._profile = index
        if not self._context.set_input_shape(self.input_spec.name, shape):
            raise UserError(f"TensorRT refused input shape {shape} (profile {self.profiles[index]}).")
        return tuple(self._context.get_tensor_shape(self.output_spec.name))

    def _execute(self, input_ptr: int, output_ptr: int) -> None:
        for spec, pointer in ((self.input_spec, input_ptr), (self.output_spec, output_ptr)):
            if pointer % IO_ALIGNMENT:
                raise UserError(f"The {spec.name!r} tensor's GPU address {pointer:#x} is not a multiple of "
                                f"{IO_ALIGNMENT} bytes, which TensorRT requires: pass a contiguous tensor "
                                f"of its own (e.g. `x.clone()`), not a slice into a larger one.")
            if not self._context.set_tensor_address(spec.name, pointer):
                raise RuntimeError(f"TensorRT refused the address {pointer:#x} for tensor {spec.name!r} "
                                   f"(see the TensorRT log above)")
        if not self._context.execute_async_v3(self._cuda.stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def run(self, x: Any) -> Any:
        if _is_cuda_tensor(x):
            return self._run_torch(x)
        batch = self.check_batch(to_numpy(x))
        out_shape = self._set_shape(batch.shape)
        out_dtype = np.dtype(self.output_spec.dtype)
        out_bytes = int(np.prod(out_shape)) * out_dtype.itemsize
        cuda = self._cuda
        host_in = cuda.grow("host_in", PinnedBuffer, batch.nbytes)
        device_in = cuda.grow("device_in", DeviceBuffer, batch.nbytes)
        device_out = cuda.grow("device_out", DeviceBuffer, out_bytes)
        host_out = cuda.grow("host_out", PinnedBuffer, out_bytes)
        host_in.view(batch.shape, batch.dtype)[...] = batch
        cuda.stream.copy_to_device(device_in.ptr, host_in.ptr, batch.nbytes)
        self._execute(device_in.ptr, device_out.ptr)
        cuda.stream.copy_to_host(host_out.ptr, device_out.ptr, out_bytes)
        cuda.stream.synchronize()
        return host_out.view(out_shape, out_dtype).copy()

    def _run_torch(self, x: Any) -> Any:
        """Zero-copy: TensorRT reads the tensor's memory and writes into a new CUDA tensor.

        A tensor that starts inside a larger allocation (a slice of a batch) may sit at an
        address TensorRT cannot read from; it is copied once into memory of its own.
        """
        import torch  # x is a torch tensor, so torch is there

        self.check_open()
        dtype = getattr(torch, self.input_spec.dtype)
        x = x.detach().to(dtype).contiguous()
        if x.data_ptr() % IO_ALIGNMENT:
            x = x.clone()  # PyTorch's allocator returns aligned blocks
        out_shape = self._set_shape(tuple(x.shape))
        out = torch.empty(out_shape, dtype=getattr(torch, self.output_spec.dtype), device=x.device)
        torch.cuda.current_stream(x.device).synchronize()  # x is complete before our stream reads it
        self._execute(x.data_ptr(), out.data_ptr())
        self._cuda.stream.synchronize()
        return out

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._release()  # the finalizer runs once: here, or at garbage collection
        # Context before engine before runtime: each depends on the next.
        self._context = None
        self._engine = None
        self._runtime = None
