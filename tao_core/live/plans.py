"""Carrying out the controller's scaling plans on a live cluster, through what the engine
can do to its nodes (a :class:`NodePort`: ``tao_ray.autoscale.RayPort``).

- ``drain``: the controller places no new work on the node (the engine is not told).
- ``power_off`` of an idle node: the engine removes it (the user's callback, or its own
  drain call) after TAO stopped its sampler there; if it cannot, TAO starts a new sampler
  and the node stays on. Else, where the engine's autoscaler may remove nodes
  (``launchable``), TAO *releases* it (stops its sampler; the autoscaler's idle timeout
  removes it). A node the engine reports busy, or one no way can remove, stays on.
- ``power_on``: a released node still there is taken back; otherwise its placeholder
  boots, through the user's callback or the autoscaler's resource request for exactly the
  placeholders booting.

Every outcome goes to the book's scale log (and from there, as ``carried-out:ACTION``
decisions, to the ledger); a node that stays on is told to the controller.
"""
from __future__ import annotations

from typing import Any, Optional

from tao_core.control.types import NodeState
from tao_core.live.nodes import NodeBook, TrackedNode


class NodePort:
    """What the engine does to its nodes; this one can do nothing."""

    #: the engine removes an idle node itself (``remove``)
    can_remove = False
    #: the user adds nodes (``add``) rather than the autoscaler (``request``)
    adds_nodes = False

    def busy(self) -> set[str]:
        """Nodes where the engine runs work TAO did not place."""
        return set()

    def stop_sampler(self, rec: TrackedNode) -> None: ...

    def resume(self, rec: TrackedNode) -> None: ...

    def remove(self, rec: TrackedNode) -> Optional[tuple[str, str]]:
        """Remove an idle node; None when done, else (scale-log action, why not)."""
        return "kept-on", "the engine cannot remove nodes"

    def add(self, node_type: str) -> None: ...

    def request(self, booting_types: list[str]) -> None:
        """Ask the autoscaler for one node of each type (empty: clear the request)."""

    def tell(self, node_id: str, state: NodeState) -> None:
        """Tell the controller a node's state."""

    def push(self) -> None:
        """Send the controller the nodes as they are."""


class PlanRunner:
    def __init__(self, book: NodeBook, port: NodePort) -> None:
        self.book, self.port = book, port
        self._requested: list[str] = []

    def apply(self, scale: dict[str, Any]) -> None:
        reason = scale.get("reason", "")
        for rec in self._nodes(scale.get("drain", ())):
            if rec.present:
                self.book.set(rec, NodeState.DRAINING, "drain", reason)
        busy = self.port.busy()
        for rec in self._nodes(scale.get("power_off", ())):
            if not rec.live:
                continue
            if rec.node_id in busy:
                self._keep_on(rec, "kept-busy", "the engine reports CPUs or GPUs in use there")
            else:
                self._power_off(rec, reason)
        self._power_on(self._nodes(scale.get("power_on", ())), reason)

    def _nodes(self, ids: Any) -> list[TrackedNode]:
        return [r for r in (self.book.nodes.get(n) for n in ids) if r is not None]

    def _power_off(self, rec: TrackedNode, reason: str) -> None:
        if not (self.port.can_remove or self.book.launchable):
            self._keep_on(rec, "kept-on", "no way to power a node off in this session (on_power_off, drain='gcs' "
                          "or launchable)")
            return
        self.port.stop_sampler(rec)  # gone with its node, or in the way of the engine seeing it idle
        if not self.port.can_remove:
            self.book.set(rec, NodeState.OFF, "release", reason)
            return
        refused = self.port.remove(rec)
        if refused is not None:
            self.port.resume(rec)
            self._keep_on(rec, *refused)
            return
        self.book.set(rec, NodeState.OFF, "power_off", reason)

    def _keep_on(self, rec: TrackedNode, action: str, why: str) -> None:
        self.book.set(rec, NodeState.ON, action, why)
        self.port.tell(rec.node_id, NodeState.ON)

    def _power_on(self, recs: list[TrackedNode], reason: str) -> None:
        for rec in recs:
            if rec.released_at is not None and rec.removed_at is None:
                self.port.resume(rec)  # released but still there: taken back
                self.port.push()
        wake = [r for r in recs if r.released_at is None]
        if not wake:
            return
        for rec in wake:
            self.book.set(rec, NodeState.BOOTING, "power_on", reason)
        self.book.note("power_on", reason, node_types=[r.node_type for r in wake])
        self.book.counters["scale_up_hints"] += len(wake)
        if self.port.adds_nodes:
            for rec in wake:
                self.port.add(rec.node_type)
        else:
            self.refresh_requests()

    def refresh_requests(self) -> None:
        """Ask the autoscaler for exactly the placeholders now booting, when that changed."""
        booting = self.book.booting_types()
        if self.book.launchable and not self.port.adds_nodes and booting != self._requested:
            self._requested = booting
            self.port.request(booting)
