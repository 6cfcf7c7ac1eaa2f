"""The one JSON form of a :class:`~tao_core.control.types.NodeType`.

Keys (watts, seconds; optional ones take the defaults of ``NodeType``)::

    {"name": "x5675", "cpus": 12, "power_curve_w": [58.4, 98, ..., 222],
     "gpus": 0, "gpu_idle_w": 0, "gpu_max_w": 0, "gpu_power_limit_w": null,
     "speed": 1.0, "boot_s": 120, "boot_w": null, "off_w": 10}

``power_curve_w``: wall watts of the node at 0, 10, ..., 100 % CPU utilization with its
GPUs excluded; each GPU adds ``gpu_idle_w`` idle up to ``gpu_max_w`` busy (or
``gpu_power_limit_w`` when lower). :func:`node_type_to_dict` writes every key;
:func:`node_type_from_dict` reads them back and raises
:class:`~tao_core.errors.InputError` naming the field and the fix for anything else.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.curve import PowerCurve

__all__ = ["NODE_TYPE_FIELDS", "node_type_from_dict", "node_type_to_dict"]

NODE_TYPE_FIELDS = (
    "name", "cpus", "power_curve_w", "gpus", "gpu_idle_w", "gpu_max_w", "gpu_power_limit_w",
    "speed", "boot_s", "boot_w", "off_w",
)


def node_type_to_dict(t: NodeType) -> dict[str, Any]:
    """``t`` as plain JSON-ready data (every field of :data:`NODE_TYPE_FIELDS`)."""
    return {"name": t.name, "cpus": t.cpus, "power_curve_w": list(t.power_curve.points_w), "gpus": t.gpus,
            "gpu_idle_w": t.gpu_idle_w, "gpu_max_w": t.gpu_max_w, "gpu_power_limit_w": t.gpu_power_limit_w,
            "speed": t.speed, "boot_s": t.boot_s, "boot_w": t.boot_w, "off_w": t.off_w}


def _num(d: dict[str, Any], key: str, w: str, default: Any, fix: str, *, minimum: float = 0.0,
         strict: bool = False, integer: bool = False, nullable: bool = False) -> Any:
    v = d.get(key, default)
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{w}.{key}: {v!r} is not a number; {fix}")
    x = float(v)
    if not math.isfinite(x):
        raise InputError(f"{w}.{key}: {v!r} is not finite; {fix}")
    if integer and x != int(x):
        raise InputError(f"{w}.{key}: {v!r} must be a whole number; {fix}")
    if x < minimum or (strict and x == minimum):
        raise InputError(f"{w}.{key}: {v!r} must be {'>' if strict else '>='} {minimum:g}; {fix}")
    return int(x) if integer else x


def _curve(d: dict[str, Any], w: str) -> PowerCurve:
    raw = d.get("power_curve_w")
    if not isinstance(raw, list):
        raise InputError(f"{w}.power_curve_w: expected a list of 11 numbers (watts at 0, 10, ..., 100 % CPU utilization)")
    pts = [_num({"p": p}, "p", f"{w}.power_curve_w[{i}]", None, "give watts >= 0") for i, p in enumerate(raw)]
    try:
        return PowerCurve(tuple(pts))
    except ValueError as exc:
        raise InputError(f"{w}.{exc}") from None


def node_type_from_dict(d: Any, where: str = "node type", *, allow: Iterable[str] = ()) -> NodeType:
    """A NodeType from its JSON form; ``where`` prefixes errors; ``allow``: other keys the
    caller reads itself (the simulator's ``count``), accepted and ignored here."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object with name, cpus and power_curve_w")
    known = set(NODE_TYPE_FIELDS) | set(allow)
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: missing; give each node type a unique non-empty name")
    w = f"{where} ({name})"
    gpu_idle = _num(d, "gpu_idle_w", w, 0.0, "give watts per idle GPU (>= 0)")
    gpu_max = _num(d, "gpu_max_w", w, 0.0, "give watts per busy GPU (>= gpu_idle_w)")
    if gpu_max < gpu_idle:
        raise InputError(f"{w}.gpu_max_w: {gpu_max:g} is below gpu_idle_w {gpu_idle:g}; give gpu_max_w >= gpu_idle_w")
    limit: Optional[float] = _num(d, "gpu_power_limit_w", w, None, "give watts (> 0) or null", strict=True, nullable=True)
    return NodeType(
        name=name,
        cpus=_num(d, "cpus", w, None, "give the CPU count (> 0)", strict=True),
        power_curve=_curve(d, w),
        gpus=_num(d, "gpus", w, 0, "give a whole number of GPUs (>= 0)", integer=True),
        gpu_idle_w=gpu_idle, gpu_max_w=gpu_max, gpu_power_limit_w=limit,
        speed=_num(d, "speed", w, 1.0, "give the speed relative to the reference node (> 0)", strict=True),
        boot_s=_num(d, "boot_s", w, 0.0, "give the boot time in seconds (>= 0)"),
        boot_w=_num(d, "boot_w", w, None, "give watts (>= 0) or null", nullable=True),
        off_w=_num(d, "off_w", w, 0.0, "give the watts drawn while off (>= 0)"),
    )
