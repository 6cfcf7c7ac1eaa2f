"""Online choice of a GPU power limit per task group.

The learner is told the power limits it may set (watts) and, after each unit of work run
at some limit, the time (seconds) and energy (joules) that unit took. It chooses the limit
for the next unit:

1. Explore: run one unit at each limit, from the highest down. Lower limits only slow a
   GPU down, so exploration stops early once a limit is measured slower than the allowed
   slowdown over the highest limit; lower limits are not tried.
2. Exploit: the limit of least cost ``E + lambda * T`` per unit among those whose measured
   time per unit is within ``1 + max_slowdown`` of the highest limit's, by a margin of
   ``confidence_z`` standard errors of the measured times (noise estimated from the
   spread of repeated units), and whose average
   power fits ``power_cap_w`` when a cap is given (the controller passes the power headroom
   of the cluster budget). With ``lambda_j_per_s = 0`` this is the least energy.
   The highest limit is measured ``reference_units`` times, since every slowdown is
   measured against it, and up to four times as often while the chosen limit's slowdown is
   within two standard errors of the bound.
3. Keep learning: every observation updates a windowed mean for its limit, so a drift in
   the chosen limit's figures moves the choice, and the margin narrows as units accumulate.

Memory per group is one small record per limit; groups beyond ``max_groups`` are evicted
least recently used first.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass
class LimitStats:
    """Running means of what one unit of work cost at one power limit.

    Means are plain averages over the last ``window`` units at most (older units weigh
    less after that, so drift is followed). ``rel_ss`` sums squared relative deviations
    of unit times from the running mean, for the noise estimate.
    """

    time_s: float = 0.0
    energy_j: float = 0.0
    count: int = 0
    rel_ss: float = 0.0

    @property
    def power_w(self) -> float:
        """Average power in watts while the unit ran."""
        return self.energy_j / self.time_s if self.time_s > 0 else 0.0

    def update(self, time_s: float, energy_j: float, window: int) -> None:
        if self.count:
            self.rel_ss += ((time_s - self.time_s) / self.time_s) ** 2 * self.count / (self.count + 1)
        self.count += 1
        w = 1.0 / min(self.count, window)
        self.time_s += w * (time_s - self.time_s)
        self.energy_j += w * (energy_j - self.energy_j)


@dataclass
class _Group:
    stats: dict[float, LimitStats] = field(default_factory=dict)
    explored_down_to: Optional[float] = None  #: lowest limit explored so far
    pruned: bool = False  #: exploration stopped early (a limit was too slow)


class PowerLimitLearner:
    """Chooses GPU power limits (watts) per task group from measured time and energy."""

    def __init__(
        self,
        limits_w: Sequence[float],
        *,
        max_slowdown: float = 0.10,
        lambda_j_per_s: float = 0.0,
        confidence_z: float = 0.5,
        noise_prior: float = 0.02,
        reference_units: int = 3,
        window: int = 50,
        max_groups: int = 1024,
    ) -> None:
        limits = sorted({float(x) for x in limits_w}, reverse=True)
        if not limits or any(x <= 0 for x in limits):
            raise ValueError("limits_w: give one or more positive power limits in watts")
        if max_slowdown < 0:
            raise ValueError("max_slowdown: must be >= 0 (0.10 allows 10 % slower units)")
        if lambda_j_per_s < 0:
            raise ValueError("lambda_j_per_s: must be >= 0")
        self.limits_w: tuple[float, ...] = tuple(limits)  #: descending
        self.max_slowdown = max_slowdown
        self.lambda_j_per_s = lambda_j_per_s
        #: a limit must be measured inside the slowdown bound by this many standard errors
        self.confidence_z = confidence_z
        #: relative noise of one unit's time assumed until enough units were measured
        self.noise_prior = noise_prior
        #: units measured at the highest limit before its time is used as the reference
        self.reference_units = reference_units
        self.window = window
        self.max_groups = max_groups
        self._groups: OrderedDict[str, _Group] = OrderedDict()

    @property
    def default_limit_w(self) -> float:
        """The highest limit: what a GPU runs at when nobody lowers it."""
        return self.limits_w[0]

    def _group(self, group: str) -> _Group:
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(group)
        return g

    def exploring(self, group: str) -> bool:
        """True while the group still has limits to try."""
        g = self._group(group)
        return self._next_unexplored(g) is not None

    def _next_unexplored(self, g: _Group) -> Optional[float]:
        if g.pruned:
            return None
        for lim in self.limits_w:
            if lim not in g.stats:
                return lim
        return None

    def next_limit(self, group: str, power_cap_w: Optional[float] = None) -> float:
        """The limit in watts to run the group's next unit of work at.

        ``power_cap_w`` is the most the GPU may draw now (budget headroom); limits whose
        measured average power exceeds it are not chosen, and while exploring a limit above
        the cap is skipped.
        """
        g = self._group(group)
        nxt = self._next_unexplored(g)
        while nxt is not None and power_cap_w is not None and nxt > power_cap_w and nxt != self.limits_w[-1]:
            # a limit above the cap can never be chosen now: record nothing, try the next lower one
            lower = [x for x in self.limits_w if x < nxt and x not in g.stats]
            nxt = lower[0] if lower else None
        if nxt is not None:
            return nxt
        chosen = self.best(group, power_cap_w=power_cap_w)
        ref = g.stats.get(self.limits_w[0])
        if ref is None or (power_cap_w is not None and self.limits_w[0] > power_cap_w):
            return chosen
        if ref.count < self.reference_units:
            return self.limits_w[0]  # firm up the reference the slowdown is measured against
        if chosen != self.limits_w[0] and ref.count < 4 * self.reference_units:
            # the choice sits close to the slowdown bound: measure the reference again
            st = g.stats[chosen]
            se = self.noise(group) * (1.0 / st.count + 1.0 / ref.count) ** 0.5
            if abs(st.time_s / ref.time_s - (1.0 + self.max_slowdown)) < 2.0 * se:
                return self.limits_w[0]
        return chosen

    def noise(self, group: str) -> float:
        """Estimated relative standard deviation of one unit's measured time, pooled over
        the group's limits and blended with ``noise_prior`` while few units are measured."""
        g = self._group(group)
        ss = sum(st.rel_ss for st in g.stats.values())
        dof = sum(max(st.count - 1, 0) for st in g.stats.values())
        k = 4.0  # the prior counts as this many degrees of freedom
        return ((self.noise_prior**2 * k + ss) / (k + dof)) ** 0.5

    def best(self, group: str, power_cap_w: Optional[float] = None) -> float:
        """The best limit measured so far for ``group`` (the highest limit if none)."""
        g = self._group(group)
        ref = g.stats.get(self.limits_w[0])
        if ref is None or ref.count == 0:
            measured = [lim for lim in self.limits_w if lim in g.stats]
            if not measured:
                return self.limits_w[0] if power_cap_w is None else self._cap(power_cap_w)
            ref_time = min(g.stats[lim].time_s for lim in measured)
        else:
            ref_time = ref.time_s
        n_ref = ref.count if ref is not None and ref.count else 1
        sigma = self.noise(group)
        best_lim, best_cost = None, float("inf")
        for lim, st in g.stats.items():
            margin = self.confidence_z * sigma * (1.0 / st.count + 1.0 / n_ref) ** 0.5 if lim != self.limits_w[0] else 0.0
            if st.time_s > (1.0 + self.max_slowdown - margin) * ref_time:
                continue
            if power_cap_w is not None and st.power_w > power_cap_w:
                continue
            cost = st.energy_j + self.lambda_j_per_s * st.time_s
            if cost < best_cost:
                best_lim, best_cost = lim, cost
        if best_lim is None:
            return self.limits_w[0] if power_cap_w is None else self._cap(power_cap_w)
        return best_lim

    def _cap(self, power_cap_w: float) -> float:
        fitting = [x for x in self.limits_w if x <= power_cap_w]
        return fitting[0] if fitting else self.limits_w[-1]

    def observe(self, group: str, limit_w: float, time_s: float, energy_j: float) -> None:
        """Record that one unit of the group's work took ``time_s`` seconds and
        ``energy_j`` joules at ``limit_w`` watts."""
        if time_s <= 0 or energy_j < 0:
            raise ValueError("observe: time_s must be > 0 and energy_j >= 0")
        limit_w = float(limit_w)
        if limit_w not in self.limits_w:
            raise ValueError(f"observe: limit_w {limit_w} W is not one of {self.limits_w}")
        g = self._group(group)
        st = g.stats.setdefault(limit_w, LimitStats())
        st.update(time_s, energy_j, self.window)
        ref = g.stats.get(self.limits_w[0])
        if ref is not None and limit_w != self.limits_w[0] and st.time_s > (1.0 + self.max_slowdown) * ref.time_s:
            g.pruned = True  # lower limits are slower still: stop exploring
        g.explored_down_to = min(limit_w, g.explored_down_to or limit_w)

    def table(self, group: str) -> list[dict[str, float]]:
        """What has been measured for ``group``: one row per limit, highest first."""
        g = self._group(group)
        return [
            {"limit_w": lim, "time_s": st.time_s, "energy_j": st.energy_j, "power_w": st.power_w, "count": st.count}
            for lim, st in sorted(g.stats.items(), reverse=True)
        ]
