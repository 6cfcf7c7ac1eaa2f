"""Which node type each worker of an engine is, and that type sized to the worker.

A worker is modeled as one node: a server of its own CPU count (threads) and GPUs whose
wall power follows its node type's :class:`~tao_core.power.curve.PowerCurve`. Its type is,
in this order:

1. the ``workers`` mapping (worker name -> type name),
2. the type the worker process was started with (an adapter passes it as ``reported``:
   for Dask the ``TAO_NODE_TYPE`` environment variable or the config key ``tao.node-type``),
3. ``default_type``,
4. else (``discover``, the default) the worker describes its own hardware
   (``tao_core.hardware.describe_this_node``): workers of the same hardware and size share
   the type named after it.

A type name is a declared :class:`~tao_core.control.types.NodeType`, a server of
``tao_core.power.catalog`` (for example ``IbmX3250XeonX3470``) or ``tdp:<watts>``. Two
workers of one type but different sizes are two controller node types (:func:`sized_type`:
``<type>/<n>cpu``, ``+<g>gpu``), so neither is modeled with the other's CPU count.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import AbstractSet, Mapping, Optional, Sequence, Union

from tao_core.control.types import NodeType
from tao_core.power.catalog import node_type_for, watts_per_work


def sized_type(base: NodeType, cpus: int, gpus: int) -> NodeType:
    """``base`` with the CPUs and GPUs of one worker, named for that size."""
    name = f"{base.name}/{cpus}cpu" + (f"+{gpus}gpu" if gpus else "")
    return dataclasses.replace(base, name=name, cpus=float(cpus), gpus=int(gpus))


@dataclass
class NodeAssignment:
    """Maps workers to node types (an adapter ships it, pickled, to every process that types workers)."""

    node_types: dict[str, NodeType] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    default_type: Optional[str] = None
    discover: bool = True  #: a worker with no declared type describes its hardware

    @classmethod
    def build(
        cls,
        node_types: Optional[Sequence[NodeType]] = None,
        workers: Optional[Mapping[object, Union[str, NodeType]]] = None,
        default_type: Optional[Union[str, NodeType]] = None,
        discover: bool = True,
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
        return cls(types, wmap, default_type, bool(discover))

    @property
    def declares_any(self) -> bool:
        """Whether some worker can get a declared type (else only discovery types them)."""
        return bool(self.workers or self.default_type)

    def type_name(self, worker_name: object, reported: Optional[str] = None) -> Optional[str]:
        """The declared type name of worker ``worker_name`` (``reported``: what the worker says)."""
        return self.workers.get(str(worker_name)) or reported or self.default_type

    def resolve(self, type_name: str, nthreads: float) -> NodeType:
        """The NodeType named ``type_name`` for a worker of ``nthreads`` threads."""
        return self.node_types.get(type_name) or node_type_for(type_name, float(nthreads))

    def start_order(self, running: AbstractSet[str]) -> list[str]:
        """Declared workers (the ``workers`` mapping) not in ``running``, the one to start
        first first: lowest watts per unit of work at full load
        (:func:`tao_core.power.catalog.watts_per_work` of its type, at one CPU), the
        declared order among equals (:meth:`build` checked that every type resolves)."""
        return sorted((n for n in self.workers if n not in running),
                      key=lambda n: watts_per_work(self.resolve(self.workers[n], 1.0)))

