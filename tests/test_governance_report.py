"""Energy report: figures from ledger records (one task-work figure), JSON Schema and builder
in agreement on every field, integrity, renderings, output files."""
from __future__ import annotations

import base64
import copy
import json
import os
import re

import pytest

from governance_fixtures import append_run, run_parts, write_run
from tao_core.errors import InputError, ParameterError
from tao_core.governance import (
    Ledger, MemberEvidence, build_report, build_report_from_records, content_sha256, load_public_key, load_report,
    merge_reports, sign_report, validate_report, write_report,
)
from tao_core.governance.validate import load_schema

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


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
    # one task-work figure: the headline, the by-node task work and the by-group energy
    assert e["task_energy_j"] == pytest.approx(exp["task"])
    assert sum(r["tasks_j"] for r in e["by_node"]) == pytest.approx(exp["task"])
    assert sum(r["energy_j"] for r in e["by_group"]) == pytest.approx(exp["task"])
    assert e["idle_energy_j"] == pytest.approx(exp["idle"]) and e["boot_energy_j"] == 0.0
    assert e["task_energy_j"] + e["idle_energy_j"] + e["boot_energy_j"] + e["off_energy_j"] == pytest.approx(exp["it"])
    # conserved: components, nodes each add up to IT energy
    assert sum(r["energy_j"] for r in e["by_component"]) == pytest.approx(exp["it"])
    assert sum(r["energy_j"] for r in e["by_node"]) == pytest.approx(exp["it"])
    gpu = next(r for r in e["by_component"] if r["component"] == "gpu")
    assert gpu["energy_j"] == pytest.approx(0.3 * next(n.energy_j for n in exp["nodes"] if n.node_id == "g1"))
    for g in ("train_step", "preprocess", "evaluate"):
        row = next(r for r in e["by_group"] if r["group"] == g)
        assert row["energy_j"] == pytest.approx(sum(t.energy_j for t in exp["tasks"] if t.group == g))
        assert row["tasks"] == 8
    jobs = {r["job"]: r for r in e["by_job"]}
    assert jobs["job-b"]["within_budget"] is False and jobs["job-a"]["within_budget"] is True
    assert {r["node_id"]: r["node_type"] for r in e["by_node"]} == {"n1": "xeon-2s", "n2": "xeon-2s", "g1": "gpu-a100"}
    # provenance, uncertainty
    p = report["provenance"]
    assert p["measured_share"] == pytest.approx(1.0) and p["modeled_share"] == 0.0
    std = sum((0.02 * n.energy_j) ** 2 for n in exp["nodes"]) ** 0.5
    assert p["uncertainty"]["standard_j"] == pytest.approx(std)
    assert p["uncertainty"]["upper_bound_j"] == pytest.approx(0.02 * exp["it"])
    # emissions, overhead share (one rule: 1 - task work / facility; inverted above 0.5)
    em = report["emissions"]
    assert em["emissions_kg_co2e"] == pytest.approx(exp["facility"] / 3.6e6 * 250.0 / 1000.0)
    oi = report["optimization_inversion"]
    assert oi["overhead_share"] == pytest.approx(1 - exp["task"] / exp["facility"]) and oi["inverted"] is True
    assert report["controller"]["decisions"] == {"place": 24, "defer": 1}
    assert report["controller"]["budget_adherent"] is True
    led = report["ledger"]
    assert led["signer_authenticated"] and led["closed"] and led["status"] == "intact"
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert led["head_hash"] == last["hash"] and led["head_seq"] == last["seq"] == led["signed_through_seq"]
    assert report["hardware"]["telemetry"][0]["source"] == "measured-rapl"
    assert [t["count"] for t in report["hardware"]["node_types"]] == [2, 1]
    provs = " ".join(m["provision"] for m in report["regulatory"]["mapping"])
    assert "Annex XI, Section 1, point 2(e)" in provs and "Article 53(1)(a)" in provs
    est = {m["field"]: m["estimated"] for m in report["regulatory"]["estimates"]}
    assert est["energy.it_energy_j"] is False and est["energy.facility_energy_j"] is True


