"""Which Dask workers exist, what node each one is, and the controller's view of them.

Each worker is one node sized by the worker itself: as many CPUs as it has threads and
as many GPUs as its ``GPU`` resource, with the power curve of its node type (see
:mod:`tao_core.live.assignment`). Two workers of one type but different sizes are two
controller node types (``<type>/<n>cpu``, ``+<g>gpu``), so neither is modeled with the
other's CPU count.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from tao_core.control.types import NodeType
from tao_core.live.assignment import NodeAssignment, sized_type
from tao_dask.state import WorkerNode


def worker_gpus(ws: Any) -> int:
    """GPUs a Dask worker offers: its ``GPU`` resource (0 without one)."""
    try:
        return max(0, int((ws.resources or {}).get("GPU", 0)))
    except (TypeError, ValueError):
        return 0


class Membership:
    """Workers seen by the scheduler and their controller nodes.

    ``fail(context, exc)`` reports a TAO error (the plugin's fail-open path)."""

    def __init__(self, assignment: NodeAssignment, fail: Callable[[str, BaseException], None]) -> None:
        self.assignment = assignment
        self.fail = fail
        self.nodes: dict[str, WorkerNode] = {}
        self.ctl: Any = None

    # ------------------------------------------------------------------ workers
    def join(self, ws: Any, reported_type: Optional[str] = None, pid: Optional[int] = None,
             described: Optional[NodeType] = None, curve: Optional[dict] = None) -> Optional[WorkerNode]:
        """Record worker ``ws`` (a scheduler ``WorkerState``); type it when its type is known:
        declared (``reported_type``: what the worker says it was started as), else the type
        it ``described`` itself as (named after its hardware and size; ``curve``: where that
        type's power curve came from, ``CurveProvenance.to_dict()``)."""
        n = self.nodes.get(ws.address)
        fresh = n is None or n.left_s is not None
        if n is None:
            n = self.nodes[ws.address] = WorkerNode(ws.address, str(ws.name), int(ws.nthreads),
                                                    gpus=worker_gpus(ws), joined_s=time.time())
        elif n.left_s is not None:  # a worker back at an address that left: one node, up again
            n.left_s = None
        if pid is not None and n.pid is None:
            n.pid = pid
        if n.node_type is None:
            tname = self.assignment.type_name(ws.name, reported_type)
            if tname is None and described is None:
                return n
            try:
                if tname is not None:
                    n.node_type = sized_type(self.assignment.resolve(tname, n.nthreads), n.nthreads, n.gpus)
                else:
                    tname, n.node_type, n.described, n.curve = described.name, described, True, curve
                n.type_name = tname
            except Exception as exc:
                self.fail(f"node type {tname!r} of worker {ws.name}", exc)
                return n
            fresh = True
        if fresh and self.ctl is not None and not n.managed:
            self._ctl_add(n, time.time())
        return n

    def leave(self, addr: str) -> None:
        n = self.nodes.get(addr)
        if n is None or n.left_s is not None:
            return
        n.left_s = time.time()
        if self.ctl is not None and n.managed:
            n.managed = False
            try:
                self.ctl.remove_node(addr, now_s=n.left_s)
            except Exception as exc:
                self.fail(f"removing worker {n.name} from the controller", exc)

    def live(self) -> list[WorkerNode]:
        return [n for n in self.nodes.values() if n.left_s is None]

    # ------------------------------------------------------------------ controller
    def make_controller(self, config: Any, event_sink: Callable[[Any], None]) -> Any:
        """The controller for the workers typed so far (None while none is)."""
        if self.ctl is not None:
            return self.ctl
        types = {n.node_type.name: n.node_type for n in self.live() if n.node_type is not None}
        if not types:
            return None
        from tao_core.control import Controller

        self.ctl = Controller(list(types.values()), config, event_sink=event_sink)
        now = time.time()
        for n in self.live():
            if n.node_type is not None:
                self._ctl_add(n, now)
        return self.ctl

    def _ctl_add(self, n: WorkerNode, now: float) -> None:
        try:
            if n.node_type.name not in self.ctl.type_index:
                self.ctl.add_node_type(n.node_type)  # a worker of a kind or size not seen before
            self.ctl.add_node(n.address, n.node_type.name, now_s=now)
            n.managed = True
        except Exception as exc:
            n.managed = False
            self.fail(f"adding worker {n.name} ({n.node_type.name}) to the controller", exc)

    def efficiency_order(self, workers: Any) -> list[str]:
        """Live worker addresses, least efficient first (the controller's scaling order,
        :func:`tao_core.power.catalog.least_efficient_first`); workers without a node type last."""
        from tao_core.power.catalog import least_efficient_first

        live = [n for n in self.live() if n.address in workers]
        return [n.address for n in least_efficient_first(live, lambda n: n.node_type)]
