"""Energy report: figures from ledger records, JSON Schema, integrity, renderings."""
from __future__ import annotations

import base64
import copy
import json
import re

import pytest

from governance_fixtures import write_run
from tao_core.errors import InputError
from tao_core.governance import (
    Ledger, build_report, content_sha256, load_report, validate_report, write_report,
)
from tao_core.governance.validate import load_schema


@pytest.fixture(scope="module")
def run_ledger(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    path = d / "run.jsonl"
    exp = write_run(path)
    return path, exp


@pytest.fixture(scope="module")
def report(run_ledger):
    path, _ = run_ledger
    return build_report(path, carbon_intensity_g_per_kwh=250.0, pubkey=str(path) + ".pub")


def test_figures_match_the_records(run_ledger, report):
    path, exp = run_ledger
    e = report["energy"]
    assert validate_report(report) == []
    assert e["it_energy_j"] == pytest.approx(exp["it"])
    assert e["facility_energy_j"] == pytest.approx(exp["facility"])
    assert e["facility_overhead_j"] == pytest.approx(exp["facility"] - exp["it"])
    # conserved: components, nodes each add up to IT energy
    assert sum(r["energy_j"] for r in e["by_component"]) == pytest.approx(exp["it"])
    assert sum(r["energy_j"] for r in e["by_node"]) == pytest.approx(exp["it"])
    assert {r["component"] for r in e["by_component"]} == {"cpu_package", "dram", "gpu", "other"}
    gpu = next(r for r in e["by_component"] if r["component"] == "gpu")
    assert gpu["energy_j"] == pytest.approx(0.3 * next(n["energy_j"] for n in exp["nodes"] if n["id"] == "g1"))
    # groups and jobs from the task records
    for g in ("train_step", "preprocess", "evaluate"):
        row = next(r for r in e["by_group"] if r["group"] == g)
        assert row["energy_j"] == pytest.approx(sum(t["energy_j"] for t in exp["tasks"] if t["group"] == g))
        assert row["tasks"] == 8
    jobs = {r["job"]: r for r in e["by_job"]}
    assert jobs["job-b"]["within_budget"] is False and jobs["job-a"]["within_budget"] is True
    assert {r["node_id"]: r["node_type"] for r in e["by_node"]} == {"n1": "xeon-2s", "n2": "xeon-2s", "g1": "gpu-a100"}
    # provenance, uncertainty
    p = report["provenance"]
    assert p["measured_share"] == pytest.approx(1.0) and p["modeled_share"] == 0.0
    std = sum((0.02 * n["energy_j"]) ** 2 for n in exp["nodes"]) ** 0.5
    assert p["uncertainty"]["standard_j"] == pytest.approx(std)
    assert p["uncertainty"]["upper_bound_j"] == pytest.approx(0.02 * exp["it"])
    # emissions, O-I index, controller, ledger head
    em = report["emissions"]
    assert em["emissions_kg_co2e"] == pytest.approx(exp["facility"] / 3.6e6 * 250.0 / 1000.0)
    oi = report["optimization_inversion"]
    assert oi["overhead_share"] == pytest.approx(1 - exp["dynamic"] / exp["facility"]) and oi["inverted"] is True
    assert report["controller"]["decisions"] == {"place": 24, "defer": 1}
    assert report["controller"]["budget_adherent"] is True
    led = report["ledger"]
    assert led["signer_authenticated"] and led["closed"] and led["status"] == "intact"
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert led["head_hash"] == last["hash"] and led["head_seq"] == last["seq"]
    assert report["hardware"]["telemetry"][0]["source"] == "measured-rapl"
    assert [t["count"] for t in report["hardware"]["node_types"]] == [2, 1]
    # the regulatory section names the provisions
    provs = " ".join(m["provision"] for m in report["regulatory"]["mapping"])
    assert "Annex XI, Section 1, point 2(e)" in provs and "Article 53(1)(a)" in provs
    est = {m["field"]: m["estimated"] for m in report["regulatory"]["estimates"]}
    assert est["energy.it_energy_j"] is False and est["energy.facility_energy_j"] is True


def test_modeled_run_without_summary(tmp_path):
    path = tmp_path / "m.jsonl"
    exp = write_run(path, source="modeled", pue=1.2)
    # drop the summary: write the same records again without it
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]
    p2 = tmp_path / "nosum.jsonl"
    with Ledger(p2) as led:
        for r in recs:
            if r["kind"] in ("config", "energy", "decision"):
                led.append(r["kind"], r["payload"])
    rep = build_report(p2)
    assert validate_report(rep) == []
    e = rep["energy"]
    assert e["it_energy_basis"] == "sum of node energy records"
    assert e["it_energy_j"] == pytest.approx(exp["it"])
    assert e["facility_energy_j"] == pytest.approx(exp["it"] * 1.2) and e["facility_energy_method"] == "IT energy x PUE"
    assert rep["provenance"]["modeled_share"] == pytest.approx(1.0)
    assert rep["optimization_inversion"]["overhead_share"] == pytest.approx(1 - exp["dynamic"] / (exp["it"] * 1.2))
    assert rep["emissions"] is None
    est = {m["field"]: m for m in rep["regulatory"]["estimates"]}
    assert est["energy.it_energy_j"]["estimated"] is True and "power curve" in est["energy.it_energy_j"]["method"]


