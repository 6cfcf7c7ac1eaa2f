"""The driver's background sync with the controller session, engine-agnostic.

Each round (every ``sync_interval_s``, sooner when woken): poll the engine's nodes every
``node_poll_s`` (new ones registered with the controller, reservations of actors that are
gone handed back), collect the samplers' rows and settled task energies every
``collect_every_s``, then send one batch of the :class:`~tao_core.live.grants.GrantPool`
and take its reply: waiting tasks to run with their grants, the scaling plan to carry out.

Fail open: when the controller does not answer, the waiting tasks run unmanaged and new
ones go to the engine's default scheduling (the engine checks :attr:`Driver.failed_open`)
until it answers again; then, or when its epoch changed (it restarted), it drops every
grant and gets the node types, the nodes and the waiting tasks again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from tao_core.control.types import NodeType
from tao_core.live.grants import GrantPool, Waiting
from tao_core.live.nodes import NodeBook
from tao_core.live.plans import PlanRunner
from tao_core.live.values import Grant, TaskEnergy

log = logging.getLogger("tao_core.live")


class DriverPort:
    """The engine side of a driver (``tao_ray.runtime.Runtime``)."""

    def call(self, method: str, *args: Any) -> Any:
        """``ControllerSession.method(*args)`` in the controller's process (raises when it does not answer)."""
        raise NotImplementedError

    def ping(self) -> str:
        """The controller's epoch (raises when it does not answer; may look it up again)."""
        raise NotImplementedError

    def add_type(self, node_type: NodeType) -> None:
        raise NotImplementedError

    def node_types(self) -> dict[str, NodeType]:
        raise NotImplementedError

    def discover(self) -> bool:
        """Poll the engine's nodes; True when the controller's view changed."""
        return False

    def collect(self) -> list[TaskEnergy]:
        return []

    def run(self, w: Waiting, grant: Optional[Grant]) -> None:
        """Submit a waiting task now, on its grant's node (None: unmanaged)."""

    def flush(self) -> None:
        """Send what the engine batched (gate releases)."""


