"""The one shape of a run's ledger records (``tao-run-records/2``), written and read here.

A run is a ``config`` record, ``decision`` records (``DecisionEvent.to_dict()``, before or
after the config), ``energy`` records and one ``summary`` record that ends it. Writers (the
simulator, the Ray and Dask adapters) build the dataclasses below and append
``run_records(...)``; the report builder reads them back with ``from_payload`` (an
``InputError`` naming the record and field when a payload has another shape). Payloads,
every field always present (``null`` where it does not apply):

- ``config``: ``{"record_format": "tao-run-records/2", "run_id", "engine", "policy",
  "controller": {...}, "cluster": {"name", "pue", "power_budget_w", "nodes": [{"node_id",
  "node_type", "cpus", "gpus"}]}, "telemetry": [{"domain", "source", "method"}]}``
- ``energy`` of a node (one per node, its whole energy over the run)::

    {"scope": "node", "id": node_id, "node_id": node_id, "group": null, "job": null,
     "energy_j", "tasks_j", "idle_j", "boot_j", "off_j",
     "components": {"cpu_package", "dram", "gpu", "other"},
     "source", "method", "uncertainty", "start_s", "end_s"}

  with ``energy_j = tasks_j + idle_j + boot_j + off_j`` (see ``figures.py`` for what each
  part is) and the components adding up to ``energy_j``;
- ``energy`` of a task, task group or job (``scope`` "task", "group" or "job"; its task
  work)::

    {"scope", "id", "node_id", "group", "job", "energy_j", "components", "source",
     "method", "uncertainty", "start_s", "end_s", "units"}

  Task records of a node add up to its ``tasks_j``; group (or job) records, when written,
  add up to the run's task work. ``units``: the useful work the task (group, job) did, as
  counted with ``tao.count`` (``tao_core.units``): ``{"tokens": 12345.0}``, ``{}`` when
  nothing was counted; a group's or job's units are the sums of its tasks'.
- ``summary``: ``{"run_id", "policy", "makespan_s", "tasks_completed", "peak_power_w",
  "power_budget_w", "budget_violation_s", "emissions_kg_co2e", "carbon_source",
  "deadlines_total", "deadlines_missed"}``. Energy totals are not repeated here: they are
  the sums of the node records.

``source``: ``measured-rapl``, ``measured-nvml``, ``modeled`` or ``replay``, joined with
``+`` when a figure mixes several; ``uncertainty``: relative standard uncertainty (>= 0) or
null when unknown. Times: ``start_s``/``end_s`` on the writer's clock (seconds).

Formats read: ``tao-run-records/2`` (written) and ``tao-run-records/1`` (the same without
``units``: read as nothing counted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from tao_core.accounting.figures import EnergyParts, close_enough
from tao_core.errors import InputError
from tao_core.units import UnitCountError, check_amount, check_unit_name

RECORD_FORMAT = "tao-run-records/2"
#: formats the reader accepts (``/1``: work records without ``units``)
READ_FORMATS = ("tao-run-records/1", RECORD_FORMAT)
COMPONENTS = ("cpu_package", "dram", "gpu", "other")
WORK_SCOPES = ("task", "group", "job")


# ----------------------------------------------------------------------------- field checks
def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _number(where: str, name: str, v: Any, *, optional: bool = False, minimum: Optional[float] = None) -> Optional[float]:
    if v is None and optional:
        return None
    if not _finite(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise InputError(f"{where}: field {name} is {v!r}; it must be a finite number{bound}"
                         + (" or null" if optional else ""))
    return float(v)


def _text(where: str, name: str, v: Any, *, optional: bool = False) -> Optional[str]:
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        raise InputError(f"{where}: field {name} is {v!r}; it must be a non-empty string" + (" or null" if optional else ""))
    return v


def _count(where: str, name: str, v: Any, *, optional: bool = False) -> Optional[int]:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"{where}: field {name} is {v!r}; it must be an integer >= 0" + (" or null" if optional else ""))
    return v


def _exact(where: str, payload: Any, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise InputError(f"{where}: payload is not a JSON object")
    missing = [k for k in keys if k not in payload]
    extra = sorted(set(payload) - set(keys))
    if missing or extra:
        what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                     f"unexpected {', '.join(extra)}" if extra else "") if x)
        raise InputError(f"{where}: not a {RECORD_FORMAT} record ({what})")
    return payload


def _components(where: str, v: Any, energy_j: float) -> dict[str, float]:
    comps = _exact(f"{where} components", v, COMPONENTS)
    out = {c: _number(f"{where} components", c, comps[c], minimum=0.0) for c in COMPONENTS}
    if not close_enough(sum(out.values()), energy_j):
        raise InputError(f"{where}: components add up to {sum(out.values())!r} J, not to energy_j {energy_j!r} J")
    return out


def checked_units(units: Any, where: str = "units") -> dict[str, float]:
    """``units`` (unit -> amount) checked (names as ``tao_core.units`` allows, amounts
    finite >= 0) and sorted by unit; ``ValueError`` naming ``where`` otherwise."""
    if not isinstance(units, Mapping):
        raise ValueError(f"{where}: {units!r} is not a mapping of unit name to amount")
    try:
        return {u: check_amount(u, units[u]) for u in sorted(check_unit_name(u) for u in units)}
    except UnitCountError as exc:
        raise ValueError(f"{where}: {exc}") from None


def components_of(energy_j: float, given: Optional[Mapping[str, float]] = None) -> dict[str, float]:
    """Every component of ``energy_j``: ``given`` ones, the rest 0; all in ``other`` when none given."""
    if not given:
        return {c: (float(energy_j) if c == "other" else 0.0) for c in COMPONENTS}
    unknown = set(given) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"components {sorted(unknown)}: not among {COMPONENTS}")
    return {c: float(given.get(c, 0.0)) for c in COMPONENTS}


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster as the run saw it."""

    node_id: str
    node_type: str
    cpus: float
    gpus: float = 0.0

    def payload(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "node_type": self.node_type, "cpus": self.cpus, "gpus": self.gpus}

    @classmethod
    def from_payload(cls, p: Any, where: str) -> "NodeInfo":
        p = _exact(where, p, ("node_id", "node_type", "cpus", "gpus"))
        return cls(_text(where, "node_id", p["node_id"]), _text(where, "node_type", p["node_type"]),
                   _number(where, "cpus", p["cpus"], minimum=0.0), _number(where, "gpus", p["gpus"], minimum=0.0))


