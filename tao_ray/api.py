"""User-facing wrappers: ``@tao_ray.remote``, ``tao_ray.options``,
``tao_ray.placement_group`` and ``tao_ray.label_selector``. They send work where the
controller says through Ray's public strategies (``NodeAffinitySchedulingStrategy``,
``bundle_label_selector``, ``label_selector``) and fall back to Ray's own scheduling
whenever TAO is not initialised or has failed open. An actor's or a placement group's
reservation is handed back when Ray reports the actor dead or the group removed.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tao_core.live.values import Grant
from tao_core.power.catalog import watts_per_work
from tao_ray import _state
from tao_ray.nodes import NODE_ID_LABEL, TYPE_LABEL
from tao_ray.spans import wrap_function

log = logging.getLogger("tao_ray")


def _group_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


class TaoRemoteFunction:
    """A remote function whose tasks TAO places. ``.remote()`` returns an ObjectRef as Ray's does;
    ``.options(...)`` returns a new TAO remote function with those Ray options."""

    def __init__(self, fn: Any, ray_options: dict[str, Any], job: Optional[str] = None,
                 group: Optional[str] = None) -> None:
        self._fn = fn
        self._ray_options = dict(ray_options)
        self.group = group or _group_name(fn)
        self.job = job
        self.cpus = float(1 if self._ray_options.get("num_cpus") is None else self._ray_options["num_cpus"])
        self.gpus = float(self._ray_options.get("num_gpus") or 0)
        wrapped = wrap_function(fn, self.group, job, self.cpus)
        self._remote = ray.remote(**self._ray_options)(wrapped) if self._ray_options else ray.remote(wrapped)
        self._handles: dict[str, Any] = {}

    def default_handle(self) -> Any:
        """Ray's default scheduling (the task still reports its span)."""
        return self._remote

    def handle_for(self, node_id: str) -> Any:
        """The ``.options()`` handle pinned to ``node_id``, built once per node."""
        h = self._handles.get(node_id)
        if h is None:
            h = self._handles[node_id] = self._remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True))
        return h

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        rt = _state.runtime
        if rt is None:
            return self._remote.remote("", *args, **kwargs)
        try:
            return rt.submit(self, args, kwargs)
        except Exception as e:  # noqa: BLE001 - fail open
            log.warning("tao_ray: placement failed (%s: %s); using Ray's default scheduling", type(e).__name__, e)
            return self._remote.remote(rt.token, *args, **kwargs)

    def options(self, *, tao_job: Optional[str] = None, tao_group: Optional[str] = None, **ray_options: Any) -> "TaoRemoteFunction":
        opts = dict(self._ray_options)
        opts.update(ray_options)
        return TaoRemoteFunction(self._fn, opts, job=tao_job or self.job, group=tao_group or self.group)

    def __call__(self, *a: Any, **k: Any) -> Any:
        raise TypeError(f"remote function {self.group!r} cannot be called directly; use .remote()")


class TaoActorClass:
    """An actor class whose actors TAO places: each ``.remote()`` asks the controller for a
    node (one round trip per actor, not per method call) and pins the actor there; the
    reservation lasts until Ray reports the actor dead."""

    def __init__(self, cls: Any, ray_options: dict[str, Any], job: Optional[str] = None) -> None:
        self._cls = cls
        self._ray_options = dict(ray_options)
        self.job = job
        self.group = _group_name(cls)
        self._actor_cls = ray.remote(**self._ray_options)(cls) if self._ray_options else ray.remote(cls)
        self.cpus = float(self._ray_options.get("num_cpus") or 0)
        self.gpus = float(self._ray_options.get("num_gpus") or 0)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        grant = _decide_one(self.group, self.cpus, self.gpus, self.job)
        if grant is None:
            return self._actor_cls.remote(*args, **kwargs)
        actor = self._actor_cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(grant.node_id, soft=True)).remote(*args, **kwargs)
        _state.runtime.pool.hold(grant, _actor_alive(actor._actor_id.hex()))
        return actor

    def options(self, *, tao_job: Optional[str] = None, **ray_options: Any) -> "TaoActorClass":
        opts = dict(self._ray_options)
        opts.update(ray_options)
        return TaoActorClass(self._cls, opts, job=tao_job or self.job)


def _decide_one(group: str, cpus: float, gpus: float, job: Optional[str]) -> Optional[Grant]:
    """One synchronous controller decision (actors, bundles); None = Ray's default."""
    rt = _state.runtime
    if rt is None or rt.driver.failed_open:
        return None
    try:
        g = rt.call("decide_one", group, cpus, gpus, job)
    except Exception as e:  # noqa: BLE001
        log.warning("tao_ray: controller did not answer (%s); Ray's default placement", type(e).__name__)
        return None
    if g is None:
        log.info("tao_ray: controller has no room now for %s; Ray's default placement", group)
    return g


