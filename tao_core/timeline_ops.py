"""Operations on node energy timelines (cumulative :class:`~tao_core.telemetry.base.Reading`
lists, seconds and joules) that every adapter's report needs: cutting them to one time
window, the cluster's power over time, and whether a power budget held.

Between two readings a node's power is taken as constant (the interval's joules over its
seconds), so the cluster's power is a step function on the union of every node's reading
times, and energy in a window is the cumulative energy interpolated linearly at its ends.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from tao_core.telemetry.base import Reading


def _at(a: Reading, b: Reading, t: float) -> Reading:
    """The reading at ``t`` between ``a`` and ``b``, every domain's energy interpolated."""
    f = 0.0 if b.t_s <= a.t_s else (t - a.t_s) / (b.t_s - a.t_s)
    doms = {}
    for name, d in b.domains.items():
        e0 = a.domains[name].energy_j if name in a.domains else d.energy_j
        doms[name] = dataclasses.replace(d, energy_j=e0 + f * (d.energy_j - e0))
    return Reading(t_s=float(t), domains=doms)


def clip(readings: Sequence[Reading], t0: float, t1: float) -> list[Reading]:
    """The readings within ``[t0, t1]``, with a reading interpolated at each end that falls
    inside the timeline (a timeline starting after ``t0`` starts at its first reading)."""
    rs = list(readings)
    if len(rs) < 2 or t1 <= t0:
        return [r for r in rs if t0 <= r.t_s <= t1]
    t = np.array([r.t_s for r in rs])
    out = []
    if t[0] < t0 < t[-1]:
        i = int(np.searchsorted(t, t0, side="right"))
        out.append(_at(rs[i - 1], rs[i], t0))
    out.extend(r for r in rs if t0 <= r.t_s <= t1)
    if t[0] < t1 < t[-1]:
        i = int(np.searchsorted(t, t1, side="left"))
        out.append(_at(rs[i - 1], rs[i], t1))
    return out


def cluster_power(timelines: Mapping[str, Sequence[Reading]]) -> tuple[np.ndarray, np.ndarray]:
    """(times, watts): the sum of every node's step power on the union of reading times;
    ``watts[i]`` holds over ``[times[i], times[i+1])``. A node adds nothing outside its
    timeline."""
    series = []
    for rs in timelines.values():
        if len(rs) < 2:
            continue
        t = np.array([r.t_s for r in rs], dtype=float)
        e = np.array([r.total_energy_j() for r in rs], dtype=float)
        dt = np.diff(t)
        p = np.divide(np.diff(e), dt, out=np.zeros(len(dt)), where=dt > 0)
        series.append((t, p))
    if not series:
        return np.zeros(0), np.zeros(0)
    grid = np.unique(np.concatenate([t for t, _ in series]))
    total = np.zeros(len(grid) - 1)
    mids = grid[:-1]
    for t, p in series:
        idx = np.searchsorted(t, mids, side="right") - 1
        inside = (idx >= 0) & (idx < len(p)) & (mids < t[-1])
        total[inside] += p[idx[inside]]
    return grid, total


@dataclass(frozen=True)
class BudgetAdherence:
    """How a run's modeled or measured cluster power (W) stood against its budget (W).

    ``over_s``: seconds above the budget; ``worst_excess_w``: the largest excess;
    ``excess_j``: joules above the budget; ``first_over_s``/``last_over_s``: when (the
    timelines' clock); ``reason``: why, in the adapter's words (empty when it held)."""

    budget_w: float
    peak_w: float
    over_s: float
    worst_excess_w: float
    excess_j: float
    first_over_s: Optional[float]
    last_over_s: Optional[float]
    reason: str = ""

    @property
    def held(self) -> bool:
        return self.over_s <= 0.0

    def describe(self) -> str:
        if self.held:
            return f"cluster power stayed under the {self.budget_w:g} W budget (peak {self.peak_w:.1f} W)"
        return (f"cluster power was above the {self.budget_w:g} W budget for {self.over_s:.2f} s, by up to "
                f"{self.worst_excess_w:.1f} W ({self.excess_j:.1f} J above it): {self.reason or 'reason unknown'}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["held"] = self.held
        d["description"] = self.describe()
        return d


def check_budget(timelines: Mapping[str, Sequence[Reading]], budget_w: float, *,
                 reason: str = "") -> BudgetAdherence:
    """Cluster power against ``budget_w`` over the timelines (see :class:`BudgetAdherence`)."""
    grid, watts = cluster_power(timelines)
    if len(watts) == 0:
        return BudgetAdherence(budget_w, 0.0, 0.0, 0.0, 0.0, None, None, "")
    dt = np.diff(grid)
    over = watts > budget_w + 1e-9
    excess = np.where(over, watts - budget_w, 0.0)
    over_t = grid[:-1][over]
    held = not over.any()
    return BudgetAdherence(
        budget_w=float(budget_w), peak_w=float(watts.max()), over_s=float(dt[over].sum()),
        worst_excess_w=float(excess.max()), excess_j=float((excess * dt).sum()),
        first_over_s=None if held else float(over_t[0]), last_over_s=None if held else float(over_t[-1]),
        reason="" if held else reason)
