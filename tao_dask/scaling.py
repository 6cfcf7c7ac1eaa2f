"""Scaling advice for :class:`tao_dask.EnergyAdaptive` and Dask's own downscaling.

The controller's scaling plan says which workers to power off; Dask retires them. A
worker the plan powered off that Dask keeps (its ``minimum``) goes back into service
after ``retire_grace_s`` or when the adaptive loop says so (``keep``).

Units: seconds (wall clock).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from tao_core.control.types import NodeState
from tao_dask.membership import Membership

#: the most parked tasks given to the scaling plan as pending demand
MAX_PENDING = 1024


class ScalingAdvisor:
    """The plugin's ``tao_scaling`` and ``tao_keep`` handlers and its
    ``valid_workers_downscaling`` order. ``pending()`` lists the parked tasks' requests;
    ``reopen()`` tells placement that capacity came back."""

    #: seconds a worker the plan powered off may stay before TAO counts it as kept (ON), at least
    retire_grace_s = 5.0

    def __init__(self, scheduler: Any, membership: Membership, pending: Callable[[], list],
                 reopen: Callable[[], None], fail: Callable[[str, BaseException], None]) -> None:
        self.s = scheduler
        self.m = membership
        self.pending = pending
        self.reopen = reopen
        self.fail = fail
        self._powered_off: dict[str, float] = {}  # node -> when a plan powered it off

    def advice(self, target: Optional[int] = None, grace_s: Optional[float] = None) -> dict[str, Any]:
        """The controller's scaling plan and the workers ordered least efficient first
        (``planned``: whether a controller made the plan; without one there is none).
        ``start``: the declared workers not up, most efficient type first. ``power_off``:
        every live worker a plan powered off (this one or an earlier one within the
        grace), least efficient first, so that an adaptive loop that waits for several
        equal recommendations sees the same choice each time. ``grace_s``: how
        long such a worker may wait for Dask to retire it (at least ``retire_grace_s``)."""
        out: dict[str, Any] = {"order": [], "power_off": [], "drain": [], "power_on": [], "reason": "",
                               "planned": False, "start": []}
        try:
            workers = self.s.workers
            # (name, idle) of live workers, least efficient first
            out["order"] = [(str(workers[a].name), not workers[a].processing)
                            for a in self.m.efficiency_order(workers)]
            out["start"] = self.m.assignment.start_order({str(ws.name) for ws in workers.values()})
            ctl = self.m.ctl
            if ctl is not None:
                out.update(self._plan(ctl, max(self.retire_grace_s, float(grace_s or 0.0))))
                out["planned"] = True
        except Exception as exc:
            self.fail("planning scaling", exc)
        return out

    def _plan(self, ctl: Any, grace_s: float) -> dict[str, Any]:
        now = time.time()
        workers = self.s.workers
        # nodes an earlier plan powered off that Dask did not retire: back ON
        for addr, t_off in list(self._powered_off.items()):
            n = self.m.nodes.get(addr)
            if addr not in workers or n is None or not n.managed:
                del self._powered_off[addr]
            elif now - t_off > grace_s:
                del self._powered_off[addr]
                ctl.set_node_state(addr, NodeState.ON, now_s=now)
        plan = ctl.plan_scaling(now_s=now, pending=self.pending()[:MAX_PENDING])
        for addr in plan.power_off:
            self._powered_off[addr] = now
        # the plan is already applied to the controller's view (OFF, DRAINING, BOOTING);
        # a node it wants on that is still a live worker is simply ON
        for addr in plan.power_on:
            if addr in workers:
                ctl.set_node_state(addr, NodeState.ON, now_s=now)
                self.reopen()

        def names(addrs: Any) -> list[str]:
            return [str(workers[a].name) for a in addrs if a in workers]

        waiting = [a for a in self.m.efficiency_order(workers) if a in self._powered_off]
        return {"power_off": names(waiting), "drain": names(plan.drain),
                "power_on": list(plan.power_on), "reason": plan.reason}

    def keep(self, names: list[str]) -> None:
        """Workers a scaling plan powered off that will not be retired (Dask's
        ``minimum``): ON again in the controller's view."""
        try:
            now = time.time()
            by_name = {str(ws.name): a for a, ws in self.s.workers.items()}
            for name in names:
                addr = by_name.get(str(name))
                n = self.m.nodes.get(addr) if addr is not None else None
                if n is not None and n.managed:
                    self._powered_off.pop(addr, None)
                    self.m.ctl.set_node_state(addr, NodeState.ON, now_s=now)
            self.reopen()
        except Exception as exc:
            self.fail("returning workers to service", exc)

    def downscaling_order(self, workers: list[Any]) -> list[Any]:
        """Dask's retirement candidates ordered so the least efficient go first.

        ``Scheduler.workers_to_close`` sorts candidates stably by (idle, data held) and
        retires from the end of that order, so among equals the last one here goes first."""
        try:
            rank = {a: i for i, a in enumerate(self.m.efficiency_order(self.s.workers))}
            return sorted(workers, key=lambda ws: -rank.get(ws.address, len(rank)))
        except Exception as exc:
            self.fail("ordering workers for downscaling", exc)
            return workers
