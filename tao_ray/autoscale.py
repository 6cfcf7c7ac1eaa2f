"""What TAO does to Ray's nodes for a scaling plan (:class:`RayPort`; the plan itself is
carried out by :class:`tao_core.live.plans.PlanRunner`).

- remove an idle node: the user's ``on_power_off(node_id)``, else with ``drain="gcs"`` Ray's
  GCS drain with reason IDLE_TERMINATION (``GcsClient.drain_node``, the call behind ``ray
  drain-node``; not public, so opt-in; Ray accepts only an idle node, which then leaves);
- add nodes: the user's ``on_power_on(node_type)``, else the public
  ``ray.autoscaler.sdk.request_resources`` with one bundle of the type's CPUs per node and
  the label selector ``{"tao-node-type": TYPE}`` (``hint_with="resource"``: also one unit
  of ``tao_type_TYPE``), standing until nothing boots;
- busy nodes: where Ray reports CPUs or GPUs in use.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import ray

from tao_core.control.types import NodeState
from tao_core.live.nodes import TrackedNode
from tao_core.live.plans import NodePort
from tao_ray.nodes import TYPE_LABEL, TYPE_RESOURCE_PREFIX

log = logging.getLogger("tao_ray")


def hint_bundles(node_types: dict[str, Any], booting: list[str], hint_with: str = "label") -> tuple[list, list]:
    """(bundles, bundle_label_selectors) asking for one node per entry of ``booting``."""
    bundles = [{"CPU": float(node_types[t].cpus), **({"GPU": float(node_types[t].gpus)} if node_types[t].gpus else {}),
                **({TYPE_RESOURCE_PREFIX + t: 1.0} if hint_with == "resource" else {})} for t in booting]
    return bundles, [{TYPE_LABEL: t} for t in booting]


def gcs_drain_idle(node_id: str, tries: int = 10, wait_s: float = 0.2) -> tuple[bool, str]:
    """Ask Ray's GCS to drain ``node_id`` with reason IDLE_TERMINATION, retrying a refusal
    (an actor just killed takes a moment to go). (accepted, Ray's reason)."""
    try:
        from ray.core.generated import autoscaler_pb2

        gcs = ray._raylet.GcsClient(address=ray.get_runtime_context().gcs_address)
        reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION")
        for i in range(tries):
            ok, err = gcs.drain_node(node_id, reason, "tao: idle node, powered off", 0)
            if ok:
                return True, ""
            time.sleep(wait_s if i + 1 < tries else 0.0)
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


class RayPort(NodePort):
    """``nodes``: the session's :class:`tao_ray.cluster.RayNodes`; ``opts``: its options."""

    def __init__(self, nodes: Any, opts: Any, tell: Callable[[str, NodeState], None], push: Callable[[], None]) -> None:
        self.nodes, self.opts, self.tell, self.push = nodes, opts, tell, push
        self.can_remove = opts.on_power_off is not None or opts.drain == "gcs"
        self.adds_nodes = opts.on_power_on is not None

    def busy(self) -> set[str]:
        return busy_nodes()

    def stop_sampler(self, rec: TrackedNode) -> None:
        self.nodes.stop_sampler(rec)

    def resume(self, rec: TrackedNode) -> None:
        self.nodes.resume(rec)

    def remove(self, rec: TrackedNode) -> Optional[tuple[str, str]]:
        if self.opts.on_power_off is not None:
            err = _call(self.opts.on_power_off, rec.node_id)
            return ("power-off-failed", f"on_power_off raised {err}") if err else None
        done, why = gcs_drain_idle(rec.node_id)
        return None if done else ("drain-refused", why)

    def add(self, node_type: str) -> None:
        _call(self.opts.on_power_on, node_type)

    def request(self, booting_types: list[str]) -> None:
        try:
            from ray.autoscaler.sdk import request_resources

            bundles, selectors = hint_bundles(self.nodes.node_types, booting_types, self.opts.hint_with)
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
