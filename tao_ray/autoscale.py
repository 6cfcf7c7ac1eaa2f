"""Carrying out the controller's scaling plan on Ray.

- ``power_on`` (scale up): a hint to Ray's autoscaler through the public
  ``ray.autoscaler.sdk.request_resources(bundles=..., bundle_label_selectors=...)``: one
  bundle of the node type's CPUs per node to boot, each with the label selector
  ``{"tao-node-type": TYPE}`` so the autoscaler launches the efficient type the controller
  chose (node types in the autoscaler config must carry that label). The request persists,
  as Ray documents, until replaced; it is cleared when nothing is booting. A user callback
  ``on_power_on(node_type)`` replaces it (used with ``ray.cluster_utils.Cluster``).
- ``drain`` (consolidation): the controller stops placing work on the node at once; its
  running work ends, and the controller powers it off once it is idle. Ray is not told: a
  GCS drain cannot be undone and would strand tasks TAO already queued there.
- ``power_off`` (scale down) of a node with no work: the user callback
  ``on_power_off(node_id)`` when given (e.g. ``Cluster.remove_node``); else with
  ``drain="gcs"`` TAO takes a last reading, stops its sampler actor there (an actor, even
  with ``num_cpus=0``, makes Ray count a node busy) and asks Ray's GCS to drain the node with
  reason IDLE_TERMINATION (``GcsClient.drain_node``: the call behind ``ray drain-node`` and
  autoscaler v2's idle termination; not part of Ray's public API, so opt-in). Ray accepts
  only if the node is idle, and then the node's raylet leaves the cluster (the autoscaler or
  cloud provider reclaims the machine); if Ray refuses (something of the user's still runs
  there) TAO restarts its sampler and the node stays on. Else, when the cluster has an
  autoscaler (``launchable`` given), TAO *releases* the node: it stops its own sampler actor
  there and Ray's autoscaler removes the node after its idle timeout (TAO's consolidation is
  what lets it go idle); from release until the node leaves it is modeled at its idle power.
  With none of these ``tao_ray.init`` turns the controller's scale-down off, so no plan asks
  for one; a node kept on anyway is logged and told to the controller. The node's energy
  after a real removal is modeled as the node type's ``off_w`` (0 W by default). Every
  outcome goes to the scale log and, as ``carried-out:ACTION`` decisions, to the ledger.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import ray

from tao_core.control.types import NodeState
from tao_ray.nodes import TYPE_LABEL

log = logging.getLogger("tao_ray")


def hint_bundles(node_types: dict[str, Any], booting_types: list[str],
                 hint_with: str = "label") -> tuple[list[dict], list[dict]]:
    """(bundles, bundle_label_selectors) asking the autoscaler for one node per entry of
    ``booting_types`` (node type names). ``hint_with="label"``: each bundle carries the label
    selector ``{"tao-node-type": TYPE}``; ``"resource"``: each bundle also asks for one unit of
    the custom resource ``tao_type_TYPE`` (for autoscalers that pick node types by resources
    only; the autoscaler's node types must then advertise that resource)."""
    from tao_ray.nodes import TYPE_RESOURCE_PREFIX

    bundles, selectors = [], []
    for typ in booting_types:
        t = node_types[typ]
        b: dict[str, float] = {"CPU": float(t.cpus)}
        if t.gpus:
            b["GPU"] = float(t.gpus)
        if hint_with == "resource":
            b[TYPE_RESOURCE_PREFIX + typ] = 1.0
        bundles.append(b)
        selectors.append({TYPE_LABEL: typ})
    return bundles, selectors


def gcs_drain_idle(node_id: str, tries: int = 10, wait_s: float = 0.2) -> tuple[bool, str]:
    """Ask Ray's GCS to drain ``node_id`` (hex) with reason IDLE_TERMINATION; Ray accepts
    only an idle node, which then leaves the cluster. A refusal because the node is not idle
    is retried ``tries`` times ``wait_s`` seconds apart (an actor just killed takes a moment
    to go). Returns (accepted, Ray's reason for a refusal)."""
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
        log.info("tao_ray: GCS refused to drain %s: %s", node_id[:12], err)
        return False, str(err)
    except Exception as e:  # noqa: BLE001
        log.warning("tao_ray: GCS drain of %s failed: %s", node_id[:12], e)
        return False, f"{type(e).__name__}: {e}"


def _busy_nodes() -> set[str]:
    """Nodes where Ray reports CPUs or GPUs in use (available < total); empty if unknown."""
    try:
        from ray._private import state

        avail = state.available_resources_per_node()
        total = state.total_resources_per_node()
    except Exception:  # noqa: BLE001
        return set()
    out = set()
    for nid, tot in total.items():
        av = avail.get(nid, {})
        if any(av.get(k, 0.0) < tot.get(k, 0.0) - 1e-9 for k in ("CPU", "GPU")):
            out.add(nid)
    return out


def apply(rt: Any, scale: dict[str, Any]) -> None:
    """Carry out one scaling plan from the controller (see module doc). ``rt`` is the
    driver runtime: its node registry, options, controller calls and scale log."""
    reason = scale.get("reason", "")
    reg = rt.registry
    for nid in scale.get("drain", ()):
        rec = reg.nodes.get(nid)
        if rec is not None and rec.ray is not None:
            rec.state = NodeState.DRAINING
            rt.counters["drain"] += 1
            rt.note("drain", reason, node_id=nid)
    busy = _busy_nodes()
    for nid in scale.get("power_off", ()):
        rec = reg.nodes.get(nid)
        if rec is None or rec.ray is None or not rec.live:
            continue
        if nid in busy:  # Ray still runs something there (work TAO did not place)
            log.info("tao_ray: not powering off %s: Ray reports CPUs in use there", nid[:12])
            _keep_on(rt, rec, "kept-busy", "Ray reports CPUs or GPUs in use there")
        else:
            _power_off(rt, rec, reason)
    wake = []
    for nid in scale.get("power_on", ()):
        rec = reg.nodes.get(nid)
        if rec is None:
            continue
        if rec.released_at is not None and rec.removed_at is None:
            reg.resume(rec)  # released but still there: take it back
            rt.push_nodes()
            continue
        rec.state, rec.boot_at = NodeState.BOOTING, time.time()
        wake.append(rec.node_type)
    if wake:
        rt.counters["scale_up_hints"] += len(wake)
        rt.note("power_on", reason, node_types=wake)
        if rt.opts.on_power_on is not None:
            for typ in wake:
                try:
                    rt.opts.on_power_on(typ)
                except Exception as e:  # noqa: BLE001
                    log.warning("tao_ray: on_power_on(%s) failed: %s", typ, e)
        else:
            rt.refresh_requests()


def _power_off(rt: Any, rec: Any, reason: str) -> None:
    """Remove one idle node the way this session can (see module doc)."""
    reg, opts = rt.registry, rt.opts
    if opts.on_power_off is not None:
        reg.stop_sampler(rec)  # it must not be restarted elsewhere once its node is gone
        try:
            opts.on_power_off(rec.node_id)
        except Exception as e:  # noqa: BLE001
            log.warning("tao_ray: on_power_off(%s) failed: %s", rec.node_id[:12], e)
            reg.resume(rec)
            _keep_on(rt, rec, "power-off-failed", f"on_power_off raised {type(e).__name__}: {e}")
            return
    elif opts.drain == "gcs":
        reg.stop_sampler(rec)  # TAO's own actor there would make Ray refuse
        done, why = gcs_drain_idle(rec.node_id)
        if not done:
            reg.resume(rec)  # a new sampler; the node stays on
            _keep_on(rt, rec, "drain-refused", why)
            return
    elif reg.launchable:
        # leave it to Ray's autoscaler: TAO's own sampler actor would keep the node from
        # counting as idle, so it stops; the node is modeled at idle power until it leaves
        reg.stop_sampler(rec)
        with reg.lock:
            rec.released_at, rec.state = time.time(), NodeState.OFF
        rt.counters["power_off"] += 1
        rt.note("release", reason, node_id=rec.node_id)
        return
    else:
        _keep_on(rt, rec, "kept-on", "no way to power a node off in this session (on_power_off, drain='gcs' "
                 "or launchable)")
        return
    with reg.lock:
        rec.removed_at, rec.state = time.time(), NodeState.OFF
    rt.counters["power_off"] += 1
    rt.note("power_off", reason, node_id=rec.node_id)


def _keep_on(rt: Any, rec: Any, action: str, why: str) -> None:
    """The node stays on: say so in the scale log and to the controller."""
    rec.state = NodeState.ON
    rt.note(action, why, node_id=rec.node_id)
    try:
        rt.controller.set_node_state.remote(rt.token, rec.node_id, str(NodeState.ON))
    except Exception:  # noqa: BLE001
        pass


def request(node_types: dict[str, Any], booting: list[str], hint_with: str = "label") -> None:
    """``request_resources`` for one node of each type in ``booting`` (empty: clear the request)."""
    try:
        from ray.autoscaler.sdk import request_resources

        bundles, selectors = hint_bundles(node_types, booting, hint_with)
        request_resources(bundles=bundles, bundle_label_selectors=selectors)
    except Exception as e:  # noqa: BLE001
        log.warning("tao_ray: request_resources failed: %s", e)
