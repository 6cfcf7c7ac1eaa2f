"""How a GPU task's run time and draw change with the GPU power limit, in the simulator,
from measurements.

Data: the Zeus NSDI'23 traces (ml-energy/zeus, Apache-2.0,
``examples/research_reproducibility/zeus_nsdi23/trace/summary_power_{v100,a40,p100,rtx6000}.csv``),
copied into ``tao_core/data/zeus_power_limits_<gpu>.csv``: for each DNN training job
(dataset, network, batch size, optimizer), the time per epoch (s) and the average GPU power
(W) measured at each power limit (V100 100-250 W, A40 100-300 W, P100 125-250 W, RTX6000
100-260 W).

Model (each a modelling choice, stated in the README):

- A GPU node type gets the measured profiles of one of these GPUs when its ``gpu_model``
  names it, or else its name contains it (``gpu-v100``, ``V100M16-96c-8g``), case ignored.
- Each task group running there behaves as one of that GPU's measured jobs, picked by a
  stable hash of the group name: its run time at limit ``L`` is its run time at the highest
  limit x ``t(L) / t(Lmax)``, and each busy GPU draws ``gpu_max_w x P(L) / P(Lmax)`` (the
  node type's busy draw at the highest limit, scaled as measured), at least ``gpu_idle_w``.
- The limits offered to the controller are the measured ones scaled to the node type,
  ``L x gpu_max_w / Lmax``; a policy that sets none runs at the highest.

Units: watts, seconds, joules.
"""
from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping, Optional

from tao_core.control.types import NodeType

GPUS = ("v100", "a40", "p100", "rtx6000")
_KEYS = ("dataset", "network", "batch_size", "optimizer")


@dataclass(frozen=True)
class LimitProfile:
    """One measured job on one node type: per limit (node watts, descending), the run time
    and the busy draw of a GPU relative to the highest limit."""

    job: str
    limits_w: tuple[float, ...]
    time_factor: tuple[float, ...]
    power_factor: tuple[float, ...]

    def at(self, limit_w: Optional[float]) -> tuple[float, float]:
        """(run-time factor, power factor) at the offered limit nearest ``limit_w`` (the
        highest limit for None)."""
        if limit_w is None:
            return 1.0, 1.0
        j = min(range(len(self.limits_w)), key=lambda k: abs(self.limits_w[k] - limit_w))
        return self.time_factor[j], self.power_factor[j]

    def min_energy_factor(self) -> float:
        """The least GPU energy per unit of work over the limits, relative to the highest."""
        return min(t * p for t, p in zip(self.time_factor, self.power_factor))


@lru_cache(maxsize=None)
def _jobs(gpu: str) -> tuple[tuple[str, tuple[float, ...], tuple[float, ...], tuple[float, ...]], ...]:
    """The measured jobs of ``gpu`` with every limit: (name, limits W descending, time and
    power factors)."""
    text = resources.files("tao_core").joinpath(f"data/zeus_power_limits_{gpu}.csv").read_text(encoding="utf-8")
    rows: dict[str, dict[float, tuple[float, float]]] = {}
    for r in csv.DictReader(text.splitlines()):
        name = "/".join(r[k] for k in _KEYS)
        rows.setdefault(name, {})[float(r["power_limit"])] = (float(r["time_per_epoch"]), float(r["average_power"]))
    limits = sorted({lim for d in rows.values() for lim in d}, reverse=True)
    out = []
    for name in sorted(rows):
        d = rows[name]
        if any(lim not in d for lim in limits):
            continue
        t0, p0 = d[limits[0]]
        out.append((name, tuple(limits), tuple(d[lim][0] / t0 for lim in limits), tuple(d[lim][1] / p0 for lim in limits)))
    return tuple(out)


def gpu_of(nt: NodeType) -> Optional[str]:
    """Which measured GPU a node type's GPUs are (None: none of them, or no GPUs)."""
    if nt.gpus <= 0 or nt.gpu_max_w <= 0:
        return None
    for text in (nt.gpu_model or "", nt.name):
        low = text.lower()
        for g in sorted(GPUS, key=len, reverse=True):
            if g in low:
                return g
    return None


class GpuLimitModel:
    """Per node type and task group, the measured effect of the GPU power limit (see the
    module docstring)."""

    def __init__(self, node_types: Mapping[str, NodeType]) -> None:
        self._types = {name: (nt, g) for name, nt in node_types.items() if (g := gpu_of(nt)) is not None}
        self._cache: dict[tuple[str, str], LimitProfile] = {}

    def __bool__(self) -> bool:
        return bool(self._types)

    def limits_w(self, type_name: str) -> Optional[tuple[float, ...]]:
        """The limits (W, descending) offered on ``type_name``'s GPUs; None when unmodelled."""
        got = self._types.get(type_name)
        if got is None:
            return None
        nt, g = got
        lims = _jobs(g)[0][1]
        return tuple(lim * nt.gpu_max_w / lims[0] for lim in lims)

    def profile(self, type_name: str, group: str) -> Optional[LimitProfile]:
        """The measured job ``group`` behaves as on ``type_name`` (None when unmodelled)."""
        key = (type_name, group)
        p = self._cache.get(key)
        if p is not None:
            return p
        got = self._types.get(type_name)
        if got is None:
            return None
        nt, g = got
        jobs = _jobs(g)
        name, lims, tf, pf = jobs[zlib.crc32(group.encode("utf-8")) % len(jobs)]
        p = LimitProfile(f"{g}/{name}", tuple(lim * nt.gpu_max_w / lims[0] for lim in lims), tf, pf)
        self._cache[key] = p
        return p
