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
import os
import platform
import sys
from dataclasses import dataclass

#: `retain`: glibc keeps freed blocks (the default of mirnet-bench and of every mirnet verb but
#: `audit-fp16 --method graph`, ONNX Runtime without its arena: `reexec_with_malloc_huge_pages`);
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


#: glibc tunable (2.35+): malloc asks the kernel for transparent huge pages (`madvise`) on the
#: memory it maps, so a fresh block is faulted in 2 MiB at a time instead of 4 KiB.
MALLOC_HUGE_PAGES = "glibc.malloc.hugetlb=1"
_TUNABLES = "GLIBC_TUNABLES"


def reexec_with_malloc_huge_pages() -> None:
    """Start this process again (same command line) with `MALLOC_HUGE_PAGES`, unless it has it.

    For ONNX Runtime runs without its memory arena (`export.fp16_emulation`): each large tensor is
    a fresh `mmap` faulted in page by page, which cost 39 of the 110 CPU seconds of MPRNet
    `derain`'s graph FP16 audit at 512x512; with huge pages 16, with the same peak memory (retaining
    freed blocks with `configure_host_allocator` cuts it to 2 but doubles the peak). glibc reads
    tunables only at start-up, hence the new process. Off glibc nothing happens; where the kernel
    grants no huge pages (`transparent_hugepage` set to `never`) the tunable changes nothing.
    """
    tunables = os.environ.get(_TUNABLES, "")
    if platform.libc_ver()[0] != "glibc" or MALLOC_HUGE_PAGES in tunables.split(":"):
        return
    environment = {**os.environ, _TUNABLES: ":".join(filter(None, [tunables, MALLOC_HUGE_PAGES]))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