@dataclass(frozen=True)
class RunConfig:
    """The ``config`` record: what ran, on what, under which settings. ``pue``: facility
    watts per IT watt (>= 1); ``power_budget_w``: the cluster's IT power budget (W)."""

    run_id: str
    engine: str
    policy: str
    pue: float
    nodes: tuple[NodeInfo, ...]
    controller: Mapping[str, Any] = field(default_factory=dict)
    power_budget_w: Optional[float] = None
    telemetry: tuple[Mapping[str, Any], ...] = ()
    cluster_name: Optional[str] = None
    record_format: str = RECORD_FORMAT  #: the format of the run's records (one of READ_FORMATS)

    def payload(self) -> dict[str, Any]:
        return {
            "record_format": self.record_format, "run_id": self.run_id, "engine": self.engine, "policy": self.policy,
            "controller": dict(self.controller),
            "cluster": {"name": self.cluster_name, "pue": self.pue, "power_budget_w": self.power_budget_w,
                        "nodes": [n.payload() for n in self.nodes]},
            "telemetry": [{"domain": t["domain"], "source": t["source"], "method": t["method"]} for t in self.telemetry],
        }

    @classmethod
    def from_payload(cls, p: Any, where: str) -> "RunConfig":
        p = _exact(where, p, ("record_format", "run_id", "engine", "policy", "controller", "cluster", "telemetry"))
        if p["record_format"] not in READ_FORMATS:
            raise InputError(f"{where}: record_format {p['record_format']!r} is not one of {', '.join(READ_FORMATS)}")
        c = _exact(f"{where} cluster", p["cluster"], ("name", "pue", "power_budget_w", "nodes"))
        if not isinstance(c["nodes"], list) or not isinstance(p["telemetry"], list) or not isinstance(p["controller"], Mapping):
            raise InputError(f"{where}: cluster.nodes and telemetry must be lists, controller an object")
        tel = tuple(_exact(f"{where} telemetry[{i}]", t, ("domain", "source", "method")) for i, t in enumerate(p["telemetry"]))
        return cls(
            run_id=_text(where, "run_id", p["run_id"]), engine=_text(where, "engine", p["engine"]),
            policy=_text(where, "policy", p["policy"]), pue=_number(where, "cluster.pue", c["pue"], minimum=1.0),
            nodes=tuple(NodeInfo.from_payload(n, f"{where} cluster.nodes[{i}]") for i, n in enumerate(c["nodes"])),
            controller=dict(p["controller"]),
            power_budget_w=_number(where, "cluster.power_budget_w", c["power_budget_w"], optional=True, minimum=0.0),
            telemetry=tel, cluster_name=_text(where, "cluster.name", c["name"], optional=True),
            record_format=p["record_format"],
        )


