"""``tao ray report``: the energy report of a running TAO session (or of one job of it)
read from outside its driver: the samplers' timelines, the controller's node types,
configuration and decisions, and Ray's task events.

It needs the session's token (:func:`tao_ray.session_token`; the driver also writes it,
readable by its user only, to ``tao_core.live.token.token_file("ray")``). Work is known from Ray's task events
only (millisecond resolution; TAO's wrapper spans stay with the driver), and nodes that
left the cluster took their timelines with them: the report says both.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from tao_core.errors import InputError
from tao_core.live import report
from tao_core.live.session import node_types_of
from tao_ray.records import CONTROLLER_NAME, NAMESPACE, sampler_name

def _session(address: str, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The controller's description of the session and its decision events."""
    import ray

    try:
        ctl = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
    except ValueError:
        raise InputError(f"--address {address}: no TAO session runs on this cluster (no {CONTROLLER_NAME} actor)") from None
    try:
        return ray.get(ctl.do.remote(token, "describe"), timeout=30), ray.get(
            ctl.do.remote(token, "decision_events", 0), timeout=30)[1]
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, PermissionError):
            raise InputError(f"--token: {e.cause}") from None
        raise


def _histories(nodes: list, types: dict[str, Any], token: str) -> tuple[list[report.NodeHistory], list[str]]:
    """Each session node's whole timeline from its sampler, and notes on those gone."""
    import ray

    cpus = {n["NodeID"]: float((n.get("Resources") or {}).get("CPU", 0.0)) for n in ray.nodes() if n["Alive"]}
    out, notes = [], []
    for nid, typ, _state in nodes:
        try:
            b = ray.get(ray.get_actor(sampler_name(nid), namespace=NAMESPACE).fetch.remote(token), timeout=30)
        except Exception:  # noqa: BLE001 - gone with its node
            if not str(nid).startswith("launchable-"):
                notes.append(f"node {nid[:12]} has no sampler any more: its energy is not in this report")
            continue
        out.append(report.NodeHistory(nid, typ, cpus.get(nid) or types[typ].cpus, b.rows))
    return out, notes


def build(address: str, token: str, *, job: Optional[str] = None, path: Optional[str] = None,
          ledger: Optional[str] = None) -> tuple[Any, dict]:
    """(per-task DataFrame, report dict) of the session on the cluster at ``address``."""
    import ray

    from tao_ray.task_events import TaskEventReader

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    sess, events = _session(address, token)
    types = {t.name: t for t in node_types_of(sess["node_types"])}
    nodes, notes = _histories(sess["nodes"], types, token)
    if not any(n.rows for n in nodes):
        raise InputError(f"--address {address}: the TAO session there meters no node")
    t0 = min(n.rows[0].t_s for n in nodes if n.rows)
    reader = TaskEventReader(since_s=t0)
    reader.poll()
    notes += reader.notes() + ["read from outside the driver: tasks are known from Ray's task events only"]
    jid = reader.resolve_job(job) if job else None
    if jid is not None and jid not in reader.jobs:
        raise InputError(f"--job {job}: no such Ray job on this cluster (known: {sorted(reader.jobs)})")
    inp = report.ReportInputs("ray", types, nodes, reader.rows(), sess["config"], t0, time.time(), events,
                              notes=notes, jobs=dict(reader.jobs))
    return report.build(inp, path=path, ledger=ledger, job=jid)
