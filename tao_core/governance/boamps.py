"""An energy report as a BoAmps report (Boavizta's energy-report format, version 1.1.0), the
JSON the field exchanges energy figures in (CodeCarbon writes it too).

``boamps_report(report, context)`` fills the fields TAO knows from a validated energy report
and takes the rest from ``context``, a partial BoAmps document of what only the user knows;
``boamps_problems(doc)`` validates against the BoAmps 1.1.0 schemas shipped in
``boamps_schema/`` (source and licence: ``boamps_schema/SOURCE.md``).

What TAO fills (everything else is left out unless ``context`` gives it):

- ``header``: ``formatVersion`` 1.1.0 and its specification URI, ``reportId`` (the
  energy report's SHA-256, so the export traces back to it), ``reportDatetime`` (when the
  energy report was built, UTC).
- ``task.nbRequest``: the ``requests`` units the tasks counted, when ``task.taskStage``
  (from the context) is an inference stage.
- ``measures``: one measure: ``powerConsumption`` the report's IT energy in kWh (BoAmps has
  no PUE field; facility energy is IT x PUE in the energy report), ``measurementMethod``
  ``tao`` with the sources and their methods, ``version`` TAO's version, ``cpuTrackingMode``
  and ``gpuTrackingMode`` (``rapl``/``nvml`` when measured, else ``modeled``),
  ``measurementDuration`` the wall-clock time, ``measurementDateTime`` the first ledger
  record's time.
- ``infrastructure.components``: one ``cpu`` component per node type (``nbComponent``:
  its nodes) and one ``gpu`` component per node type with GPUs (``nbComponent``: nodes x
  GPUs); components the context lists are added after them.
- ``environment.powerSourceCarbonIntensity``: the report's carbon intensity, when the
  context gives an ``environment`` (BoAmps requires its ``country``, which TAO cannot know).
- ``quality``: from the energy's uncertainty: twice the relative upper-bound uncertainty
  (about 95 % coverage, errors taken as fully correlated) within 10 % is ``high``, 25 %
  ``medium``, 50 % ``low``; left out when unknown or larger.

Required BoAmps fields TAO cannot know (``task.taskStage``, ``task.taskFamily``,
``task.algorithms``, ``task.dataset``, ``infrastructure.infraType``) must come from the
context; a context that sets a field TAO fills, to another value, is refused.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import pathlib
from typing import Any, Mapping, Optional

from tao_core.errors import ParameterError

FORMAT_VERSION = "1.1.0"
SCHEMA_COMMIT = "3bfefec8446ee196d1723c0e35859eb7762da3c9"
SPECIFICATION_URI = f"https://github.com/Boavizta/BoAmps/tree/{SCHEMA_COMMIT}/model"
SCHEMA_DIR = pathlib.Path(__file__).with_name("boamps_schema")
SUB_SCHEMAS = ("algorithm", "dataset", "measure", "hardware")
QUALITY = ((0.10, "high"), (0.25, "medium"), (0.50, "low"))
#: where in a BoAmps document a list from the context is appended to TAO's
APPENDED_LISTS = ("infrastructure.components",)


def _load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}_schema.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resources(
        [(_load(n)["id"], Resource.from_contents(_load(n), default_specification=DRAFT4)) for n in SUB_SCHEMAS])
    return jsonschema.Draft4Validator(_load("report"), registry=registry)


def boamps_problems(doc: Any) -> list[str]:
    """BoAmps 1.1.0 schema errors of ``doc`` (empty when valid), each naming its field path."""
    errors = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        errors.append(f"{where}: {err.message}")
    return errors


# ----------------------------------------------------------------------------- what TAO knows
def _datetime(iso: Optional[str]) -> Optional[str]:
    if not iso:
        return None
    t = _dt.datetime.fromisoformat(iso).astimezone(_dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _tracking(prov: Mapping[str, Any], measured: str) -> str:
    sources = {p for r in prov["by_source"] for p in r["source"].split("+")}
    return measured if f"measured-{measured}" in sources else "modeled"


def _measure(report: Mapping[str, Any]) -> dict:
    e, prov, hw = report["energy"], report["provenance"], report["hardware"]
    methods = "; ".join(f"{r['source']}: {'; '.join(r['methods']) or 'method not stated'}" for r in prov["by_source"])
    m: dict[str, Any] = {
        "measurementMethod": f"tao ({methods})" if methods else "tao",
        "version": report["generator"]["version"],
        "cpuTrackingMode": _tracking(prov, "rapl"),
        "powerConsumption": e["it_energy_j"] / 3.6e6,
    }
    if any(t["gpus"] for t in hw["node_types"]):
        m["gpuTrackingMode"] = _tracking(prov, "nvml")
    wall = report["model_documentation"]["training_time"]["wall_clock_s"]
    if wall is not None:
        m["measurementDuration"] = wall
    start = _datetime(report["subject"]["start_time"])
    if start:
        m["measurementDateTime"] = start
    return m


def _components(hw: Mapping[str, Any]) -> list[dict]:
    out = []
    for t in hw["node_types"]:
        where = f"{t['cluster']}/" if t.get("cluster") else ""
        out.append({"componentName": f"{where}{t['node_type']}: CPUs of one node ({t['cpus']:g} logical CPUs)",
                    "componentType": "cpu", "nbComponent": int(t["count"])})
        if t["gpus"]:
            out.append({"componentName": f"{where}{t['node_type']}: GPU", "componentType": "gpu",
                        "nbComponent": int(round(t["count"] * t["gpus"]))})
    return out


def quality(report: Mapping[str, Any]) -> Optional[str]:
    """BoAmps ``quality`` of the report's energy figure (None when its uncertainty is unknown or above 50 %)."""
    u, it = report["provenance"]["uncertainty"], report["energy"]["it_energy_j"]
    if not u["complete"] or it <= 0:
        return None
    err = 2.0 * u["upper_bound_j"] / it
    return next((name for bound, name in QUALITY if err <= bound), None)


