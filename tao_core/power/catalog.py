"""The node-type catalogue: named measured servers, ``tdp:<watts>`` and efficiency order.

One place for what the Ray and Dask adapters and the simulator each read before:

- :func:`specpower_node_type`: a :class:`~tao_core.control.types.NodeType` with the curve of
  a named server of :mod:`tao_core.power.specpower` (the seven 2007-2010 CloudSim servers by
  their CloudSim names, or a SPECpower_ssj2008 result by its id).
- :func:`node_type_for`: a NodeType from a spec that is a NodeType (returned unchanged), a
  server name, or ``tdp:<watts>`` (the default curve shape peaking at that many watts).
- :func:`watts_per_work` and :func:`least_efficient_first`: the controller's efficiency
  order (peak watts / (cpus x speed), higher is less efficient).

Errors are :class:`~tao_core.errors.InputError` naming the fix.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, TypeVar, Union

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.curve import PowerCurve
from tao_core.power.specpower import NamedCurve, named_curves

__all__ = ["least_efficient_first", "named_server", "node_type_for", "specpower_node_type", "watts_per_work"]

T = TypeVar("T")


def _unknown(what: str) -> InputError:
    legacy = sorted(n for n, v in named_curves().items() if v.memory_gb is None)
    return InputError(
        f"{what}: unknown; use a SPECpower_ssj2008 result id of tao_core/data/specpower_results.csv "
        f"(for example power_ssj2008-20210221-01065) or one of {', '.join(legacy)}"
    )


def named_server(name: str) -> NamedCurve:
    """The measured server called ``name``, or an InputError saying where names come from."""
    c = named_curves().get(name)
    if c is None:
        raise _unknown(f"server {name!r}")
    return c


def specpower_node_type(model: str, *, name: Optional[str] = None, cpus: Optional[float] = None,
                        **kwargs: Any) -> NodeType:
    """A NodeType with the measured curve of server ``model``. ``cpus`` defaults to the
    tested machine's threads (its cores for the 2007-2010 servers); other keyword
    arguments go to :class:`NodeType` (``speed``, ``boot_s``, ...)."""
    c = named_server(model)
    n = cpus if cpus is not None else (c.threads or c.cores)
    return NodeType(name=name or model, cpus=float(n), power_curve=c.curve, **kwargs)


def node_type_for(spec: Union[str, NodeType], cpus: float) -> NodeType:
    """``spec`` (a NodeType, a server name, or ``tdp:<watts>``) as a NodeType of ``cpus``
    CPUs. A NodeType is returned unchanged."""
    if isinstance(spec, NodeType):
        return spec
    if not isinstance(spec, str) or not spec:
        raise InputError(f"node type: expected a NodeType or a name, got {spec!r}")
    if spec.startswith("tdp:"):
        try:
            curve = PowerCurve.from_tdp(float(spec[4:]))
        except ValueError:
            raise InputError(f"node type {spec!r}: write tdp:<peak watts>, for example tdp:200") from None
        return NodeType(name=spec, cpus=cpus, power_curve=curve)
    if spec not in named_curves():
        raise _unknown(f"node type {spec!r} (declare a NodeType, write tdp:<watts>, or name a server)")
    return specpower_node_type(spec, cpus=cpus)


def watts_per_work(t: NodeType) -> float:
    """Watts per reference CPU of work at full load: ``peak_w / (cpus x speed)``."""
    return t.peak_w / (t.cpus * t.speed)


def least_efficient_first(items: Iterable[T], node_type: Callable[[T], Optional[NodeType]]) -> list[T]:
    """``items`` ordered by :func:`watts_per_work` of ``node_type(item)``, highest first;
    items without a node type last. Stable for equal figures."""
    def cost(x: T) -> float:
        t = node_type(x)
        return -1.0 if t is None else watts_per_work(t)
    return sorted(items, key=cost, reverse=True)
