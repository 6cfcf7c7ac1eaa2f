"""Ray nodes as TAO sees them, and the node type of each.

A node's type comes, in order, from ``tao_ray.init(node_type_of={node id: name})``, its
``tao-node-type`` label (``ray start --labels tao-node-type=NAME``), a ``tao_type_NAME``
custom resource, ``default_type``, else from the node itself: its sampler describes its
hardware (:func:`discovered_type`) and nodes of the same hardware share the type named
after it. A declared name that is not a configured node type is an ``InputError``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from tao_core.control.types import NodeType
from tao_core.errors import InputError
from tao_core.power.node_json import node_type_from_dict

log = logging.getLogger("tao_ray")

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


def alive_nodes(ray_nodes: list[dict[str, Any]]) -> list[RayNode]:
    """The alive nodes of ``ray.nodes()`` output."""
    return [RayNode(n["NodeID"], float((n.get("Resources") or {}).get("CPU", 0.0)),
                    float((n.get("Resources") or {}).get("GPU", 0.0)), dict(n.get("Labels") or {}),
                    dict(n.get("Resources") or {}), str(n.get("NodeManagerAddress", "")))
            for n in ray_nodes if n.get("Alive")]


def resolve_type(node: RayNode, node_types: Mapping[str, NodeType], node_type_of: Optional[Mapping[str, str]] = None,
                 default_type: Optional[str] = None) -> Optional[str]:
    """The declared node type name of ``node`` (see the module doc), or None."""
    name = (node_type_of or {}).get(node.node_id) or node.labels.get(TYPE_LABEL)
    if name is None:
        name = next((k[len(TYPE_RESOURCE_PREFIX):] for k in node.resources if k.startswith(TYPE_RESOURCE_PREFIX)),
                    default_type)
    if name is not None and name not in node_types:
        raise InputError(f"node {node.node_id[:12]}: node type {name!r} is not among the configured node_types "
                         f"({sorted(node_types)}); add it to tao_ray.init(node_types=...) or fix the node's "
                         f"{TYPE_LABEL!r} label")
    return name


def discovered_type(node: RayNode, info: Mapping[str, Any]) -> NodeType:
    """The node type ``node``'s sampler found for it (``describe_this_node`` on the node,
    with the node's CPU resource), from the sampler's ``info()``."""
    nt = node_type_from_dict(info["node_type"], f"node {node.node_id[:12]} described itself as")
    log.info("tao_ray: node %s described itself: %s (%s)", node.node_id[:12], nt.name, info.get("curve_origin"))
    return nt
