"""The field's formats in energy reports: the Model Documentation Form section
(``--format mdf``), energy and emissions per unit of work, the SCI, and the BoAmps export,
each built from a ledger and validated (the report schema, its internal sums, a rebuild from
the ledger, the BoAmps schema)."""
from __future__ import annotations

import copy
import csv
import json
import math

import pytest

from governance_fixtures import write_run
from tao_core.accounting.per_unit import METRICS, metric_samples
from tao_core.cli.main import main
from tao_core.errors import InputError, ParameterError
from tao_core.governance import (
    MemberEvidence, build_report, check_against_ledger, check_federated, load_public_key, merge_reports,
    validate_report,
)
from tao_core.governance.boamps import boamps_problems, boamps_report
from tao_core.governance.mdf import figures_allowed, significant_text
from tao_core.governance.render import render_markdown, render_mdf
from tao_core.governance.validate import seal

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"
CONTEXT = {
    "task": {"taskStage": "inference", "taskFamily": "text generation", "algorithms": [{"algorithmType": "llm"}],
             "dataset": [{"dataUsage": "output", "dataType": "token"}]},
    "infrastructure": {"infraType": "onPremise"},
    "environment": {"country": "France"},
}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("fmt") / "run.jsonl"
    exp = write_run(path, flops=True)
    return path, exp


@pytest.fixture(scope="module")
def report(ledger):
    path, _ = ledger
    return build_report(path, carbon_intensity_g_per_kwh=250.0, embodied_g_co2e=40.0)


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value, u, sig, text", [
    (0.012345, 0.0006, 3, "0.0123"),     # the uncertainty's first digit sits at 1e-4
    (0.012345, 0.005, 2, "0.012"),       # never fewer than two
    (0.012345, None, 2, "0.012"),        # unknown uncertainty: two
    (1.25066e-05, 1.44e-07, 3, "1.25e-05"),
    (9.96, 0.5, 2, "10"),                # rounding up keeps two significant figures
    (1234.5, 0.02, 6, "1234.50"),
])
def test_energy_is_written_to_the_figures_its_uncertainty_allows(value, u, sig, text):
    assert figures_allowed(value, u) == sig
    assert significant_text(value, sig) == text


# ----------------------------------------------------------------------------- report sections
def test_model_documentation_form_items_are_filled_from_the_ledger(ledger, report):
    path, exp = ledger
    md = report["model_documentation"]
    te = md["training_energy"]
    assert te["energy_mwh"] == pytest.approx(exp["facility"] / 3.6e9)
    std = report["provenance"]["uncertainty"]["standard_j"] * 1.4 / 3.6e9
    assert te["standard_uncertainty_mwh"] == pytest.approx(std)
    assert te["significant_figures"] == figures_allowed(te["energy_mwh"], std) >= 2
    assert te["energy_mwh_text"] == significant_text(te["energy_mwh"], te["significant_figures"])
    assert te["measured"] is True and te["text"].startswith(f"{te['energy_mwh_text']} MWh, measured")
    tt = md["training_time"]
    assert tt["wall_clock_s"] == 30.0 and tt["wall_clock_days"] == pytest.approx(30.0 / 86400)
    assert tt["node_days"] == pytest.approx(3 * 30.0 / 86400)       # three nodes, each record spans 30 s
    assert tt["gpu_days"] == pytest.approx(2 * 30.0 / 86400)        # g1 has two GPUs
    assert "2 x xeon-2s (32 CPUs), 1 x gpu-a100 (16 CPUs, 2 GPUs)" in tt["hardware"]
    flops = sum(2.5e12 * (i + 1) for i in range(24))
    assert md["training_computation"] == {"status": "filled", "flops": flops, "text": md["training_computation"]["text"]}
    assert md["inference_computation"]["status"] == "left to the provider"
    assert md["inference_computation"]["text"].startswith("N/A")
    meth = md["energy_methodology"]["text"]
    for needle in ("measured-rapl", "RAPL package+dram counters", "PUE 1.4", "root sum of squares",
                   report["ledger"]["head_hash"], "interval split"):
        assert needle in meth
    assert md["boundary"]["pue"] == 1.4 and "cpu_package, dram, gpu" in md["boundary"]["component"]


def test_without_a_flops_counter_the_computation_is_left_to_the_provider(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, source="modeled")
    md = build_report(path)["model_documentation"]
    assert md["training_computation"]["status"] == "left to the provider" and md["training_computation"]["flops"] is None
    assert md["training_computation"]["text"].startswith("N/A from TAO")
    assert md["training_energy"]["measured"] is False and "estimated (modeled" in md["training_energy"]["text"]


