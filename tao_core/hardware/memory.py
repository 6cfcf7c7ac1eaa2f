"""Memory: total RAM from ``/proc/meminfo`` (psutil on a live machine when it is missing)
and the cgroup limit of this process, if any (``memory.max`` of cgroup v2,
``memory.limit_in_bytes`` of v1). Bytes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tao_core.hardware.root import HostRoot

__all__ = ["MemoryInfo", "read_memory"]

#: cgroup v1 reports "no limit" as a number near 2**63
_NO_LIMIT = 1 << 60


@dataclass(frozen=True)
class MemoryInfo:
    total_bytes: int
    limit_bytes: Optional[int] = None  #: cgroup memory limit, when below the total

    @property
    def total_gib(self) -> float:
        return self.total_bytes / 2**30


def _meminfo_total(root: HostRoot) -> Optional[int]:
    for line in (root.read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _cgroup_limit(root: HostRoot) -> Optional[int]:
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        v = root.read(p)
        if v and v.isdigit() and int(v) < _NO_LIMIT:
            return int(v)
    return None


def read_memory(root: Optional[HostRoot] = None) -> MemoryInfo:
    root = root or HostRoot()
    total = _meminfo_total(root)
    if total is None and root.live:
        import psutil

        total = int(psutil.virtual_memory().total)
    total = total or 0
    limit = _cgroup_limit(root)
    return MemoryInfo(total, limit if limit is not None and limit < total else None)
