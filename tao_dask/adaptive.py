"""``EnergyAdaptive``: Dask's ``Adaptive`` with energy-aware scaling.

``target()`` scales up as Dask's own demand-based target says; below the workers up it
retires only those the controller's scaling plan powers off: idle workers whose capacity
is not needed and that sat idle past their node type's idle timeout (by default the
break-even time ``boot energy / (idle W - off W)``, so a worker is not retired for a pause
that costs less idle energy than booting it again would). ``workers_to_close()`` retires
idle workers least efficient first (highest watts per unit of work at full load), the
controller's ``power_off`` choices ahead of the rest. ``scale_up()`` on a ``SpecCluster``
(``LocalCluster`` and the clusters built on it) starts the declared workers that are not up
(``register(workers={name: type})``) most efficient type first, then the cluster's own
next workers: Dask's own ``Adaptive`` starts whichever worker the cluster names next.
Both ask the scheduler plugin through its ``tao_scaling`` handler; if that fails they fall
back to Dask's own behaviour (fail open).

Use it like Dask's: ``cluster.adapt(Adaptive=tao_dask.EnergyAdaptive, minimum=1,
maximum=4)``.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from distributed.deploy.adaptive import Adaptive

logger = logging.getLogger("tao_dask")


class EnergyAdaptive(Adaptive):
    """Adaptive scaling that retires the least efficient workers first."""

    _advice: Any = None

    async def _get_advice(self, target: int) -> Any:
        # a worker powered off waits for Dask to retire it: wait_count equal recommendations
        grace_s = float(self.interval or 1.0) * (int(self.wait_count) + 2)
        try:
            return await self.scheduler.tao_scaling(target=target, grace_s=grace_s)
        except Exception as exc:
            logger.warning("TAO: scaling advice unavailable (%s); Dask's own adaptive scaling is used", exc)
            return None

    async def target(self) -> int:
        base = await super().target()
        advice = await self._get_advice(base)
        self._advice = advice
        if not advice or not advice.get("planned"):
            return base
        live = len(advice["order"])
        off = list(advice["power_off"])
        # more workers: Dask's demand; fewer: the controller's power-off choices only
        target = max(int(base) if base > live else live - len(off), int(self.minimum))
        # powered-off choices beyond what ``minimum`` lets Dask retire stay on: say so,
        # least efficient retired first (the plan lists them in that order)
        keep = off[max(0, live - target):]
        if keep:
            try:
                await self.scheduler.tao_keep(names=keep)
            except Exception as exc:
                logger.warning("TAO: could not return workers %s to service (%s)", keep, exc)
        return target

    async def workers_to_close(self, target: int) -> list[str]:
        advice = self._advice or await self._get_advice(target)
        if not advice or not advice["order"]:
            return await super().workers_to_close(target)
        n = len(advice["order"]) - target
        if n <= 0:
            return []
        idle = [name for name, is_idle in advice["order"] if is_idle]
        first = [w for w in advice["power_off"] if w in idle]
        rest = [w for w in idle if w not in first]
        return (first + rest)[:n]

    async def scale_up(self, n: int) -> None:
        self._name_new_workers(n)
        await super().scale_up(n)

    def _name_new_workers(self, n: int) -> None:
        """Add the declared workers the advice says to start first to a ``SpecCluster``'s
        ``worker_spec`` (a copy of its ``new_spec`` each), up to ``n`` workers; the
        cluster's ``scale(n)`` then starts them. Other clusters are left as they are."""
        spec = getattr(self.cluster, "worker_spec", None)
        template = getattr(self.cluster, "new_spec", None)
        if not isinstance(spec, dict) or not isinstance(template, dict):
            return
        taken = {str(k) for k in spec}
        start = [name for name in (self._advice or {}).get("start") or [] if name not in taken]
        for name in start[:max(0, n - len(spec))]:
            spec[self._spec_key(name)] = copy.deepcopy(template)

    def _spec_key(self, name: str) -> Any:
        """``name`` typed as the cluster's own worker names: an int where they are ints
        (``LocalCluster``), else the string."""
        try:
            as_int = isinstance(self.cluster._new_worker_name(0), int)
        except Exception:
            as_int = False
        return int(name) if as_int and name.isdigit() else name