def test_job_report_and_run_selection(tmp_path):
    path = tmp_path / "two.jsonl"
    write_run(path, run_id="a")
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]
    with Ledger(path) as led:  # a second run appended to the same ledger
        for r in recs:
            if r["kind"] not in ("ledger", "checkpoint"):
                p = dict(r["payload"], run_id="b") if r["kind"] == "config" else r["payload"]
                led.append(r["kind"], p)
    with pytest.raises(InputError, match="2 runs.*--run-id"):
        build_report(path)
    with pytest.raises(InputError, match="--run-id zzz"):
        build_report(path, run_id="zzz")
    rb = build_report(path, run_id="b")
    assert rb["subject"]["run_id"] == "b" and validate_report(rb) == []
    assert rb["subject"]["first_seq"] > build_report(path, run_id="a")["subject"]["last_seq"]
    rj = build_report(path, run_id="a", job="job-a")
    assert validate_report(rj) == []
    assert rj["subject"]["job"] == "job-a"
    assert [r["job"] for r in rj["energy"]["by_job"]] == ["job-a"]
    assert rj["energy"]["it_energy_j"] == pytest.approx(sum(100.0 + 10.0 * i for i in range(12)))
    assert rj["optimization_inversion"]["overhead_share"] is None
    with pytest.raises(InputError, match="--job nope"):
        build_report(path, run_id="a", job="nope")


def test_tampered_ledger_is_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    write_run(path)
    data = path.read_bytes().replace(b'"energy_j":100.0', b'"energy_j":10.00', 1)
    path.write_bytes(data)
    with pytest.raises(InputError, match="fails verification at seq"):
        build_report(path)
    with pytest.raises(InputError, match="carbon-intensity"):
        build_report(tmp_path / "x.jsonl", carbon_intensity_g_per_kwh=-1)


def test_schema_rejects_missing_required_fields(report):
    schema = load_schema()
    assert validate_report(report) == []
    for key in schema["required"]:
        broken = copy.deepcopy(report)
        del broken[key]
        problems = validate_report(broken)
        assert problems and key in problems[0], key
    for section in ("energy", "provenance", "subject", "controller", "integrity"):
        for key in schema["properties"][section]["required"]:
            broken = copy.deepcopy(report)
            del broken[section][key]
            problems = validate_report(broken)
            assert problems and key in " ".join(problems), (section, key)
    broken = copy.deepcopy(report)
    del broken["ledger"]  # a run report must name its ledger
    assert validate_report(broken)
    broken = copy.deepcopy(report)
    broken["energy"]["it_energy_j"] = "inf"
    assert "energy/it_energy_j" in validate_report(broken)[0]


def test_integrity_detects_any_change(report):
    assert report["integrity"]["content_sha256"] == content_sha256(report)
    changed = copy.deepcopy(report)
    changed["energy"]["by_node"][0]["energy_j"] *= 0.5
    problems = validate_report(changed)
    assert len(problems) == 1 and "integrity/content_sha256" in problems[0]


