"""The hardware key of a node and the node-type name made from it.

Nodes whose CPU model, sockets, threads, memory (rounded up to 8 GiB, so a few MB the
kernel reserves do not split a fleet) and GPU models are the same get the same key, hence
the same node type and the same fitted-curve file. A node that may use fewer CPUs than it
has (a container's cgroup quota, an engine's CPU setting) adds ``-c<cpus>``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Optional, Sequence

__all__ = ["hardware_key", "slug", "memory_bucket_gib"]


def slug(text: str) -> str:
    """Lower-case words of ``text`` joined by ``-``, without trademarks, "CPU", "Processor"
    and clock: "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz" -> "xeon-gold-6248"."""
    s = re.sub(r"\(r\)|\(tm\)|®|™|\bintel\b|\bamd\b|\bnvidia\b|\bprocessor\b|\bcpu\b|@.*$|\b\d+-core\b", " ",
               text.lower())
    return "-".join(re.findall(r"[a-z0-9+]+", s)) or "unknown"


def memory_bucket_gib(total_bytes: int) -> int:
    """Memory rounded up to a multiple of 8 GiB (1 GiB below 8 GiB)."""
    gib = total_bytes / 2**30
    step = 8 if gib > 8 else 1
    return max(step, int(math.ceil(gib / step - 1e-9) * step))


def hardware_key(cpu_model: str, sockets: int, threads: int, memory_bytes: int,
                 gpu_names: Sequence[str] = (), cpus: Optional[float] = None) -> str:
    """``<cpu>-<sockets>s-<threads>t-<GiB>g[-<n>x<gpu>...][-c<cpus>]``."""
    parts = [slug(cpu_model), f"{sockets}s", f"{threads}t", f"{memory_bucket_gib(memory_bytes)}g"]
    for name, n in sorted(Counter(slug(g) for g in gpu_names).items()):
        parts.append(f"{n}x{name}")
    if cpus is not None and cpus != threads:
        parts.append(f"c{cpus:g}")
    return "-".join(parts)