@dataclass(frozen=True)
class NodeRecord:
    """The ``energy`` record of one node: its whole energy over the run, split into parts."""

    node_id: str
    parts: EnergyParts
    source: str
    method: str
    components: Optional[Mapping[str, float]] = None  #: None: all in "other"
    uncertainty: Optional[float] = None  #: relative standard uncertainty
    start_s: Optional[float] = None
    end_s: Optional[float] = None

    @property
    def energy_j(self) -> float:
        return self.parts.total_j

    def payload(self) -> dict[str, Any]:
        comps = components_of(self.energy_j, self.components)
        if not close_enough(sum(comps.values()), self.energy_j):
            raise ValueError(f"node {self.node_id}: components add up to {sum(comps.values())} J, not {self.energy_j} J")
        return {"scope": "node", "id": self.node_id, "node_id": self.node_id, "group": None, "job": None,
                "energy_j": self.energy_j, **self.parts.as_dict(), "components": comps,
                "source": self.source, "method": self.method, "uncertainty": self.uncertainty,
                "start_s": self.start_s, "end_s": self.end_s}

    @classmethod
    def from_payload(cls, p: Any, where: str) -> "NodeRecord":
        p = _exact(where, p, NODE_KEYS)
        if p["scope"] != "node" or p["id"] != p["node_id"] or p["group"] is not None or p["job"] is not None:
            raise InputError(f"{where}: a node record has scope node, id = node_id, and null group and job")
        try:
            parts = EnergyParts(*(p[k] for k in ("tasks_j", "idle_j", "boot_j", "off_j")))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        energy = _number(where, "energy_j", p["energy_j"], minimum=0.0)
        if not close_enough(parts.total_j, energy):
            raise InputError(f"{where}: tasks_j + idle_j + boot_j + off_j = {parts.total_j!r} J, not energy_j {energy!r} J")
        return cls(node_id=_text(where, "node_id", p["node_id"]), parts=parts, source=_text(where, "source", p["source"]),
                   method=_text(where, "method", p["method"]), components=_components(where, p["components"], energy),
                   uncertainty=_number(where, "uncertainty", p["uncertainty"], optional=True, minimum=0.0),
                   start_s=_number(where, "start_s", p["start_s"], optional=True),
                   end_s=_number(where, "end_s", p["end_s"], optional=True))


NODE_KEYS = ("scope", "id", "node_id", "group", "job", "energy_j", "tasks_j", "idle_j", "boot_j", "off_j",
             "components", "source", "method", "uncertainty", "start_s", "end_s")
WORK_KEYS = ("scope", "id", "node_id", "group", "job", "energy_j", "components", "source", "method",
             "uncertainty", "start_s", "end_s", "units")
#: the work-record keys of ``tao-run-records/1`` (no units)
WORK_KEYS_V1 = WORK_KEYS[:-1]


@dataclass(frozen=True)
class WorkRecord:
    """The ``energy`` record of a task, task group or job: the task work charged to it, and
    the units of work it counted (unit -> amount, ``tao_core.units``)."""

    scope: str
    id: str
    energy_j: float
    source: str
    method: str
    node_id: Optional[str] = None
    group: Optional[str] = None
    job: Optional[str] = None
    components: Optional[Mapping[str, float]] = None
    uncertainty: Optional[float] = None
    start_s: Optional[float] = None
    end_s: Optional[float] = None
    units: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scope not in WORK_SCOPES:
            raise ValueError(f"scope {self.scope!r}: must be one of {WORK_SCOPES}")
        if not _finite(self.energy_j) or self.energy_j < 0:
            raise ValueError(f"{self.scope} {self.id}: energy_j={self.energy_j!r} must be a finite number >= 0")
        object.__setattr__(self, "units", checked_units(self.units, f"{self.scope} {self.id}: units"))

    def payload(self) -> dict[str, Any]:
        return {"scope": self.scope, "id": self.id, "node_id": self.node_id, "group": self.group, "job": self.job,
                "energy_j": float(self.energy_j), "components": components_of(self.energy_j, self.components),
                "source": self.source, "method": self.method, "uncertainty": self.uncertainty,
                "start_s": self.start_s, "end_s": self.end_s, "units": dict(self.units)}

    @classmethod
    def from_payload(cls, p: Any, where: str, record_format: str = RECORD_FORMAT) -> "WorkRecord":
        """The record of payload ``p`` of a run written in ``record_format``."""
        p = _exact(where, p, WORK_KEYS if record_format == RECORD_FORMAT else WORK_KEYS_V1)
        try:
            units = checked_units(p.get("units", {}), "field units")
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if p["scope"] not in WORK_SCOPES:
            raise InputError(f"{where}: scope {p['scope']!r} is not one of node, {', '.join(WORK_SCOPES)}")
        energy = _number(where, "energy_j", p["energy_j"], minimum=0.0)
        return cls(scope=p["scope"], id=_text(where, "id", p["id"]), energy_j=energy,
                   source=_text(where, "source", p["source"]), method=_text(where, "method", p["method"]),
                   node_id=_text(where, "node_id", p["node_id"], optional=True),
                   group=_text(where, "group", p["group"], optional=True), job=_text(where, "job", p["job"], optional=True),
                   components=_components(where, p["components"], energy),
                   uncertainty=_number(where, "uncertainty", p["uncertainty"], optional=True, minimum=0.0),
                   start_s=_number(where, "start_s", p["start_s"], optional=True),
                   end_s=_number(where, "end_s", p["end_s"], optional=True), units=units)


