"""The little of the CUDA runtime that the TensorRT runner needs, through cuda-python.

Device buffers (cudaMalloc), pinned host buffers (cudaMallocHost, so copies are
truly asynchronous), one stream, async copies. Every cuda-python call returns
`(error, *values)`; `_call` turns a non-zero error into an exception.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ..probe import cuda_error_text, import_cudart


class CudaError(RuntimeError):
    pass


def _call(result: tuple) -> Any:
    error, *values = result
    if int(error) != 0:
        raise CudaError(cuda_error_text(import_cudart(), error))
    return values[0] if len(values) == 1 else tuple(values)


class DeviceBuffer:
    """`nbytes` of GPU memory at `ptr`."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(_call(import_cudart().cudaMalloc(nbytes)))

    def free(self) -> None:
        if self.ptr:
            _call(import_cudart().cudaFree(self.ptr))
            self.ptr = 0


class PinnedBuffer:
    """`nbytes` of page-locked host memory, viewed as NumPy arrays."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(_call(import_cudart().cudaMallocHost(nbytes)))

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = (ctypes.c_byte * count).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            _call(import_cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


def grown(buffer: DeviceBuffer | PinnedBuffer | None, kind: type, nbytes: int) -> Any:
    """`buffer` if it holds `nbytes`, else a new (larger) one; shapes that shrink reuse memory.

    The new buffer is allocated before the old one is freed: when the allocation fails
    (out of memory), the exception leaves `buffer` valid and still owned by the caller.
    """
    if buffer is not None and buffer.nbytes >= nbytes:
        return buffer
    bigger = kind(max(nbytes, 1))
    if buffer is not None:
        buffer.free()
    return bigger


class Stream:
    """A CUDA stream; `handle` is a plain int, which TensorRT and cuda-python both accept."""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self.handle: int | None = int(_call(self._cudart.cudaStreamCreate()))

    def copy_to_device(self, device_ptr: int, host_ptr: int, nbytes: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _call(self._cudart.cudaMemcpyAsync(device_ptr, host_ptr, nbytes, kind, self.handle))

    def copy_to_host(self, host_ptr: int, device_ptr: int, nbytes: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _call(self._cudart.cudaMemcpyAsync(host_ptr, device_ptr, nbytes, kind, self.handle))

    def synchronize(self) -> None:
        _call(self._cudart.cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle is not None:
            _call(self._cudart.cudaStreamDestroy(self.handle))
            self.handle = None


def set_device(index: int) -> None:
    _call(import_cudart().cudaSetDevice(index))
