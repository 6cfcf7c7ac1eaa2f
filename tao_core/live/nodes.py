"""The nodes a live session knows: each with its node type, its power state (the core's
:class:`~tao_core.control.types.NodeState`), its timeline, and placeholders for nodes the
engine's autoscaler may launch; and what was done to them (the scale log).

A node *released* to the engine's autoscaler (its sampler stopped so the engine sees it
idle) is ``OFF`` for the controller from the release on, with ``released_at`` set until it
leaves (``removed_at``); its energy over that stretch is modeled at its idle watts, after
it left at its off watts (see :mod:`tao_core.live.report`). Times are wall-clock seconds.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from tao_core.control.types import NodeState
from tao_core.live.report import NodeHistory
from tao_core.live.timeline import NodeTimeline, wrapper_rows
from tao_core.task_rows import TaskRow

SCALE_COUNTERS = ("scale_up_hints", "power_off", "drain")


@dataclass
class TrackedNode:
    """A node of the engine (``present``), or a placeholder for one its autoscaler may
    launch. ``handle``: the engine's handle of its sampler."""

    node_id: str
    node_type: str
    cpus: float = 0.0
    state: NodeState = NodeState.ON
    present: bool = False
    shared: bool = False
    handle: Any = None
    timeline: Optional[NodeTimeline] = None
    released_at: Optional[float] = None
    removed_at: Optional[float] = None
    boot_at: Optional[float] = None
    retired: bool = False  #: a placeholder no longer offered (its node came, or capacity shrank)

    @property
    def live(self) -> bool:
        """In the cluster with TAO's sampler running."""
        return self.present and self.removed_at is None and self.released_at is None

    def history(self) -> NodeHistory:
        return NodeHistory(self.node_id, self.node_type, self.cpus, list(self.timeline.rows), self.released_at,
                           self.removed_at)


@dataclass
class NodeBook:
    """The session's nodes (see the module doc); ``launchable``: node type -> most nodes of
    it the autoscaler may run."""

    launchable: Mapping[str, int] = field(default_factory=dict)
    boot_timeout_s: float = 120.0
    clock: Callable[[], float] = time.time
    nodes: dict[str, TrackedNode] = field(default_factory=dict)
    untyped: dict[str, Any] = field(default_factory=dict)
    scale_log: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCALE_COUNTERS, 0))
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Any = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ views
    def live(self) -> list[TrackedNode]:
        with self.lock:
            return [r for r in self.nodes.values() if r.live]

    def metered(self) -> list[TrackedNode]:
        """Every node that was ever in the cluster (timelines to report)."""
        with self.lock:
            return [r for r in self.nodes.values() if r.present]

    def controller_view(self) -> list[tuple[str, str, str]]:
        """(node id, type, state) of every node and placeholder the controller should know."""
        with self.lock:
            return [(r.node_id, r.node_type, str(r.state if r.live or not r.present else NodeState.OFF))
                    for r in self.nodes.values() if not r.retired]

    def booting_types(self) -> list[str]:
        """Node types of the placeholders now booting (what to ask the autoscaler for)."""
        with self.lock:
            return [r.node_type for r in self.nodes.values()
                    if not r.present and not r.retired and r.state == NodeState.BOOTING]

    def window(self, t0: float, t1: float) -> tuple[list[NodeHistory], list[TaskRow], list[dict[str, Any]]]:
        """For a report of ``[t0, t1]``: every metered node's history, its wrapper spans as
        task rows, and what was done to nodes then."""
        with self.lock:
            nodes = self.metered()
            return ([r.history() for r in nodes], wrapper_rows([s for r in nodes for s in r.timeline.spans]),
                    [dict(o) for o in self.scale_log if t0 <= o["t_s"] <= t1])

    # ------------------------------------------------------------------ membership
    def join(self, rec: TrackedNode) -> None:
        """A node of the engine joined; the placeholder booted for its type is retired."""
        with self.lock:
            for p in self.nodes.values():
                if not p.present and p.node_type == rec.node_type and p.state == NodeState.BOOTING and not p.retired:
                    p.retired = True
                    break
            self.nodes[rec.node_id] = rec

    def gone(self, alive: set[str]) -> bool:
        """Nodes no longer in ``alive`` left; placeholders follow. True when the controller's view changed."""
        changed = False
        with self.lock:
            for rec in self.nodes.values():
                if rec.present and rec.node_id not in alive and rec.removed_at is None:
                    rec.removed_at, rec.state = self.clock(), NodeState.OFF
                    rec.retired = bool(self.launchable)  # placeholders stand for the capacity now
                    changed = True
            return self._placeholders(alive) or changed

    def _placeholders(self, alive: set[str]) -> bool:
        """Keep, per launchable type, (most - alive) placeholders; a launch that did not come
        within the boot timeout is offered again."""
        now, changed = self.clock(), False
        for typ, most in self.launchable.items():
            n_alive = sum(1 for nid in alive if nid in self.nodes and self.nodes[nid].node_type == typ)
            mine = sorted((r for r in self.nodes.values() if not r.present and r.node_type == typ and not r.retired),
                          key=lambda r: (r.state != NodeState.BOOTING, r.node_id))
            while len(mine) > max(0, int(most) - n_alive):
                r = mine.pop(0)
                r.retired = True
                changed = changed or r.state == NodeState.BOOTING
            while len(mine) < max(0, int(most) - n_alive):
                r = TrackedNode(f"launchable-{typ}-{next(self._ids)}", typ, state=NodeState.OFF)
                self.nodes[r.node_id] = r
                mine.append(r)
                changed = True
            for r in mine:
                if r.state == NodeState.BOOTING and now - (r.boot_at or now) > self.boot_timeout_s:
                    r.state = NodeState.OFF
                    changed = True
        return changed

    # ------------------------------------------------------------------ what was done
    def note(self, action: str, reason: str, **what: Any) -> None:
        """One line of the scale log (what TAO did to a node, or why it did not)."""
        with self.lock:
            self.scale_log.append({"t_s": self.clock(), "action": action, "reason": reason, **what})

    def set(self, rec: TrackedNode, state: NodeState, action: str, reason: str, **what: Any) -> None:
        """``rec`` is now ``state`` because of ``action`` (logged; counted when a scale action)."""
        with self.lock:
            rec.state = state
            now = self.clock()
            if action == "release":
                rec.released_at = now
            elif action == "power_off":
                rec.removed_at = now
            elif action == "power_on":
                rec.boot_at = now
            if action in self.counters:
                self.counters[action] += 1
            elif action == "release":
                self.counters["power_off"] += 1
        if action != "power_on":
            self.note(action, reason, node_id=rec.node_id, **what)

    def resumed(self, rec: TrackedNode) -> None:
        """A released node (or one whose sampler TAO stopped) is taken back."""
        with self.lock:
            rec.released_at = None
            rec.state = NodeState.ON