def _actor_alive(actor_id: str) -> Any:
    """Whether Ray still has the actor (its record in the GCS is not DEAD)."""
    def alive() -> bool:
        from ray.util.state import get_actor

        a = get_actor(actor_id, timeout=5)
        return a is not None and a.state != "DEAD"
    return alive


def _group_alive(pg: Any) -> Any:
    def alive() -> bool:
        from ray.util import placement_group_table

        return placement_group_table(pg).get("state") != "REMOVED"
    return alive


def remote(*args: Any, tao_job: Optional[str] = None, **ray_options: Any) -> Any:
    """Like ``ray.remote``: ``@tao_ray.remote`` or ``@tao_ray.remote(num_cpus=2, ...)``."""
    if len(args) == 1 and not ray_options and callable(args[0]):
        return _make(args[0], {}, tao_job)
    if args:
        raise TypeError("tao_ray.remote: use @tao_ray.remote or @tao_ray.remote(**ray_options)")
    return lambda target: _make(target, ray_options, tao_job)


def _make(target: Any, ray_options: dict[str, Any], job: Optional[str]) -> Any:
    if isinstance(target, type):
        return TaoActorClass(target, ray_options, job)
    return TaoRemoteFunction(target, ray_options, job)


def options(target: Any, *, tao_job: Optional[str] = None, **ray_options: Any) -> Any:
    """TAO placement for an existing ``@ray.remote`` function or actor class (or a plain
    function or class), with optional extra Ray options."""
    from ray.actor import ActorClass
    from ray.remote_function import RemoteFunction

    if isinstance(target, (TaoRemoteFunction, TaoActorClass)):
        return target.options(tao_job=tao_job, **ray_options)
    if isinstance(target, RemoteFunction):
        base = {k: v for k, v in (getattr(target, "_default_options", {}) or {}).items() if v is not None}
        base.update(ray_options)
        return TaoRemoteFunction(target._function, base, job=tao_job)
    if isinstance(target, ActorClass):
        meta = target.__ray_metadata__
        base = {k: v for k, v in (getattr(meta, "default_options", {}) or {}).items() if v is not None}
        base.update(ray_options)
        return TaoActorClass(meta.modified_class.__ray_actor_class__, base, job=tao_job)
    return _make(target, ray_options, tao_job)


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "", **kwargs: Any) -> Any:
    """``ray.util.placement_group`` with each bundle on the node the controller picks
    (``bundle_label_selector`` with ``ray.io/node-id``). Any bundle the controller cannot
    place now leaves the whole group to Ray's default placement."""
    from ray.util import placement_group as ray_pg

    if "bundle_label_selector" in kwargs:
        return ray_pg(bundles, strategy=strategy, name=name, **kwargs)
    grants = []
    for i, b in enumerate(bundles):
        g = _decide_one(f"placement-group:{name or 'anon'}:{i}", float(b.get("CPU", 0)), float(b.get("GPU", 0)), None)
        if g is None:
            break
        grants.append(g)
    rt = _state.runtime
    if len(grants) < len(bundles) or rt is None:
        if grants and rt is not None:  # hand back the bundles placed before one could not be
            rt.pool.hand_back(grants)
        return ray_pg(bundles, strategy=strategy, name=name, **kwargs)
    selectors = [{NODE_ID_LABEL: g.node_id} for g in grants]
    # node-pinned bundles may sit on different nodes: STRICT_PACK would never be satisfied
    if strategy == "STRICT_PACK" and len({s[NODE_ID_LABEL] for s in selectors}) > 1:
        strategy = "PACK"
    pg = ray_pg(bundles, strategy=strategy, name=name, bundle_label_selector=selectors, **kwargs)
    for g in grants:
        rt.pool.hold(g, _group_alive(pg))
    return pg


def label_selector(types: Optional[list[str]] = None) -> dict[str, str]:
    """A Ray label selector for the nodes of ``types`` (default: the most efficient TAO node
    type, the fewest peak watts per CPU x speed), for work TAO does not submit itself: Ray
    Data operators (``ds.map_batches(fn, label_selector=...)``), Ray Train workers
    (``ScalingConfig(label_selector=...)``), Tune trials and plain ``@ray.remote`` tasks.
    Nodes match it by their ``tao-node-type`` label; nodes whose type they described
    themselves carry none, and are named by their node ids (those in the cluster now)."""
    rt = _state.runtime
    if rt is None and types is None:
        raise ValueError("tao_ray.label_selector: call tao_ray.init(...) first, or name the node types")
    if types is None:
        types = [min(rt.nodes.node_types.values(), key=watts_per_work).name]
    if rt is None or all(t in rt.nodes.declared for t in types):
        return {TYPE_LABEL: f"in({','.join(types)})"}
    return {NODE_ID_LABEL: f"in({','.join(r.node_id for r in rt.book.live() if r.node_type in types)})"}