SUMMARY_KEYS = ("run_id", "policy", "makespan_s", "tasks_completed", "peak_power_w", "power_budget_w",
                "budget_violation_s", "emissions_kg_co2e", "carbon_source", "deadlines_total", "deadlines_missed")


@dataclass(frozen=True)
class RunSummary:
    """The ``summary`` record that ends a run: what the energy records do not hold.
    ``emissions_kg_co2e``: facility power integrated against a time-varying carbon
    intensity (``carbon_source`` names it), when a carbon signal priced the run."""

    run_id: str
    policy: str
    makespan_s: Optional[float] = None
    tasks_completed: Optional[int] = None
    peak_power_w: Optional[float] = None
    power_budget_w: Optional[float] = None
    budget_violation_s: Optional[float] = None
    emissions_kg_co2e: Optional[float] = None
    carbon_source: Optional[str] = None
    deadlines_total: Optional[int] = None
    deadlines_missed: Optional[int] = None

    def payload(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SUMMARY_KEYS}

    @classmethod
    def from_payload(cls, p: Any, where: str) -> "RunSummary":
        p = _exact(where, p, SUMMARY_KEYS)
        num: Callable[[str], Optional[float]] = lambda k: _number(where, k, p[k], optional=True, minimum=0.0)
        cnt: Callable[[str], Optional[int]] = lambda k: _count(where, k, p[k], optional=True)
        return cls(run_id=_text(where, "run_id", p["run_id"]), policy=_text(where, "policy", p["policy"]),
                   makespan_s=num("makespan_s"), tasks_completed=cnt("tasks_completed"), peak_power_w=num("peak_power_w"),
                   power_budget_w=num("power_budget_w"), budget_violation_s=num("budget_violation_s"),
                   emissions_kg_co2e=num("emissions_kg_co2e"),
                   carbon_source=_text(where, "carbon_source", p["carbon_source"], optional=True),
                   deadlines_total=cnt("deadlines_total"), deadlines_missed=cnt("deadlines_missed"))


def run_records(config: RunConfig, nodes: Sequence[NodeRecord], work: Sequence[WorkRecord],
                summary: RunSummary) -> list[tuple[str, dict[str, Any]]]:
    """(kind, payload) of one run's config, energy and summary records, in ledger order
    (append decision records as the run makes them, before or after these). Checks that
    task records add up to their node's task work (ValueError otherwise)."""
    by_node: dict[str, float] = {}
    for w in work:
        if w.scope == "task" and w.node_id is not None:
            by_node[w.node_id] = by_node.get(w.node_id, 0.0) + w.energy_j
    for n in nodes:
        if n.node_id in by_node and not close_enough(by_node[n.node_id], n.parts.tasks_j):
            raise ValueError(f"node {n.node_id}: task records add up to {by_node[n.node_id]} J, "
                             f"not to its tasks_j {n.parts.tasks_j} J")
    return ([("config", config.payload())] + [("energy", n.payload()) for n in nodes]
            + [("energy", w.payload()) for w in work] + [("summary", summary.payload())])


@dataclass
class RunRecords:
    """One run's records as read from a ledger (``seqs``: the sequence numbers they came from)."""

    config: RunConfig
    nodes: list[NodeRecord]
    work: list[WorkRecord]
    summary: Optional[RunSummary]
    decisions: list[Mapping[str, Any]]
    seqs: list[int]
    times: list[float]

    def scope(self, name: str) -> list[WorkRecord]:
        return [w for w in self.work if w.scope == name]
