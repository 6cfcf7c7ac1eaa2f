"""Ray nodes as TAO sees them: id, logical CPUs/GPUs, labels and the node type (power
curve) each one has.

A node's type is found, in order: the TAO config mapping (node id -> type name), the node
label ``tao-node-type`` (set with ``ray start --labels tao-node-type=NAME`` or
``Cluster.add_node(labels={...})``), a custom resource ``tao_type_NAME``, else the config's
default type, else the type hardware discovery gives the node (:func:`discovered_type`).
Unknown names are an :class:`~tao_core.errors.InputError` naming the fix.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping, Optional

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.curve import PowerCurve

#: node label that names a node's TAO node type
TYPE_LABEL = "tao-node-type"
#: prefix of a custom resource that names a node's TAO node type
TYPE_RESOURCE_PREFIX = "tao_type_"
#: label Ray gives every node: its hex node id
NODE_ID_LABEL = "ray.io/node-id"


@dataclass(frozen=True)
class RayNode:
    """One alive Ray node: hex id, logical CPUs and GPUs, labels, custom resources."""

    node_id: str
    cpus: float
    gpus: float
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)
    address: str = ""
    is_head: bool = False


def alive_nodes(ray_nodes: list[dict[str, Any]]) -> list[RayNode]:
    """The alive nodes of ``ray.nodes()`` output, as :class:`RayNode` records."""
    out = []
    for n in ray_nodes:
        if not n.get("Alive"):
            continue
        res = dict(n.get("Resources") or {})
        out.append(
            RayNode(
                node_id=n["NodeID"],
                cpus=float(res.get("CPU", 0.0)),
                gpus=float(res.get("GPU", 0.0)),
                labels=dict(n.get("Labels") or {}),
                resources=res,
                address=str(n.get("NodeManagerAddress", "")),
                is_head=any(k.startswith("node:__internal_head__") for k in res),
            )
        )
    return out


def resolve_type(
    node: RayNode,
    node_types: Mapping[str, NodeType],
    node_type_of: Mapping[str, str] | None = None,
    default_type: Optional[str] = None,
) -> Optional[str]:
    """The TAO node type name of ``node`` (see module doc), or ``None`` when it has none
    and no default is set (such a node is left out of TAO placement)."""
    name = None
    if node_type_of and node.node_id in node_type_of:
        name = node_type_of[node.node_id]
    elif TYPE_LABEL in node.labels:
        name = node.labels[TYPE_LABEL]
    else:
        for key in node.resources:
            if key.startswith(TYPE_RESOURCE_PREFIX):
                name = key[len(TYPE_RESOURCE_PREFIX):]
                break
    if name is None:
        name = default_type
    if name is not None and name not in node_types:
        raise InputError(
            f"node {node.node_id[:12]}: node type {name!r} is not among the configured node_types "
            f"({sorted(node_types)}); add it to tao_ray.init(node_types=...) or fix the node's "
            f"{TYPE_LABEL!r} label"
        )
    return name


def discovered_type(node: RayNode) -> Optional[NodeType]:
    """The node type hardware discovery finds for ``node``, for a node given none: the one
    place where ``tao_core.hardware`` plugs in (the node's sampler would describe its own
    machine). Until then there is none, and such a node is left out of TAO placement and
    metering (``tao_ray.init`` warns when that leaves no node)."""
    return None


def specpower_curves() -> dict[str, tuple[PowerCurve, int]]:
    """Power curves of the servers in ``tao_core/data/specpower_servers.csv`` (SPECpower_ssj2008
    results as shipped in CloudSim's PowerModelSpecPower classes): model -> (curve, cores)."""
    text = resources.files("tao_core").joinpath("data/specpower_servers.csv").read_text()
    out: dict[str, tuple[PowerCurve, int]] = {}
    for row in csv.DictReader(text.splitlines()):
        pts = tuple(float(row[f"w_{p}"]) for p in range(0, 101, 10))
        out[row["model"]] = (PowerCurve(pts), int(row["cores"]))
    return out


def specpower_node_type(model: str, *, name: Optional[str] = None, cpus: Optional[float] = None,
                        **kwargs: Any) -> NodeType:
    """A :class:`NodeType` with the SPECpower curve of ``model`` (a ``model`` value of
    ``specpower_servers.csv``). ``cpus`` defaults to the tested machine's cores; other
    keyword arguments go to :class:`NodeType` (``speed``, ``boot_s``, ...)."""
    curves = specpower_curves()
    if model not in curves:
        raise InputError(f"model {model!r} is not in specpower_servers.csv; pick one of {sorted(curves)}")
    curve, cores = curves[model]
    return NodeType(name=name or model, cpus=float(cpus if cpus is not None else cores), power_curve=curve, **kwargs)