def test_a_job_report_leaves_its_hardware_days_to_the_provider(ledger):
    path, exp = ledger
    rep = build_report(path, job="job-a")
    assert validate_report(rep) == []
    tt = rep["model_documentation"]["training_time"]
    assert tt["node_days"] is None and tt["wall_clock_s"] == 14.0  # tasks 0..11 run from 0 s to 14 s
    assert "left to the provider" in tt["text"]
    assert rep["sci"]["e_boundary"].startswith("job job-a")


def test_energy_per_unit_per_run_group_and_job(ledger, report):
    path, exp = ledger
    wu = report["work_units"]
    assert wu["counted"] and wu["basis"] == "task records"
    tasks = exp["tasks"]
    tokens = sum(t.units["tokens"] for t in tasks)
    tot = {t["unit"]: t for t in wu["totals"]}
    assert tot["tokens"]["amount"] == tokens and tot["requests"]["amount"] == 24
    assert tot["tokens"]["facility_energy_j_per_unit"] == pytest.approx(exp["facility"] / tokens)
    assert tot["tokens"]["task_energy_j_per_unit"] == pytest.approx(exp["task"] / tokens)
    assert tot["requests"]["emissions_g_co2e_per_unit"] == pytest.approx(exp["facility"] / 3.6e6 * 250.0 / 24)
    std = report["provenance"]["uncertainty"]["standard_j"]
    assert tot["tokens"]["standard_uncertainty_j_per_unit"] == pytest.approx(std * 1.4 / tokens)
    for g in ("train_step", "preprocess", "evaluate"):
        mine = [t for t in tasks if t.group == g]
        row = next(r for r in wu["by_group"] if r["group"] == g and r["unit"] == "tokens")
        e, n = sum(t.energy_j for t in mine), sum(t.units["tokens"] for t in mine)
        assert row["amount"] == n and row["energy_j_per_unit"] == pytest.approx(e / n)
        assert row["facility_energy_j_per_unit"] == pytest.approx(e * 1.4 / n)
        assert row["standard_uncertainty_j_per_unit"] == pytest.approx(math.sqrt(sum((0.05 * t.energy_j) ** 2
                                                                                     for t in mine)) / n)
        assert row["emissions_g_co2e_per_unit"] == pytest.approx(e * 1.4 / 3.6e6 * 250.0 / n)
    jobs = {(r["job"], r["unit"]): r for r in wu["by_job"]}
    assert jobs[("job-b", "requests")]["energy_j_per_unit"] == pytest.approx(
        sum(t.energy_j for t in tasks if t.job == "job-b") / 12)


def test_sci_follows_the_specification(ledger, report):
    _, exp = ledger
    sci = report["sci"]
    o = exp["facility"] / 3.6e6 * 250.0
    assert sci["e_kwh"] == pytest.approx(exp["facility"] / 3.6e6) and sci["o_g_co2e"] == pytest.approx(o)
    assert sci["m_g_co2e"] == 40.0 and sci["status"] == "complete"
    row = next(r for r in sci["per_unit"] if r["unit"] == "requests")
    assert row["r"] == 24 and row["sci_g_co2e_per_unit"] == pytest.approx((o + 40.0) / 24)
    assert row["operational_g_co2e_per_unit"] == pytest.approx(o / 24)


def test_sci_without_embodied_emissions_or_intensity_says_what_is_missing(ledger):
    path, _ = ledger
    no_m = build_report(path, carbon_intensity_g_per_kwh=250.0)["sci"]
    assert no_m["m_g_co2e"] is None and no_m["m_source"].startswith("missing")
    assert all(r["sci_g_co2e_per_unit"] is None and r["operational_g_co2e_per_unit"] > 0 for r in no_m["per_unit"])
    assert no_m["status"] == "incomplete: M (embodied emissions not given)"
    nothing = build_report(path)["sci"]
    assert nothing["o_g_co2e"] is None and nothing["status"].startswith("incomplete: I (no carbon intensity)")


def test_a_report_without_counters_says_no_unit_of_work_counted(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, units=False)
    rep = build_report(path, carbon_intensity_g_per_kwh=100.0, embodied_g_co2e=1.0)
    assert validate_report(rep) == []
    wu = rep["work_units"]
    assert wu == dict(wu, counted=False, note="no unit of work counted", totals=[], by_group=[], by_job=[])
    assert rep["sci"]["per_unit"] == [] and "R (no unit of work counted)" in rep["sci"]["status"]
    assert "No unit of work counted" in render_markdown(rep)