def tao_part(report: Mapping[str, Any], stage: Optional[str]) -> dict:
    """The BoAmps fields TAO fills from ``report`` (``stage``: the context's taskStage)."""
    doc: dict[str, Any] = {
        "header": {"formatVersion": FORMAT_VERSION, "formatVersionSpecificationUri": SPECIFICATION_URI,
                   "reportId": report["integrity"]["content_sha256"],
                   "reportDatetime": _datetime(report["generated_at"])},
        "measures": [_measure(report)],
        "infrastructure": {"components": _components(report["hardware"])},
    }
    requests = next((t["amount"] for t in report["work_units"]["totals"] if t["unit"] == "requests"), None)
    if requests is not None and stage and "inference" in stage:
        doc["task"] = {"nbRequest": requests}
    q = quality(report)
    if q is not None:
        doc["quality"] = q
    return doc


# ----------------------------------------------------------------------------- merge with the context
def _merge(tao: Any, user: Any, path: str) -> Any:
    if isinstance(tao, dict) and isinstance(user, dict):
        out = dict(tao)
        for k, v in user.items():
            out[k] = _merge(tao[k], v, f"{path}.{k}".lstrip(".")) if k in tao else v
        return out
    if path in APPENDED_LISTS and isinstance(tao, list) and isinstance(user, list):
        return tao + user
    if tao != user:
        raise ParameterError("context", None, f"{path} is {user!r}, but TAO fills it from the energy report "
                                              f"({tao!r}); leave it out of {{context}}")
    return tao


def _intensity(doc: dict, report: Mapping[str, Any]) -> None:
    em = report.get("emissions")
    env = doc.get("environment")
    if isinstance(env, dict) and em and em["carbon_intensity_g_per_kwh"] is not None:
        doc["environment"] = _merge({"powerSourceCarbonIntensity": em["carbon_intensity_g_per_kwh"]}, env,
                                    "environment")


def _missing(problems: list[str]) -> str:
    return (f"the BoAmps {FORMAT_VERSION} schema does not accept the export ({'; '.join(problems[:3])}"
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "") + "). Fields TAO cannot know "
            "(task.taskStage, task.taskFamily, task.algorithms, task.dataset, infrastructure.infraType) come from "
            "{context}, a partial BoAmps JSON document")


def boamps_report(report: Mapping[str, Any], context: Optional[Mapping[str, Any]] = None) -> dict:
    """The BoAmps document of a valid energy ``report`` (check it first with
    ``validate_report``) and the user's ``context`` (a partial BoAmps document). Raises
    ``ParameterError`` (parameter ``context``) when the context sets a field TAO fills to
    another value, or the result does not validate against the BoAmps schema."""
    if context is not None and not isinstance(context, Mapping):
        raise ParameterError("context", None, "must be a JSON object (a partial BoAmps report)")
    context = dict(context or {})
    stage = (context.get("task") or {}).get("taskStage") if isinstance(context.get("task"), dict) else None
    doc = _merge(tao_part(report, stage if isinstance(stage, str) else None), context, "")
    _intensity(doc, report)
    problems = boamps_problems(doc)
    if problems:
        raise ParameterError("context", None, _missing(problems))
    return doc
