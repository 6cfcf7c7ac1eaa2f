"""Which power curve each Dask worker carries.

A Dask worker is modeled as one node: a server of ``nthreads`` CPUs whose wall power
follows a :class:`~tao_core.power.curve.PowerCurve`. A worker's node type is chosen, in
this order, by

1. the ``workers`` mapping given to :func:`tao_dask.register` (worker name -> type name),
2. the ``TAO_NODE_TYPE`` environment variable of the worker process, or the Dask config
   key ``tao.node-type`` (useful with ``dask worker --preload tao_dask``),
3. ``default_type``.

A type name is either one of the declared :class:`~tao_core.control.types.NodeType`
objects, a server model of ``tao_core/data/specpower_servers.csv`` (for example
``IbmX3250XeonX3470``), or ``tdp:<watts>`` (a curve of the default shape peaking at that
many watts). Units: watts.
"""
from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping, Optional, Sequence, Union

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.curve import PowerCurve

ENV_VAR = "TAO_NODE_TYPE"
CONFIG_KEY = "tao.node-type"


@functools.lru_cache(maxsize=1)
def specpower_curves() -> dict[str, PowerCurve]:
    """Server model name -> wall-power curve, from ``tao_core/data/specpower_servers.csv``."""
    text = resources.files("tao_core").joinpath("data/specpower_servers.csv").read_text()
    out: dict[str, PowerCurve] = {}
    for row in csv.DictReader(text.splitlines()):
        out[row["model"]] = PowerCurve(tuple(float(row[f"w_{p}"]) for p in range(0, 101, 10)))
    return out


def node_type_for(spec: Union[str, NodeType], cpus: float) -> NodeType:
    """Resolve ``spec`` (a NodeType, a SPECpower model name, or ``tdp:<watts>``) into a
    NodeType of ``cpus`` CPUs. A NodeType is returned unchanged."""
    if isinstance(spec, NodeType):
        return spec
    if not isinstance(spec, str) or not spec:
        raise InputError(f"node type: expected a NodeType or a name, got {spec!r}")
    if spec.startswith("tdp:"):
        try:
            watts = float(spec[4:])
        except ValueError:
            raise InputError(f"node type {spec!r}: write tdp:<peak watts>, for example tdp:200") from None
        return NodeType(name=spec, cpus=cpus, power_curve=PowerCurve.from_tdp(watts))
    curves = specpower_curves()
    if spec not in curves:
        raise InputError(
            f"node type {spec!r}: unknown; declare it as a NodeType, use tdp:<watts>, or one of "
            + ", ".join(sorted(curves))
        )
    return NodeType(name=spec, cpus=cpus, power_curve=curves[spec])


def env_node_type() -> Optional[str]:
    """The node type this process was started with (``TAO_NODE_TYPE`` or ``tao.node-type``)."""
    value = os.environ.get(ENV_VAR)
    if value:
        return value
    try:
        import dask.config

        return dask.config.get(CONFIG_KEY, None)
    except Exception:  # dask missing or config broken: no type from config
        return None


@dataclass
class NodeAssignment:
    """Maps workers to node types; shared (pickled) by the scheduler and worker plugins."""

    node_types: dict[str, NodeType] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    default_type: Optional[str] = None

    @classmethod
    def build(
        cls,
        node_types: Optional[Sequence[NodeType]] = None,
        workers: Optional[Mapping[object, Union[str, NodeType]]] = None,
        default_type: Optional[Union[str, NodeType]] = None,
    ) -> "NodeAssignment":
        types = {t.name: t for t in (node_types or ())}
        wmap: dict[str, str] = {}
        for name, spec in (workers or {}).items():
            if isinstance(spec, NodeType):
                types.setdefault(spec.name, spec)
                spec = spec.name
            wmap[str(name)] = str(spec)
        if isinstance(default_type, NodeType):
            types.setdefault(default_type.name, default_type)
            default_type = default_type.name
        for spec in list(wmap.values()) + ([default_type] if default_type else []):
            if spec not in types:
                node_type_for(spec, 1.0)  # raises InputError naming the bad type now
        return cls(types, wmap, default_type)

    def type_name(self, worker_name: object, reported: Optional[str] = None) -> Optional[str]:
        """The type name of worker ``worker_name`` (``reported``: what the worker says)."""
        return self.workers.get(str(worker_name)) or reported or self.default_type

    def resolve(self, type_name: str, nthreads: float) -> NodeType:
        """The NodeType named ``type_name`` for a worker of ``nthreads`` threads."""
        return self.node_types.get(type_name) or node_type_for(type_name, float(nthreads))
