"""Federated merge: inputs verified, per-cluster provenance kept, sums consistent."""
from __future__ import annotations

import copy

import pytest

from governance_fixtures import write_run
from tao_core.errors import InputError, ParameterError
from tao_core.governance import (
    MemberEvidence, build_report, load_public_key, merge_reports, sign_report, validate_report,
)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("fed")
    write_run(d / "a.jsonl", run_id="run-a", cluster_name="lab-a", pue=1.2, source="measured-rapl")
    write_run(d / "b.jsonl", run_id="run-b", cluster_name="lab-b", pue=1.6, source="modeled", scale=2.0,
              budget_w=1000.0, violation_s=4.0)
    ra = sign_report(build_report(d / "a.jsonl", carbon_intensity_g_per_kwh=100.0), d / "a.jsonl.key")
    rb = build_report(d / "b.jsonl", carbon_intensity_g_per_kwh=400.0)  # unsigned: verified by its ledger
    ev = [MemberEvidence(pubkey=load_public_key(d / "a.jsonl.pub")), MemberEvidence(ledger=d / "b.jsonl")]
    return ra, rb, ev, d


def test_merge_sums_and_keeps_provenance(two):
    ra, rb, ev, d = two
    m = merge_reports([ra, rb], evidence=ev)
    assert validate_report(m) == []
    assert m["report_type"] == "federated" and "ledger" not in m and "parameters" not in m
    e = m["energy"]
    assert e["it_energy_j"] == pytest.approx(ra["energy"]["it_energy_j"] + rb["energy"]["it_energy_j"])
    assert e["facility_energy_j"] == pytest.approx(ra["energy"]["facility_energy_j"] + rb["energy"]["facility_energy_j"])
    assert e["task_energy_j"] == pytest.approx(ra["energy"]["task_energy_j"] + rb["energy"]["task_energy_j"])
    assert e["pue"] == pytest.approx(e["facility_energy_j"] / e["it_energy_j"])
    assert sum(r["energy_j"] for r in e["by_node"]) == pytest.approx(e["it_energy_j"])
    assert sum(r["tasks_j"] for r in e["by_node"]) == pytest.approx(e["task_energy_j"])
    assert {r["node_id"] for r in e["by_node"]} == {f"{c}/{n}" for c in ("lab-a", "lab-b") for n in ("n1", "n2", "g1")}
    members = {x["cluster"]: x for x in m["federation"]["members"]}
    assert set(members) == {"lab-a", "lab-b"}
    for rep, lab in ((ra, "lab-a"), (rb, "lab-b")):
        mem = members[lab]
        assert mem["report_sha256"] == rep["integrity"]["content_sha256"]
        assert mem["ledger"] == rep["ledger"] and mem["run_id"] == rep["subject"]["run_id"]
        assert mem["it_energy_j"] == rep["energy"]["it_energy_j"]
    inputs = {i["label"]: i["verified_by"] for i in m["federation"]["inputs"]}
    assert inputs["lab-a"]["method"] == "signature" and inputs["lab-a"]["key_id"] == ra["integrity"]["signature"]["key_id"]
    assert inputs["lab-b"] == {"method": "ledger", "key_id": None, "ledger_head": rb["ledger"]["head_hash"]}
    assert m["provenance"]["measured_share"] == pytest.approx(ra["energy"]["it_energy_j"] / e["it_energy_j"])
    ua, ub = ra["provenance"]["uncertainty"]["standard_j"], rb["provenance"]["uncertainty"]["standard_j"]
    assert m["provenance"]["uncertainty"]["standard_j"] == pytest.approx((ua ** 2 + ub ** 2) ** 0.5)
    assert m["emissions"]["emissions_kg_co2e"] == pytest.approx(
        ra["emissions"]["emissions_kg_co2e"] + rb["emissions"]["emissions_kg_co2e"])
    assert m["optimization_inversion"]["overhead_share"] == pytest.approx(1 - e["task_energy_j"] / e["facility_energy_j"])
    assert m["controller"]["budget_adherent"] is False  # b spent 4 s above its budget
    assert m["controller"]["decisions"]["place"] == 48


def test_merge_of_federated_keeps_members(two, tmp_path):
    ra, rb, ev, d = two
    m1 = sign_report(merge_reports([ra], evidence=ev[:1]), d / "a.jsonl.key")
    write_run(tmp_path / "c.jsonl", run_id="run-c", cluster_name="lab-c")
    rc = build_report(tmp_path / "c.jsonl", carbon_intensity_g_per_kwh=50.0)
    m2 = merge_reports([m1, rc], names=["eu", None], evidence=[ev[0], MemberEvidence(ledger=tmp_path / "c.jsonl")])
    assert validate_report(m2) == []
    mem = {x["cluster"]: x for x in m2["federation"]["members"]}
    assert set(mem) == {"eu/lab-a", "lab-c"}
    assert mem["eu/lab-a"]["via"] == m1["integrity"]["content_sha256"]
    assert mem["eu/lab-a"]["report_sha256"] == ra["integrity"]["content_sha256"]
    with pytest.raises(InputError, match="federated report has no ledger"):
        merge_reports([m1], evidence=[MemberEvidence(ledger=d / "a.jsonl")])


def test_merge_rejects_invalid_input_and_names_parameters(two):
    ra, rb, ev, _ = two
    bad = copy.deepcopy(rb)
    bad["energy"]["it_energy_j"] *= 0.5  # a lower figure, without rebuilding the report
    with pytest.raises(InputError, match=r"b\.json: rejected.*integrity"):
        merge_reports([ra, bad], sources=["a.json", "b.json"], evidence=ev)
    missing = copy.deepcopy(rb)
    del missing["provenance"]
    with pytest.raises(InputError, match=r"input 2: rejected.*provenance"):
        merge_reports([ra, missing], evidence=ev)
    with pytest.raises(ParameterError, match="names") as ei:
        merge_reports([ra, rb], names=["x"], evidence=ev)
    assert "--" not in str(ei.value)
    with pytest.raises(ParameterError, match="names 'same'.*give distinct labels with names"):
        merge_reports([ra, rb], names=["same", "same"], evidence=ev)
    with pytest.raises(ParameterError, match="evidence"):
        merge_reports([ra, rb], evidence=[ev[0]] * 3)