def _schema_paths(schema: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in (schema.get("properties") or {}).items():
        out.add(f"{prefix}/{k}")
        out |= _schema_paths(v, f"{prefix}/{k}")
        for alt in v.get("oneOf", []):
            out |= _schema_paths(alt, f"{prefix}/{k}")
        if isinstance(v.get("items"), dict):
            out |= _schema_paths(v["items"], f"{prefix}/{k}")
    return out


def _doc_paths(doc, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(f"{prefix}/{k}")
            if not (prefix.endswith("/controller/config") or prefix.endswith("/decisions")):
                out |= _doc_paths(v, f"{prefix}/{k}")
    elif isinstance(doc, list):
        for v in doc:
            out |= _doc_paths(v, prefix)
    return out


def test_one_report_of_every_kind_builds_and_validates(tmp_path):
    """The schema and the builder agree on every field: a report of every kind validates
    (the schema forbids fields it does not name and requires every field it names), and
    every field the schema names is written by some report."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_run(a, run_id="run-a", cluster_name="lab-a")
    write_run(b, run_id="run-b", cluster_name="lab-b", source="modeled", scale=2.0)
    sim = tmp_path / "sim.jsonl"
    from tao_core.cli.main import main

    assert main(["simulate", "--cluster", str(EXAMPLES / "cluster_small.json"), "--workload",
                 str(EXAMPLES / "workload_small.csv"), "--policy", "tao", "--carbon", "300", "--ledger", str(sim)]) == 0
    crashed = tmp_path / "crashed.jsonl"
    led = Ledger(crashed, checkpoint_every=10)
    append_run(led, run_parts(run_id="crash"))
    led.abort()
    config, nodes, tasks, summary = run_parts(run_id="tasks-only")
    from tao_core.accounting.records import run_records

    task_only = [{"kind": k, "payload": p, "seq": i + 1, "time": 1.0}
                 for i, (k, p) in enumerate(run_records(config, [], tasks, summary))]
    ra = sign_report(build_report(a, carbon_intensity_g_per_kwh=100.0, pubkey=str(a) + ".pub"), str(a) + ".key")
    rb = sign_report(build_report(b), str(b) + ".key")
    keys = [MemberEvidence(pubkey=load_public_key(str(p) + ".pub")) for p in (a, b)]
    fed = merge_reports([ra, rb], evidence=keys)
    sign_report(fed, str(a) + ".key")
    reports = {
        "run": build_report(a),
        "run, signed, carbon intensity given, signer authenticated": ra,
        "run with emissions from a carbon signal": build_report(sim),
        "one job": build_report(a, job="job-a"),
        "unsigned records included": build_report(crashed, include_unsigned=True),
        "task records only, unverified": build_report_from_records(task_only),
        "group records only (simulator)": build_report(sim, carbon_intensity_g_per_kwh=50.0),
        "federated": fed,
        "federated of a federated": merge_reports([fed], evidence=[keys[0]], names=["eu"]),
    }
    seen: set[str] = set()
    for kind, rep in reports.items():
        assert validate_report(rep) == [], kind
        seen |= _doc_paths(rep)
    missing = sorted(_schema_paths(load_schema()) - seen)
    assert missing == [], f"schema fields no report writes: {missing}"


def test_records_in_the_adapters_shapes_give_one_task_work_figure():
    """The shape tao_dask writes today (read through accounting.legacy): the headline task
    work is the energy charged to tasks (not their dynamic part), and the by-node and
    by-group tables add up to it. tao_ray's old shape (task work at the payload's top) is
    refused: tao_ray writes tao-run-records/1."""
    nodes = [("w1", 200.0, 150.0, 50.0, 40.0), ("w2", 100.0, 60.0, 40.0, 20.0)]  # id, total, tasks, idle, dynamic
    cfg = {"run_id": "x", "engine": "ray", "policy": "tao", "controller": {"pue": 1.5},
           "cluster": {"pue": 1.5, "power_budget_w": None,
                       "nodes": [{"node_id": n, "node_type": "t", "cpus": 2.0, "gpus": 0.0} for n, *_ in nodes]},
           "telemetry": [{"domain": f"node:{n}", "source": "modeled", "method": "m"} for n, *_ in nodes]}
    ray_nodes = [{"scope": "node", "id": n, "node_id": n, "group": None, "job": None, "energy_j": tot,
                  "components": {"other": tot}, "source": "modeled", "method": "m", "uncertainty": 0.1,
                  "start_s": 0.0, "end_s": 9.0, "tasks_j": t, "idle_j": i} for n, tot, t, i, _ in nodes]
    dask_nodes = [{"scope": "node", "id": n, "node_id": n, "group": None, "job": None, "energy_j": tot,
                   "components": {"other": tot}, "source": "modeled", "method": "m", "uncertainty": 0.1,
                   "start_s": 0.0, "end_s": 9.0, "detail": {"tasks_j": t, "dynamic_j": d, "idle_j": i}}
                  for n, tot, t, i, d in nodes]
    tasks = [{"scope": "task", "id": f"{n}-{k}", "node_id": n, "group": f"g{k}", "job": None, "energy_j": t / 2,
              "components": {"other": t / 2}, "source": "modeled", "method": "split", "uncertainty": 0.1,
              "start_s": 0.0, "end_s": 1.0} for n, _, t, _, _ in nodes for k in range(2)]
    summary = {"it_energy_j": 300.0, "facility_energy_j": 450.0, "pue": 1.5, "dynamic_energy_j": 60.0,
               "idle_energy_j": 90.0, "boot_energy_j": 0.0, "overhead_share": 0.8, "peak_power_w": 10.0,
               "power_budget_w": None, "budget_violation_s": None, "makespan_s": 9.0, "tasks_completed": 4}
    for node_recs in (ray_nodes, dask_nodes):
        recs = [("config", cfg)] + [("energy", p) for p in node_recs + tasks] + [("summary", summary)]
        numbered = [{"kind": k, "payload": p, "seq": i + 1, "time": 1.0} for i, (k, p) in enumerate(recs)]
        if node_recs is ray_nodes:
            with pytest.raises(InputError, match="without detail.tasks_j"):
                build_report_from_records(numbered)
            continue
        rep = build_report_from_records(numbered)
        assert validate_report(rep) == []
        e = rep["energy"]
        assert e["task_energy_j"] == 210.0 and e["idle_energy_j"] == 90.0 and e["it_energy_j"] == 300.0
        assert sum(r["tasks_j"] for r in e["by_node"]) == 210.0 and sum(r["energy_j"] for r in e["by_group"]) == 210.0
        assert rep["optimization_inversion"]["overhead_share"] == pytest.approx(1 - 210.0 / 450.0)
        assert rep["ledger"]["status"] == "unverified"


def test_job_report_and_run_selection(tmp_path):
    path = tmp_path / "two.jsonl"
    write_run(path, run_id="a")
    with Ledger(path) as led:  # a second run appended to the same ledger
        append_run(led, run_parts(run_id="b"))
    with pytest.raises(ParameterError, match="2 runs.*choose one with run_id or policy") as ei:
        build_report(path)
    assert "--" not in str(ei.value)
    with pytest.raises(ParameterError, match="run_id 'zzz'"):
        build_report(path, run_id="zzz")
    rb = build_report(path, run_id="b")
    assert rb["subject"]["run_id"] == "b" and validate_report(rb) == []
    assert rb["subject"]["first_seq"] > build_report(path, run_id="a")["subject"]["last_seq"]
    rj = build_report(path, run_id="a", job="job-a")
    assert validate_report(rj) == []
    assert rj["subject"]["job"] == "job-a" and rj["parameters"]["job"] == "job-a"
    assert [r["job"] for r in rj["energy"]["by_job"]] == ["job-a"]
    assert rj["energy"]["it_energy_j"] == pytest.approx(sum(100.0 + 10.0 * i for i in range(12)))
    assert rj["energy"]["task_energy_j"] == rj["energy"]["it_energy_j"]
    assert rj["optimization_inversion"]["overhead_share"] is None
    with pytest.raises(ParameterError, match="job 'nope'"):
        build_report(path, run_id="a", job="nope")
    with pytest.raises(ParameterError, match="policy 'ray'"):
        build_report(path, policy="ray")


def test_tampered_ledger_is_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    write_run(path)
    data = path.read_bytes().replace(b'"energy_j":100.0', b'"energy_j":10.00', 1)
    path.write_bytes(data)
    with pytest.raises(ParameterError, match="fails verification at seq"):
        build_report(path)
    with pytest.raises(ParameterError, match="carbon_intensity_g_per_kwh"):
        build_report(tmp_path / "x.jsonl", carbon_intensity_g_per_kwh=-1)
    with pytest.raises(InputError, match="no such file"):
        build_report(tmp_path / "x.jsonl")


def test_inconsistent_records_are_refused(tmp_path):
    """A writer whose records do not add up gets no report (one task-work figure or none)."""
    config, nodes, tasks, summary = run_parts()
    from tao_core.accounting.records import WorkRecord

    path = tmp_path / "x.jsonl"
    with Ledger(path) as led:
        led.append("config", config.payload())
        for n in nodes:
            led.append("energy", n.payload())
        led.append("energy", WorkRecord(scope="group", id="g", group="g", energy_j=1.0, source="modeled",
                                        method="m").payload())
        led.append("summary", summary.payload())
    with pytest.raises(InputError, match="do not add up.*by_group"):
        build_report(path)
    bad = dict(nodes[0].payload(), tasks_j=1.0)
    with Ledger(tmp_path / "y.jsonl") as led:
        led.append("config", config.payload())
        led.append("energy", bad)
    with pytest.raises(InputError, match=r"ledger seq 3 \(energy record\).*not energy_j"):
        build_report(tmp_path / "y.jsonl")


def test_schema_rejects_missing_and_extra_fields(report):
    schema = load_schema()
    assert validate_report(report) == []
    for key in schema["required"] + ["ledger", "parameters"]:
        broken = copy.deepcopy(report)
        del broken[key]
        problems = validate_report(broken)
        assert problems, key
    for section in ("energy", "provenance", "subject", "controller", "integrity", "ledger", "parameters"):
        for key in schema["properties"][section]["required"]:
            broken = copy.deepcopy(report)
            del broken[section][key]
            problems = validate_report(broken)
            assert problems and key in " ".join(problems), (section, key)
        broken = copy.deepcopy(report)
        broken[section]["unexpected"] = 1
        assert validate_report(broken), section
    broken = copy.deepcopy(report)
    broken["energy"]["it_energy_j"] = "inf"
    assert "energy/it_energy_j" in validate_report(broken)[0]
    broken = copy.deepcopy(report)
    broken["federation"] = {"members": [], "inputs": [], "method": ""}
    assert validate_report(broken)


def test_integrity_and_sums_detect_changes(report):
    assert report["integrity"]["content_sha256"] == content_sha256(report)
    changed = copy.deepcopy(report)
    changed["energy"]["by_node"][0]["energy_j"] *= 0.5
    problems = validate_report(changed)
    assert len(problems) == 1 and "integrity/content_sha256" in problems[0]
    from tao_core.governance.validate import seal

    seal(changed)  # re-sealed: the sums give it away
    problems = validate_report(changed)
    assert problems and any("by_node" in p for p in problems), problems


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
    assert md.count("\n| task work | ") == 1 and "(dynamic)" not in md
    write_report(report, tmp_path / "r.html", "html")
    html = (tmp_path / "r.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    assert "Inverted: more than half" in html and report["integrity"]["content_sha256"] in html
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    with pytest.raises(ParameterError, match="fmt 'pdf'"):
        write_report(report, tmp_path / "r.pdf", "pdf")
    with pytest.raises(InputError, match="does not exist"):
        write_report(report, tmp_path / "no" / "r.json", "json")


@pytest.mark.parametrize("kind", ["folder", "device", "fifo", "symlink", "read-only folder", "an input"])
@pytest.mark.parametrize("fmt", ["json", "md", "html"])
def test_report_outputs_refuse_what_is_not_a_new_or_regular_file(tmp_path, report, kind, fmt):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / f"out.{fmt}"
    inputs = []
    if kind == "folder":
        target.mkdir()
    elif kind == "device":
        target = "/dev/null"
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(victim)
    elif kind == "read-only folder":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / f"out.{fmt}"
        if os.access(ro, os.W_OK):  # root writes anywhere: nothing to test
            pytest.skip("running as a user that can write into a read-only folder")
    else:
        inputs = [("--ledger", victim)]
        target = victim
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as ei:
        write_report(report, target, fmt, field="--out", inputs=inputs)
    assert "--out" in str(ei.value) and "\n" not in str(ei.value)
    assert victim.read_text() == "keep" and sorted(p.name for p in tmp_path.rglob("*")) == before


def test_report_from_tao_simulate_ledger(tmp_path):
    """End to end: `tao simulate --ledger`, then build, validate and render the report."""
    from tao_core.cli.main import main

    led = tmp_path / "sim.jsonl"
    assert main(["simulate", "--cluster", str(EXAMPLES / "cluster_small.json"), "--workload",
                 str(EXAMPLES / "workload_small.csv"), "--policy", "tao", "--policy", "pack", "--ledger", str(led)]) == 0
    assert main(["audit", "verify", str(led), "--pubkey", str(led) + ".pub", "--require-closed"]) == 0
    rep = build_report(led, policy="tao", pubkey=str(led) + ".pub", carbon_intensity_g_per_kwh=300.0)
    assert validate_report(rep) == []
    e = rep["energy"]
    assert rep["subject"]["policy"] == "tao" and rep["ledger"]["signer_authenticated"]
    assert sum(r["energy_j"] for r in e["by_node"]) == pytest.approx(e["it_energy_j"], rel=1e-9)
    assert sum(r["tasks_j"] for r in e["by_node"]) == pytest.approx(e["task_energy_j"], rel=1e-9)
    assert sum(r["energy_j"] for r in e["by_group"]) == pytest.approx(e["task_energy_j"], rel=1e-9)
    assert e["facility_energy_j"] == pytest.approx(e["it_energy_j"] * e["pue"], rel=1e-9)
    oi = rep["optimization_inversion"]
    assert oi["overhead_share"] == pytest.approx(1 - e["task_energy_j"] / e["facility_energy_j"])
    assert oi["inverted"] is (oi["overhead_share"] > 0.5)
    assert rep["provenance"]["modeled_share"] == pytest.approx(1.0)
    assert rep["controller"]["decisions"].get("place", 0) == rep["subject"]["tasks_completed"]
    write_report(rep, tmp_path / "r.html", "html")
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_bad_pue_is_refused(tmp_path):
    config, nodes, tasks, summary = run_parts()
    payload = config.payload()
    payload["cluster"]["pue"] = 0.8
    path = tmp_path / "p.jsonl"
    with Ledger(path) as led:
        led.append("config", payload)
    with pytest.raises(InputError, match="cluster.pue is 0.8.*>= 1"):
        build_report(path)