def test_write_json_md_html(tmp_path, report):
    files = write_report(report, tmp_path / "r.json", "json")
    assert load_report(files[0]) == report and validate_report(load_report(files[0])) == []
    md_files = write_report(report, tmp_path / "r.md", "md")
    md = (tmp_path / "r.md").read_text()
    pngs = [f for f in md_files if f.suffix == ".png"]
    assert {f.name for f in pngs} == {"r-facility.png", "r-components.png", "r-nodes.png", "r-groups.png"}
    for f in pngs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({f.name})" in md
    for heading in ("## Energy by component", "## Energy by node", "## Measured and modeled energy",
                    "## EU AI Act mapping", "## Ledger", "## Controller and budget", "## Hardware and telemetry"):
        assert heading in md
    assert report["ledger"]["head_hash"] in md
    write_report(report, tmp_path / "r.html", "html")
    html = (tmp_path / "r.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    assert "Optimization-Inversion" in html and report["integrity"]["content_sha256"] in html
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left
    with pytest.raises(InputError, match="format"):
        write_report(report, tmp_path / "r.pdf", "pdf")
    with pytest.raises(InputError, match="does not exist"):
        write_report(report, tmp_path / "no" / "r.json", "json")


def test_runs_with_decisions_before_config_and_node_detail(tmp_path):
    """A writer may append a run's decisions before its config (the simulator does); a
    summary ends a run. Node records may split their energy (detail)."""
    path = tmp_path / "order.jsonl"
    with Ledger(path) as led:
        for name, scale in (("pack", 1.0), ("tao", 2.0)):
            led.append("decision", {"t_s": 0.0, "kind": "place", "subject": "t1"})
            led.append("decision", {"t_s": 1.0, "kind": "defer", "subject": "t2"})
            led.append("config", {"run_id": f"sim-{name}", "engine": "sim", "policy": name,
                                  "cluster": {"pue": 1.5, "nodes": [{"node_id": "a", "node_type": "x", "cpus": 4, "gpus": 0}]}})
            led.append("energy", {"scope": "node", "id": "a", "node_id": "a", "energy_j": 100.0 * scale,
                                  "components": {"other": 100.0 * scale}, "source": "modeled", "method": "curve",
                                  "uncertainty": None,
                                  "detail": {"dynamic_j": 30.0 * scale, "idle_j": 60.0 * scale, "boot_j": 10.0 * scale, "off_j": 0.0}})
            led.append("energy", {"scope": "group", "id": "g", "group": "g", "energy_j": 30.0 * scale,
                                  "source": "modeled", "method": "split by CPUs"})
            led.append("summary", {"it_energy_j": 100.0 * scale, "facility_energy_j": 150.0 * scale, "pue": 1.5,
                                   "dynamic_energy_j": 30.0 * scale, "idle_energy_j": 60.0 * scale,
                                   "boot_energy_j": 10.0 * scale, "off_energy_j": 0.0,
                                   "overhead_share": 1 - 30.0 / 150.0, "tasks_completed": 1})
    with pytest.raises(InputError, match="--policy"):
        build_report(path)
    rep = build_report(path, policy="tao")
    assert validate_report(rep) == []
    assert rep["subject"]["run_id"] == "sim-tao"
    assert rep["controller"]["decisions"] == {"place": 1, "defer": 1}
    assert rep["energy"]["it_energy_j"] == 200.0 and rep["energy"]["off_energy_j"] == 0.0
    node = rep["energy"]["by_node"][0]
    assert (node["dynamic_j"], node["idle_j"], node["boot_j"]) == (60.0, 120.0, 20.0)
    assert rep["energy"]["by_group"] == [{"group": "g", "energy_j": 60.0, "share": 0.3, "tasks": None}]
    assert rep["energy"]["attribution_methods"] == ["split by CPUs"]
    u = rep["provenance"]["uncertainty"]
    assert u["complete"] is False and u["relative"] is None and "no record states" in u["note"]
    with pytest.raises(InputError, match="--policy ray"):
        build_report(path, policy="ray")


def test_report_from_tao_simulate_ledger(tmp_path):
    """End to end: `tao simulate --ledger`, then build, validate and render the report."""
    pytest.importorskip("tao_core.cli.simulate")
    from tao_core.cli.main import main

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    cluster, workload = repo / "examples" / "cluster_small.json", repo / "examples" / "workload_small.csv"
    if not (cluster.exists() and workload.exists()):
        pytest.skip("examples/cluster_small.json and workload_small.csv not in this checkout")
    led = tmp_path / "sim.jsonl"
    assert main(["simulate", "--cluster", str(cluster), "--workload", str(workload),
                 "--policy", "tao", "--policy", "pack", "--ledger", str(led)]) == 0
    assert main(["audit", "verify", str(led), "--pubkey", str(led) + ".pub", "--require-closed"]) == 0
    rep = build_report(led, policy="tao", pubkey=str(led) + ".pub", carbon_intensity_g_per_kwh=300.0)
    assert validate_report(rep) == []
    e = rep["energy"]
    assert rep["subject"]["policy"] == "tao" and rep["ledger"]["signer_authenticated"]
    assert sum(r["energy_j"] for r in e["by_node"]) == pytest.approx(e["it_energy_j"], rel=1e-9)
    assert e["facility_energy_j"] == pytest.approx(e["it_energy_j"] * e["pue"], rel=1e-9)
    assert rep["provenance"]["modeled_share"] == pytest.approx(1.0)
    assert rep["controller"]["decisions"].get("place", 0) == rep["subject"]["tasks_completed"]
    write_report(rep, tmp_path / "r.html", "html")
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_bad_pue_is_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    with Ledger(path) as led:
        led.append("config", {"run_id": "r", "cluster": {"pue": 0.8}})
        led.append("energy", {"scope": "node", "id": "a", "energy_j": 5.0, "source": "modeled"})
    with pytest.raises(InputError, match="pue 0.8.*>= 1"):
        build_report(path)
