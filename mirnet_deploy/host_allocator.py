"""Keep freed host memory in the process, so large tensors are not page-faulted in on every run.

glibc's malloc serves blocks above its mmap threshold (dynamic, at most 32 MiB) with a fresh
`mmap` and unmaps them on `free`, and gives the heap's top back to the kernel above 128 KiB.
PyTorch's CPU allocator mallocs and frees every tensor, so each eager forward pass of MIRNet
maps, zero-fills and unmaps its large activations again: on our 2-core VM, the `small` preset
at 1920x1080 took 32.2 s per run that way and 9.8 s with freed memory kept (README,
Performance). PyTorch's CPU tuning guide suggests jemalloc or tcmalloc for the same reason;
`mallopt` needs no preloading.

The price is memory: blocks freed and not reused stay resident, so the peak grows (`full`
at 512x512, PyTorch eager: 57.2 s and 1,654 MiB peak with glibc's defaults, 26.9 s and
2,090 MiB retained, `mirnet-bench --host-allocator retain,system`). ONNX Runtime and TensorRT
keep their own arenas and are barely affected. `mirnet-bench --host-allocator system` measures
the untuned process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import dataclass

#: `retain`: glibc keeps freed blocks (the default of every mirnet verb and of mirnet-bench);
#: `system`: the C library's own behavior, to measure what an untuned process gets.
HOST_ALLOCATOR_POLICIES = ("retain", "system")

# mallopt parameters (malloc.h) and the values `retain` sets. mallopt takes a C int.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
_TRIM_THRESHOLD = 2**31 - 1  # the heap's free top is kept up to 2 GiB
_TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time


@dataclass(frozen=True)
class HostAllocator:
    """What a process runs with: `policy` is the one in effect (`system` where `retain` could not
    be set), `description` says which allocator and thresholds."""

    policy: str
    description: str


_retained: HostAllocator | None = None


def configure_host_allocator(policy: str = "retain") -> HostAllocator:
    """Apply `policy` to this process's C allocator and say what is in effect.

    Idempotent; `system` changes nothing (after `retain`, `retain` stays in effect). Off glibc
    (macOS, musl) `retain` is not available: those allocators are left as they are.
    """
    global _retained
    if policy not in HOST_ALLOCATOR_POLICIES:
        choices = ", ".join(HOST_ALLOCATOR_POLICIES)
        raise ValueError(f"host allocator policy {policy!r}: choose from {choices}")
    libc_name, libc_version = platform.libc_ver()
    if libc_name != "glibc":
        return HostAllocator("system", f"{platform.system()} {libc_name or 'C library'} allocator "
                                       f"('retain' needs glibc)")
    if _retained is None and policy == "retain":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
                    (_M_TOP_PAD, _TOP_PAD))
        if not all(libc.mallopt(parameter, value) == 1 for parameter, value in settings):
            return HostAllocator("system", f"glibc {libc_version} malloc, default thresholds "
                                           f"(mallopt refused the settings)")
        _retained = HostAllocator("retain", f"glibc {libc_version} malloc retaining freed memory "
                                            f"(mmap threshold 1 GiB, trim threshold 2 GiB)")
    return _retained or HostAllocator("system", f"glibc {libc_version} malloc, default thresholds")