def test_metrics_per_unit_are_the_reports_figures(ledger, report):
    from tao_core.governance.runs import parse_run, select_run, split_runs
    from tao_core.governance.verify import read_records

    path, _ = ledger
    rr = parse_run(select_run(split_runs(read_records(path)[0])))
    samples = metric_samples(rr.work, pue=1.4, carbon_intensity_g_per_kwh=250.0)
    assert {s.name for s in samples} == set(METRICS)
    by = {(s.name, s.labels["scope"], s.labels["name"], s.labels["unit"]): s.value for s in samples}
    for row in report["work_units"]["by_group"]:
        key = ("group", row["group"], row["unit"])
        assert by[("tao_energy_per_unit_joules",) + key] == pytest.approx(row["energy_j_per_unit"])
        assert by[("tao_work_units_total",) + key] == row["amount"]
        assert by[("tao_emissions_per_unit_grams",) + key] == pytest.approx(row["emissions_g_co2e_per_unit"])


# ----------------------------------------------------------------------------- checks
def _resealed(report, edit):
    forged = copy.deepcopy(report)
    edit(forged)
    return seal(forged)


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["model_documentation"]["training_energy"].update(energy_mwh_text="1.0e-06"), "training_energy"),
    (lambda r: r["model_documentation"]["training_energy"].update(energy_mwh=1e-6), "training_energy/energy_mwh"),
    (lambda r: r["work_units"]["totals"][0].update(facility_energy_j_per_unit=1e-15), "work_units/totals/0"),
    (lambda r: r["work_units"]["by_group"][0].update(energy_j_per_unit=1.0), "work_units/by_group/0"),
    (lambda r: r["sci"]["per_unit"][1].update(sci_g_co2e_per_unit=0.001), "sci/per_unit/1"),
    (lambda r: r["sci"].update(m_g_co2e=0.0), "sci/m_g_co2e"),
    (lambda r: r["work_units"].update(note="no unit of work counted"), "work_units/counted"),
])
def test_a_resealed_report_with_changed_figures_fails_validation(report, edit, field):
    problems = validate_report(_resealed(report, edit))
    assert problems and any(field in p for p in problems), problems


def test_the_new_sections_are_recomputed_from_the_ledger(ledger, report):
    path, _ = ledger
    assert check_against_ledger(report, path) == []
    forged = _resealed(report, lambda r: r["model_documentation"]["training_time"].update(hardware="1 x laptop"))
    assert validate_report(forged) == []  # no internal sum catches a changed inventory text ...
    problems = check_against_ledger(forged, path)
    assert problems and problems[0].startswith("model_documentation/training_time/hardware")  # ... the ledger does
    units = _resealed(report, lambda r: r["parameters"].update(embodied_g_co2e=4.0) or r["sci"].update(
        m_g_co2e=4.0, per_unit=[dict(x, sci_g_co2e_per_unit=(r["sci"]["o_g_co2e"] + 4.0) / x["r"])
                                for x in r["sci"]["per_unit"]]))
    assert validate_report(units) == [] and check_against_ledger(units, path) == []  # M is a parameter, rebuilt


