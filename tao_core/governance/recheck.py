"""Provenance claims of a report, recomputed: from its ledger (a run report) or from its
inputs (a federated report). A report's own fields (signer, signed range, closed, status,
signer_authenticated, figures) are never trusted: the report is built again from the
evidence and every field must be the same.

``check_against_ledger(report, ledger, pubkey)``: verify the ledger (against ``pubkey``
when given), rebuild the report with the report's ``parameters`` from the ledger prefix up
to ``ledger.head_seq``, and compare every field but ``generated_at``, ``generator``,
``integrity`` and ``ledger.file``. A report that claims ``signer_authenticated`` can only
be confirmed with the signer's public key; one that says it was built without the key
passes a check with the key.

``check_federated(report, inputs, evidence)``: verify each input as ``merge_reports`` does,
merge them again under the report's labels, and compare every field the same way.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from tao_core.errors import InputError

VOLATILE = ("generated_at", "generator", "integrity")


def first_difference(a: Any, b: Any, path: str = "") -> str:
    """Path of the first difference between two JSON values ('' when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}/{i}")
            if d:
                return d
        return ""
    return "" if a == b else (path or "/")


def comparable(report: Mapping[str, Any]) -> dict:
    """The report without the fields a rebuild may change (time, tool version, digest, file name)."""
    r = {k: v for k, v in report.items() if k not in VOLATILE}
    if isinstance(r.get("ledger"), dict):
        r["ledger"] = {k: v for k, v in r["ledger"].items() if k != "file"}
    return r


def _value_at(doc: Any, path: str) -> Any:
    for part in [p for p in path.split(" ")[0].split("/") if p]:
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def describe_difference(claimed: Mapping[str, Any], rebuilt: Mapping[str, Any], what: str) -> Optional[str]:
    """None when equal (but for volatile fields), else which field differs and how."""
    where = first_difference(comparable(claimed), comparable(rebuilt))
    if not where:
        return None
    if where == "/ledger/signer_authenticated" and claimed["ledger"]["signer_authenticated"]:
        return ("ledger/signer_authenticated: the report claims its signer was authenticated; "
                "give the signer's public key to confirm it")
    return (f"{where.lstrip('/')}: the report says {_value_at(claimed, where)!r}, {what} gives "
            f"{_value_at(rebuilt, where)!r}")


def check_against_ledger(report: Mapping[str, Any], ledger: Any, pubkey: Any = None) -> list[str]:
    """Problems found rebuilding the run ``report`` from the ledger at ``ledger`` (empty: same report)."""
    from tao_core.governance.report import ReportParameters, build_report

    led = report.get("ledger") or {}
    if report.get("report_type") != "run" or led.get("status") != "intact" or not led.get("head_seq"):
        return ["ledger: only a run report built from a verified ledger can be checked against one"]
    params = ReportParameters.from_section(report["parameters"])
    try:
        rebuilt = build_report(
            ledger, pubkey=pubkey, run_id=params.run_id, policy=params.policy, job=params.job,
            carbon_intensity_g_per_kwh=params.carbon_intensity_g_per_kwh, cluster_name=params.cluster_name,
            include_unsigned=params.include_unsigned, upto_seq=led["head_seq"], generated_at=report["generated_at"],
            embodied_g_co2e=params.embodied_g_co2e)
    except InputError as exc:
        return [f"cannot be rebuilt from the ledger {ledger}: {exc}"]
    if rebuilt["ledger"]["head_hash"] != led["head_hash"]:
        return [f"ledger/head_hash: {led['head_hash']} is not the hash of record {led['head_seq']} of {ledger} "
                f"({rebuilt['ledger']['head_hash']}): the report is not of this ledger"]
    if not led.get("signer_authenticated"):  # a report may understate: built without the key, checked with it
        rebuilt["ledger"]["signer_authenticated"] = False
    diff = describe_difference(report, rebuilt, f"the report rebuilt from {ledger}")
    return [diff] if diff else []


def check_federated(report: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]], evidence: Sequence[Any],
                    sources: Optional[Sequence[str]] = None) -> list[str]:
    """Problems found merging ``inputs`` (the reports a federated ``report`` was merged
    from, in any order) again: empty when the merge gives the same report."""
    from tao_core.governance.merge import merge_reports

    if report.get("report_type") != "federated":
        return ["federation: only a federated report is checked against its inputs"]
    sources = list(sources) if sources else [f"input {i + 1}" for i in range(len(inputs))]
    by_digest = {(r.get("integrity") or {}).get("content_sha256"): i for i, r in enumerate(inputs)}
    order, names = [], []
    for want in report["federation"]["inputs"]:
        i = by_digest.get(want["report_sha256"])
        if i is None:
            return [f"federation/inputs: no given report has the SHA-256 {want['report_sha256']} of input "
                    f"{want['label']!r}; give every report it was merged from"]
        order.append(i)
        names.append(want["label"])
    if len(order) != len(inputs):
        return [f"federation/inputs: {len(inputs)} report(s) given, the federated report was merged from {len(order)}"]
    evidence = list(evidence) * len(inputs) if len(evidence) == 1 else list(evidence)
    if len(evidence) != len(inputs):
        return [f"evidence: {len(evidence)} for {len(inputs)} report(s); give one per report or one for all"]
    try:
        merged = merge_reports([inputs[i] for i in order], evidence=[evidence[i] for i in order], names=names,
                               sources=[sources[i] for i in order], generated_at=report["generated_at"])
    except InputError as exc:
        return [f"cannot be merged again from its inputs: {exc}"]
    diff = describe_difference(report, merged, "merging its inputs again")
    return [diff] if diff else []