class Driver:
    def __init__(self, port: DriverPort, pool: GrantPool, book: NodeBook, plans: PlanRunner, *,
                 wake: Optional[threading.Event] = None, sync_interval_s: float = 0.1, node_poll_s: float = 1.0,
                 collect_every_s: float = 1.0) -> None:
        self.port, self.pool, self.book, self.plans = port, pool, book, plans
        self.sync_interval_s, self.node_poll_s, self.collect_every_s = sync_interval_s, node_poll_s, collect_every_s
        self.failed_open = False
        self.fail_open_events = 0
        self.epoch = ""
        self.budget: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._n_events = 0
        self.placing = bool(book.live())  #: some typed node is live: TAO places
        self.wake, self.stopped = wake or threading.Event(), threading.Event()
        self._pushed: set[str] = set()

    def start(self, epoch: str, declared: set[str]) -> None:
        """Begin with the controller of ``epoch`` that knows the node types ``declared``."""
        self.epoch, self._pushed = epoch, set(declared)
        self.port.call("reset")
        self.push_nodes()
        threading.Thread(target=self.loop, name="tao-sync", daemon=True).start()

    def push_nodes(self) -> None:
        """Tell the controller the node types it lacks and the nodes as they are now."""
        try:
            for name, t in self.port.node_types().items():
                if name not in self._pushed:
                    self.port.add_type(t)
                    self._pushed.add(name)
            self.port.call("sync_nodes", self.book.controller_view())
        except Exception as e:  # noqa: BLE001
            self.fail_open(f"sync_nodes: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ the loop
    def loop(self) -> None:
        last_nodes = last_collect = time.time()
        while not self.stopped.is_set():
            self.wake.wait(self.sync_interval_s)
            self.wake.clear()
            now = time.time()
            try:
                if now - last_nodes >= self.node_poll_s:
                    last_nodes = now
                    self._poll_nodes()
                if now - last_collect >= self.collect_every_s:
                    last_collect = now
                    self.pool.settled(self.port.collect())
                if self.failed_open:
                    self._try_recover()
                else:
                    self.sync_once()
            except Exception as e:  # noqa: BLE001 - never let the loop die
                log.warning("sync loop error: %s: %s", type(e).__name__, e)
            self.port.flush()

    def _poll_nodes(self) -> None:
        if self.port.discover():
            self.push_nodes()
            self.plans.refresh_requests()
        self.pool.check_held()
        self.placing = bool(self.book.live())

    def sync_once(self) -> None:
        try:
            reply = self.port.call("sync", self.pool.batch())
        except Exception as e:  # noqa: BLE001
            self.fail_open(f"sync: {type(e).__name__}: {e}")
            return
        if reply.epoch != self.epoch:
            log.warning("controller restarted (epoch %s -> %s); re-registering nodes", self.epoch, reply.epoch)
            self.resume(reply.epoch)
            return
        self.budget = reply.budget
        for w, grant in self.pool.apply(reply):
            if grant is None:
                log.warning("task %s rejected by the controller (job energy budget); running it unmanaged",
                            w.request.task_id)
            self.port.run(w, grant)
        if reply.scale:
            self.plans.apply(reply.scale)
        if self.pool.busy():
            self.wake.set()
            time.sleep(min(self.sync_interval_s, 0.05))

    # ------------------------------------------------------------------ fail open
    def fail_open(self, why: str) -> None:
        if self.failed_open:
            return
        self.failed_open = True
        self.fail_open_events += 1
        waiting = self.pool.clear(keep_waiting=False)
        log.warning("controller unavailable (%s); failing open: %d waiting and all new tasks go to the engine's "
                    "default scheduling until it answers again", why, len(waiting))
        for w in waiting:
            self.port.run(w, None)
        self.port.flush()

    def _try_recover(self) -> None:
        try:
            epoch = self.port.ping()
        except Exception:  # noqa: BLE001 - still down
            time.sleep(0.5)
            return
        self.resume(epoch)

    def resume(self, epoch: str) -> None:
        """The controller of ``epoch`` answers: it drops every grant, and gets the node types,
        the nodes and the waiting tasks again."""
        try:
            self.port.call("reset")
        except Exception as e:  # noqa: BLE001
            self.fail_open(f"reset: {type(e).__name__}: {e}")
            return
        self.pool.clear(keep_waiting=True)
        self.epoch, self.failed_open, self._pushed = epoch, False, set()
        self.push_nodes()
        if not self.failed_open:
            log.warning("controller answers again (epoch %s); TAO placement resumed", epoch)

    def decision_events(self) -> list[dict[str, Any]]:
        """The controller's decision events so far (those seen before, when it is down)."""
        try:
            self._n_events, new = self.port.call("decision_events", self._n_events)
            self.events.extend(new)
        except Exception:  # noqa: BLE001
            pass
        return self.events

    def status(self) -> dict[str, Any]:
        """Whether TAO places (``mode``, and ``why`` not), failing open, waiting tasks and
        reservations held, the nodes (the core's :class:`NodeState` names) and untyped
        ones, the budget state and the scale log."""
        book, pool = self.book, self.pool
        with book.lock, pool.lock:
            return {
                "mode": "placing" if self.placing else "observe-only",
                "why": "" if self.placing else "no node with a TAO node type is in the cluster: TAO places nothing "
                                               "and meters no node",
                "counters": {**book.counters, "fail_open_events": self.fail_open_events,
                             "reservations_released": pool.released},
                "failed_open": self.failed_open, "queued": len(pool.waiting), "reservations_held": len(pool.held),
                "nodes": {r.node_id: {"type": r.node_type, "state": str(r.state), "live": r.live,
                                      "released": r.released_at is not None, "removed": r.removed_at is not None}
                          for r in book.metered()},
                "untyped_nodes": sorted(book.untyped), "booting": book.booting_types(), "budget": dict(self.budget),
                "scale_log": list(book.scale_log)}

    def stop(self) -> None:
        """Stop the loop; the waiting tasks run unmanaged."""
        self.stopped.set()
        self.wake.set()
        for w in self.pool.clear(keep_waiting=False):
            self.port.run(w, None)
        self.port.flush()