def test_federated_reports_sum_units_and_verify(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_run(a, run_id="a", cluster_name="lab-a")
    write_run(b, run_id="b", cluster_name="lab-b", scale=2.0)
    ra = build_report(a, carbon_intensity_g_per_kwh=100.0, embodied_g_co2e=10.0)
    rb = build_report(b, carbon_intensity_g_per_kwh=100.0, embodied_g_co2e=30.0)
    ev = [MemberEvidence(ledger=a), MemberEvidence(ledger=b)]
    fed = merge_reports([ra, rb], evidence=ev)
    assert validate_report(fed) == [] and check_federated(fed, [ra, rb], ev) == []
    tok = {r["unit"]: r for r in fed["work_units"]["totals"]}["tokens"]
    assert tok["amount"] == 2 * sum(1000.0 + 100.0 * i for i in range(24))
    assert tok["facility_energy_j_per_unit"] == pytest.approx(fed["energy"]["facility_energy_j"] / tok["amount"])
    assert fed["sci"]["m_g_co2e"] == 40.0 and fed["sci"]["status"] == "complete"
    assert {r["group"] for r in fed["work_units"]["by_group"]} >= {"lab-a/train_step", "lab-b/train_step"}
    md = fed["model_documentation"]
    assert md["training_time"]["node_days"] == pytest.approx(6 * 30.0 / 86400)
    assert md["training_energy"]["energy_mwh"] == pytest.approx(fed["energy"]["facility_energy_j"] / 3.6e9)
    assert md["training_computation"]["status"] == "left to the provider"


# ----------------------------------------------------------------------------- BoAmps
def test_boamps_export_validates_against_the_boamps_schema(ledger, report):
    doc = boamps_report(report, CONTEXT)
    assert boamps_problems(doc) == []
    m = doc["measures"][0]
    assert m["powerConsumption"] == pytest.approx(report["energy"]["it_energy_j"] / 3.6e6)
    assert m["cpuTrackingMode"] == "rapl" and m["gpuTrackingMode"] == "nvml" and m["measurementDuration"] == 30.0
    assert doc["header"]["reportId"] == report["integrity"]["content_sha256"]
    assert doc["header"]["formatVersion"] == "1.1.0"
    assert doc["task"]["nbRequest"] == 24 and doc["task"]["taskStage"] == "inference"
    assert doc["environment"] == {"powerSourceCarbonIntensity": 250.0, "country": "France"}
    assert doc["quality"] == "high"  # 2 x 2 % upper bound
    assert [c["componentType"] for c in doc["infrastructure"]["components"]] == ["cpu", "cpu", "gpu"]
    assert doc["infrastructure"]["components"][2]["nbComponent"] == 2
    assert "publisher" not in doc["header"] and "system" not in doc and "software" not in doc  # not TAO's to know


def test_boamps_validation_is_real_and_the_context_is_checked(report):
    doc = boamps_report(report, CONTEXT)
    assert boamps_problems(dict(doc, quality="excellent"))
    assert boamps_problems({k: v for k, v in doc.items() if k != "measures"})
    broken = copy.deepcopy(doc)
    broken["infrastructure"]["components"][0]["nbComponent"] = "two"
    assert any("infrastructure.components.0.nbComponent" in p for p in boamps_problems(broken))
    with pytest.raises(ParameterError, match="task.taskStage.*come from context"):
        boamps_report(report, {"infrastructure": {"infraType": "onPremise"}})
    with pytest.raises(ParameterError, match="quality is 'low', but TAO fills it"):
        boamps_report(report, dict(CONTEXT, quality="low"))
    extra = copy.deepcopy(CONTEXT)
    extra["infrastructure"]["components"] = [{"componentType": "ram", "nbComponent": 4, "memorySize": 64}]
    assert boamps_report(report, extra)["infrastructure"]["components"][-1]["componentType"] == "ram"


# ----------------------------------------------------------------------------- command line, simulator end to end
def test_simulated_units_go_end_to_end_through_the_command_line(tmp_path, capsys):
    wl = tmp_path / "w.csv"
    with open(EXAMPLES / "workload_small.csv", newline="") as src:
        rows = list(csv.DictReader(src))
    led, rep, mdf, bo, ctx = (tmp_path / n for n in ("sim.jsonl", "r.json", "r-mdf.md", "b.json", "ctx.json"))
    assert main(["simulate", "--cluster", str(EXAMPLES / "cluster_small.json"), "--workload",
                 str(EXAMPLES / "workload_small.csv"), "--policy", "tao", "--ledger", str(led)]) == 0
    assert main(["report", "build", "--ledger", str(led), "--carbon-intensity", "300", "--embodied-g", "250",
                 "--out", str(rep)]) == 0
    assert main(["report", "validate", str(rep), "--ledger", str(led), "--pubkey", str(led) + ".pub"]) == 0
    r = json.loads(rep.read_text())
    want = {"records": sum(float(x["units_records"]) for x in rows if x["units_records"]),
            "samples": sum(float(x["units_samples"]) for x in rows if x["units_samples"])}
    assert {t["unit"]: t["amount"] for t in r["work_units"]["totals"]} == want  # every task completed
    assert r["work_units"]["basis"] == "group records" and r["sci"]["status"] == "complete"
    assert {(g["group"], g["unit"]) for g in r["work_units"]["by_group"]} == {("etl", "records"), ("train", "samples")}
    assert main(["report", "build", "--ledger", str(led), "--format", "mdf", "--out", str(mdf)]) == 0
    text = mdf.read_text()
    for k in ("Training time", "Amount of computation used for training", "Amount of energy used for training",
              "Energy measurement methodology", "Benchmarked amount of computation used for inference",
              "Measurement boundary", "N/A from TAO", "MWh, estimated (modeled"):
        assert k in text
    ctx.write_text(json.dumps(dict(CONTEXT, task=dict(CONTEXT["task"], taskStage="training"))))
    assert main(["report", "export", str(rep), "--format", "boamps", "--context", str(ctx), "--out", str(bo),
                 "--ledger", str(led)]) == 0
    doc = json.loads(bo.read_text())
    assert boamps_problems(doc) == [] and "nbRequest" not in doc["task"] and "quality" not in doc  # sim: no uncertainty
    capsys.readouterr()
    assert main(["report", "export", str(rep), "--format", "boamps", "--out", str(tmp_path / "x.json")]) == 2
    assert "--context" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    forged = json.loads(rep.read_text())
    forged["work_units"]["totals"][0]["amount"] *= 2
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert main(["report", "export", str(tmp_path / "forged.json"), "--format", "boamps", "--context", str(ctx),
                 "--out", str(tmp_path / "y.json")]) == 2
    assert "not a valid untampered report" in capsys.readouterr().err


def test_bad_report_parameters_are_refused_on_the_command_line(ledger, tmp_path, capsys):
    path, _ = ledger
    for value in ("-1", "nan"):
        assert main(["report", "build", "--ledger", str(path), "--embodied-g", value,
                     "--out", str(tmp_path / "r.json")]) == 2
        assert "--embodied-g" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_tasks_without_a_group_count_under_no_group():
    from tao_core.accounting.per_unit import per_unit_rows
    from tao_core.accounting.records import WorkRecord

    recs = [WorkRecord(scope="task", id="a", energy_j=10.0, source="modeled", method="m", units={"images": 2}),
            WorkRecord(scope="task", id="b", energy_j=6.0, source="modeled", method="m", job="j", units={"images": 1})]
    groups = per_unit_rows(recs, "group", pue=1.5, intensity_g_per_kwh=None)
    assert [(r["group"], r["amount"], r["energy_j_per_unit"]) for r in groups] == [("(no group)", 3.0, 16.0 / 3)]
    jobs = per_unit_rows(recs, "job", pue=1.5, intensity_g_per_kwh=None)
    assert [(r["job"], r["facility_energy_j_per_unit"]) for r in jobs] == [("j", 9.0)]
    assert groups[0]["standard_uncertainty_j_per_unit"] is None and groups[0]["emissions_g_co2e_per_unit"] is None


def test_a_bad_units_column_names_the_row_and_column(tmp_path):
    from tao_core.sim.loaders import load_workload

    bad = tmp_path / "w.csv"
    bad.write_text("id,submit_s,duration_s,cpus,gpus,units_tokens\na,0,1,1,0,12\nb,0,1,1,0,-3\n")
    with pytest.raises(InputError, match=r"row 3: units_tokens: '-3' is out of range: it must be >= 0"):
        load_workload(bad)
    bad.write_text("id,submit_s,duration_s,cpus,gpus,units_tokens\na,0,1,1,0,nan\n")
    with pytest.raises(InputError, match="row 2: units_tokens: 'nan' is not a finite number"):
        load_workload(bad)
    bad.write_text("id,submit_s,duration_s,cpus,gpus,units_Tokens\na,0,1,1,0,1\n")
    with pytest.raises(InputError, match="unknown column.*units_Tokens"):
        load_workload(bad)
    bad.write_text("id,submit_s,duration_s,cpus,gpus,units_tokens\na,0,1,1,0,\nb,0,1,1,0,5\n")
    wl = load_workload(bad)
    assert [t.units for t in wl.tasks] == [{}, {"tokens": 5.0}]


def test_records_of_the_previous_format_are_read_as_nothing_counted(tmp_path):
    from tao_core.accounting.records import WORK_KEYS_V1, WorkRecord

    rec = WorkRecord(scope="task", id="t", energy_j=3.0, source="modeled", method="m", units={"tokens": 2})
    p = rec.payload()
    old = {k: p[k] for k in WORK_KEYS_V1}
    assert WorkRecord.from_payload(old, "rec", "tao-run-records/1").units == {}
    with pytest.raises(InputError, match="missing units"):
        WorkRecord.from_payload(old, "rec")
    with pytest.raises(InputError, match="field units"):
        WorkRecord.from_payload(dict(p, units={"tokens": -1}), "rec")


def test_render_mdf_names_the_source_report(report):
    text = render_mdf(report)
    assert report["integrity"]["content_sha256"] in text and report["ledger"]["head_hash"] in text
    assert text.count("\n## ") == 6
