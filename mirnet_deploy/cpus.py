"""How many CPUs this process may use: its affinity, not the machine's count (a container or
`taskset` may allow fewer). The INT8 search, range collection and baselines run one pass per CPU."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
