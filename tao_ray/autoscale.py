"""Carrying out the controller's scaling plan on Ray (:class:`Scaler`).

- ``power_on``: a hint to Ray's autoscaler through the public
  ``ray.autoscaler.sdk.request_resources(bundles=..., bundle_label_selectors=...)``, one
  bundle of the node type's CPUs per node to boot with the selector ``{"tao-node-type":
  TYPE}`` (``hint_with="resource"``: also one unit of ``tao_type_TYPE``); the request stands
  until nothing boots. A user callback ``on_power_on(node_type)`` replaces it. A node TAO
  released but still there is taken back instead.
- ``drain``: the controller places no new work there; Ray is not told (a GCS drain cannot
  be undone and would strand tasks TAO queued there).
- ``power_off`` of an idle node: ``on_power_off(node_id)`` when given; else with
  ``drain="gcs"`` TAO stops its own sampler there (an actor makes Ray count the node busy)
  and asks Ray's GCS to drain it with reason IDLE_TERMINATION (``GcsClient.drain_node``,
  not public, so opt-in; Ray accepts only an idle node, which then leaves; on a refusal TAO
  starts a new sampler and the node stays on); else, with ``launchable``, TAO *releases* it
  (stops its sampler; Ray's idle timeout removes the node). With none of these
  ``tao_ray.init`` turns scale-down off. A node Ray reports busy stays on. Every outcome
  goes to the scale log and, as ``carried-out:ACTION`` decisions, to the ledger.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import ray

from tao_core.control.types import NodeState
from tao_core.live.nodes import NodeBook, TrackedNode
from tao_ray.nodes import TYPE_LABEL, TYPE_RESOURCE_PREFIX

log = logging.getLogger("tao_ray")


def hint_bundles(node_types: dict[str, Any], booting: list[str], hint_with: str = "label") -> tuple[list, list]:
    """(bundles, bundle_label_selectors) asking for one node per entry of ``booting``."""
    bundles, selectors = [], []
    for typ in booting:
        t = node_types[typ]
        b = {"CPU": float(t.cpus), **({"GPU": float(t.gpus)} if t.gpus else {}),
             **({TYPE_RESOURCE_PREFIX + typ: 1.0} if hint_with == "resource" else {})}
        bundles.append(b)
        selectors.append({TYPE_LABEL: typ})
    return bundles, selectors


def gcs_drain_idle(node_id: str, tries: int = 10, wait_s: float = 0.2) -> tuple[bool, str]:
    """Ask Ray's GCS to drain ``node_id`` with reason IDLE_TERMINATION, retrying a refusal
    ``tries`` times (an actor just killed takes a moment to go). (accepted, Ray's reason)."""
    try:
        from ray.core.generated import autoscaler_pb2

        gcs = ray._raylet.GcsClient(address=ray.get_runtime_context().gcs_address)
        reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION")
        err = ""
        for i in range(max(tries, 1)):
            ok, err = gcs.drain_node(node_id, reason, "tao: idle node, powered off", 0)
            if ok:
                return True, ""
            if i + 1 < tries:
                time.sleep(wait_s)
        return False, str(err)
    except Exception as e:  # noqa: BLE001
        log.warning("tao_ray: GCS drain of %s failed: %s", node_id[:12], e)
        return False, f"{type(e).__name__}: {e}"


def busy_nodes() -> set[str]:
    """Nodes where Ray reports CPUs or GPUs in use (available < total); empty if unknown."""
    try:
        from ray._private import state

        avail, total = state.available_resources_per_node(), state.total_resources_per_node()
    except Exception:  # noqa: BLE001
        return set()
    return {nid for nid, tot in total.items()
            if any(avail.get(nid, {}).get(k, 0.0) < tot.get(k, 0.0) - 1e-9 for k in ("CPU", "GPU"))}


class Scaler:
    """Carries out plans on the session's nodes. ``tell(node, state)``: tell the controller a
    node's state; ``push()``: send it the nodes as they are."""

    def __init__(self, book: NodeBook, nodes: Any, opts: Any, *, tell: Callable[[str, NodeState], None],
                 push: Callable[[], None]) -> None:
        self.book, self.nodes, self.opts, self.tell, self.push = book, nodes, opts, tell, push
        self._requested: list[str] = []

    def apply(self, scale: dict[str, Any]) -> None:
        reason = scale.get("reason", "")
        for nid in scale.get("drain", ()):
            rec = self.book.nodes.get(nid)
            if rec is not None and rec.present:
                self.book.set(rec, NodeState.DRAINING, "drain", reason)
        busy = busy_nodes()
        for nid in scale.get("power_off", ()):
            rec = self.book.nodes.get(nid)
            if rec is None or not rec.live:
                continue
            if nid in busy:  # Ray still runs something there (work TAO did not place)
                self._keep_on(rec, "kept-busy", "Ray reports CPUs or GPUs in use there")
            else:
                self._power_off(rec, reason)
        wake = [r for r in (self.book.nodes.get(n) for n in scale.get("power_on", ())) if r is not None]
        for rec in [r for r in wake if r.released_at is not None and r.removed_at is None]:
            self.nodes.resume(rec)  # released but still there: take it back
            self.push()
        wake = [r for r in wake if r.released_at is None]
        for rec in wake:
            self.book.set(rec, NodeState.BOOTING, "power_on", reason)
        if wake:
            self.book.note("power_on", reason, node_types=[r.node_type for r in wake])
            self.book.counters["scale_up_hints"] += len(wake)
            if self.opts.on_power_on is None:
                self.refresh_requests()
            else:
                for rec in wake:
                    _call(self.opts.on_power_on, rec.node_type)

    def _power_off(self, rec: TrackedNode, reason: str) -> None:
        """Remove one idle node the way this session can (see the module doc)."""
        opts = self.opts
        if opts.on_power_off is None and opts.drain != "gcs" and not self.book.launchable:
            self._keep_on(rec, "kept-on", "no way to power a node off in this session (on_power_off, drain='gcs' "
                          "or launchable)")
            return
        self.nodes.stop_sampler(rec)  # gone with its node, or in the way of Ray seeing it idle
        if opts.on_power_off is not None:
            err = _call(opts.on_power_off, rec.node_id)
            if err:
                self.nodes.resume(rec)
                self._keep_on(rec, "power-off-failed", f"on_power_off raised {err}")
                return
        elif opts.drain == "gcs":
            done, why = gcs_drain_idle(rec.node_id)
            if not done:
                self.nodes.resume(rec)  # a new sampler; the node stays on
                self._keep_on(rec, "drain-refused", why)
                return
        else:  # Ray's autoscaler removes it after its idle timeout; modeled at idle power until then
            self.book.set(rec, NodeState.OFF, "release", reason)
            return
        self.book.set(rec, NodeState.OFF, "power_off", reason)

    def _keep_on(self, rec: TrackedNode, action: str, why: str) -> None:
        """The node stays on: the scale log and the controller say so."""
        self.book.set(rec, NodeState.ON, action, why)
        self.tell(rec.node_id, NodeState.ON)

    def refresh_requests(self) -> None:
        """Ask Ray's autoscaler for exactly the placeholders now booting (an empty request
        clears it) when that changed, unless the user adds nodes (``on_power_on``)."""
        booting = self.book.booting_types()
        if not self.book.launchable or self.opts.on_power_on is not None or booting == self._requested:
            return
        self._requested = booting
        try:
            from ray.autoscaler.sdk import request_resources

            bundles, selectors = hint_bundles(self.nodes.node_types, booting, self.opts.hint_with)
            request_resources(bundles=bundles, bundle_label_selectors=selectors)
        except Exception as e:  # noqa: BLE001
            log.warning("tao_ray: request_resources failed: %s", e)


def _call(fn: Callable[[str], Any], arg: str) -> str:
    """``fn(arg)``; the error in words, empty when it worked."""
    try:
        fn(arg)
        return ""
    except Exception as e:  # noqa: BLE001 - the user's callback
        log.warning("tao_ray: %s(%s) failed: %s", getattr(fn, "__name__", "callback"), arg[:12], e)
        return f"{type(e).__name__}: {e}"
