"""Loaders reject malformed input naming the file, row or field; the CLI exits 2 and leaves
no partial output; a good run writes JSON, plot and a verifiable ledger."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tao_core.cli.main import main
from tao_core.errors import InputError
from tao_core.sim.alibaba import load_alibaba_nodes, load_alibaba_pods
from tao_core.sim.loaders import cluster_from_dict, load_cluster, load_workload

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "examples" / "cluster_small.json"
WORKLOAD = ROOT / "examples" / "workload_small.csv"
TRACE = ROOT.parent / "shared" / "data" / "traces" / "alibaba-gpu-v2023"

GOOD_TYPE = {"name": "a", "count": 2, "cpus": 4, "power_curve_w": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_examples_load():
    cl = load_cluster(CLUSTER)
    wl = load_workload(WORKLOAD)
    assert len(cl.nodes) == 6 and cl.pue == 1.2
    assert len(wl) == 60 and all(a.submit_s <= b.submit_s for a, b in zip(wl.tasks, wl.tasks[1:]))


@pytest.mark.parametrize("patch,needle", [
    ({"power_curve_w": [1] * 10}, "node_types[0] (a).power_curve_w: expected 11"),
    ({"cpus": 0}, "node_types[0] (a).cpus"),
    ({"count": 1.5}, "node_types[0] (a).count"),
    ({"gpu_idle_w": 50, "gpu_max_w": 10}, "gpu_max_w"),
    ({"power_curve_w": [5, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]}, "must not decrease"),
    ({"colour": "red"}, "unknown field(s) colour"),
])
def test_cluster_errors_name_the_field(patch, needle):
    with pytest.raises(InputError) as e:
        cluster_from_dict({"node_types": [{**GOOD_TYPE, **patch}]}, source="c.json")
    assert needle in str(e.value) and str(e.value).startswith("c.json")


def test_cluster_bad_json_names_line(tmp_path):
    p = write(tmp_path, "c.json", '{"node_types": [\n  {"name": "a",}\n]}')
    with pytest.raises(InputError, match=r"c.json: not valid JSON .* at line 2"):
        load_cluster(p)


@pytest.mark.parametrize("row,needle", [
    ("t2,5,10,zero,0", "row 3: cpus: 'zero' is not a number"),
    ("t2,5,-1,1,0", "row 3: duration_s"),
    ("t1,5,10,1,0", "row 3: id: 't1' appears twice"),
    ("t2,5,10,1", "row 3: 4 fields, the header has 5"),
    ("t2,5,10,0,0", "row 3: cpus"),
])
def test_workload_errors_name_the_row(tmp_path, row, needle):
    p = write(tmp_path, "w.csv", f"id,submit_s,duration_s,cpus,gpus\nt1,0,10,1,0\n{row}\n")
    with pytest.raises(InputError) as e:
        load_workload(p)
    assert needle in str(e.value) and "w.csv" in str(e.value)


def test_workload_header_errors(tmp_path):
    with pytest.raises(InputError, match="missing column"):
        load_workload(write(tmp_path, "w.csv", "id,submit_s,cpus,gpus\nt1,0,1,0\n"))
    with pytest.raises(InputError, match="unknown column"):
        load_workload(write(tmp_path, "w.csv", "id,submit_s,duration_s,cpus,gpus,prio\nt1,0,1,1,0,3\n"))


def test_alibaba_loader_maps_and_rejects(tmp_path):
    nodes = write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nx0,96000,1,8,G2\nx1,32000,1,0,\n")
    cl = load_alibaba_nodes(nodes)
    g2 = cl.node_types[cl.nodes[0].node_type]
    assert g2.cpus == 96 and g2.gpus == 8 and g2.gpu_max_w == 300.0
    assert g2.power_curve.peak_w == pytest.approx(222 * 96 / 12)
    pods = write(tmp_path, "p.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                 "deletion_time,scheduled_time\np0,12000,1,1,460,,LS,Running,0,100,10\n"
                 "p1,4000,1,0,0,,BE,Pending,5,50,\np2,4000,1,2,1000,,BE,Failed,7,,8\n")
    wl = load_alibaba_pods(pods)
    d = {t.task_id: t for t in wl.tasks}
    assert d["p0"].duration_s == 90 and d["p0"].gpus == pytest.approx(0.46) and d["p0"].cpus == 12
    assert d["p1"].duration_s == 45  # never scheduled: deletion - creation
    assert d["p2"].duration_s == 100 - 8 and d["p2"].gpus == 2  # no deletion time: to the trace's end
    bad = write(tmp_path, "b.csv", "sn,cpu_milli,memory_mib,gpu,model\nx0,96000,1,8,H999\n")
    with pytest.raises(InputError, match=r"b.csv: row 2: model: 'H999'"):
        load_alibaba_nodes(bad)
    badp = write(tmp_path, "bp.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                 "deletion_time,scheduled_time\np0,12000,1,1,460,,LS,Running,50,10,50\n")
    with pytest.raises(InputError, match=r"bp.csv: row 2: deletion_time"):
        load_alibaba_pods(badp)


def test_alibaba_real_trace_loads():
    if not (TRACE / "openb_pod_list_default.csv").exists():
        pytest.skip("Alibaba v2023 trace not present beside the repository")
    cl = load_alibaba_nodes(TRACE / "openb_node_list_all_node.csv")
    wl = load_alibaba_pods(TRACE / "openb_pod_list_default.csv")
    assert len(cl.nodes) == 1523 and len(wl) == 8152


def test_cli_bad_input_exit_2_and_no_files(tmp_path, capsys):
    bad = write(tmp_path, "w.csv", "id,submit_s,duration_s,cpus,gpus\nt1,0,10,1,0\nt2,x,10,1,0\n")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["simulate", "--cluster", str(CLUSTER), "--workload", str(bad), "--json", str(out / "r.json"),
               "--plot", str(out / "r.png"), "--ledger", str(out / "l.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 3: submit_s" in err[0]
    assert list(out.iterdir()) == []
    # a task bigger than every node type
    big = write(tmp_path, "big.csv", "id,submit_s,duration_s,cpus,gpus\nt1,0,10,64,0\n")
    assert main(["simulate", "--cluster", str(CLUSTER), "--workload", str(big), "--json", str(out / "r.json")]) == 2
    assert list(out.iterdir()) == []


def test_cli_writes_json_plot_and_ledger(tmp_path, capsys):
    out = tmp_path
    rc = main(["simulate", "--cluster", str(CLUSTER), "--workload", str(WORKLOAD), "--policy", "pack",
               "--policy", "ray-default-autoscale", "--json", str(out / "r.json"), "--plot", str(out / "r.png"),
               "--ledger", str(out / "l.jsonl")])
    assert rc == 0
    doc = json.loads((out / "r.json").read_text())
    assert set(doc["policies"]) == {"pack", "ray-default-autoscale"}
    for m in doc["policies"].values():
        for key in ("energy_j", "it_energy_j", "dynamic_energy_j", "idle_energy_j", "boot_energy_j", "makespan_s",
                    "wait_mean_s", "wait_p95_s", "peak_power_w", "budget_violation_s", "overhead_share",
                    "tasks_completed", "bound_ratio", "inverted"):
            assert key in m
        assert m["energy_j"] >= doc["lower_bound_j"]
    assert (out / "r.png").read_bytes()[:4] == b"\x89PNG"
    kinds = [json.loads(line).get("kind") for line in (out / "l.jsonl").read_text().splitlines()]
    assert kinds.count("config") == 2 and kinds.count("summary") == 2 and "decision" in kinds and "energy" in kinds
    assert main(["audit", "verify", str(out / "l.jsonl")]) == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("patch,needle", [
    ({"count": 1e9}, "count: 1000000000.0 is out of range: it must be >= 0 and <= 100000"),
    ({"count": 10 ** 400}, "count: " ),
    ({"cpus": 1e308}, "cpus: 1e+308 is out of range"),
    ({"cpus": 1e-300}, "cpus: 1e-300 is out of range: it must be >= 0.001"),
    ({"speed": 1e-300}, "speed: 1e-300 is out of range: it must be >= 0.001"),
    ({"power_curve_w": [10] * 10 + [1e7]}, "power_curve_w[10]: 10000000.0 is out of range"),
    ({"boot_s": -1}, "boot_s: -1 is out of range"),
    ({"name": "a\nb"}, "name: 'a\\nb' holds control characters"),
    ({"speed": "fast"}, "speed: 'fast' is not a number"),
    ({"gpus": 2000}, "gpus: 2000 is out of range"),
])
def test_cluster_values_out_of_range_name_the_field_and_limit(patch, needle):
    with pytest.raises(InputError) as e:
        cluster_from_dict({"node_types": [{**GOOD_TYPE, **patch}]}, source="c.json")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cluster_node_total_is_bounded():
    types = [{**GOOD_TYPE, "name": f"t{i}", "count": 60_000} for i in range(2)]
    with pytest.raises(InputError, match=r"would have 120,000 nodes, more than the 100,000 accepted"):
        cluster_from_dict({"node_types": types}, source="c.json")
    with pytest.raises(InputError, match="more than the 1,000 accepted"):
        cluster_from_dict({"node_types": [{**GOOD_TYPE, "name": f"t{i}"} for i in range(1001)]}, source="c.json")


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    (b'{"pue": NaN, "node_types": []}', "not a JSON number"),
    (b'{"pue": 1e400, "node_types": []}', "pue: inf is not a finite number"),
])
def test_cluster_file_encodings_depth_and_constants(tmp_path, content, needle):
    p = tmp_path / "c.json"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_cluster(p, field="--cluster")
    assert needle in str(e.value) and str(e.value).startswith(f"--cluster {p}")


@pytest.mark.parametrize("row,needle", [
    ("t2,5,10,1," + "9" * 140_000, "row 3: malformed CSV (a field is longer than 131072 characters"),
    ("t2,nan,10,1,0", "row 3: submit_s: 'nan' is not a finite number"),
    ("t2,5,1e400,1,0", "row 3: duration_s: '1e400' is not a finite number"),
    ("t2,5,1e12,1,0", "row 3: duration_s: '1e12' is out of range"),
    ("t2,1e11,10,1,0", "row 3: submit_s: '1e11' is out of range"),
    ("t2,5,10,inf,0", "row 3: cpus: 'inf' is not a finite number"),
    ('"t\x012",5,10,1,0', "row 3: id: 't\\x012' holds control characters"),
    ('t2,5,10,1,"0', "row 3: malformed CSV"),
])
def test_workload_hostile_rows_name_the_row_and_field(tmp_path, row, needle):
    p = write(tmp_path, "w.csv", f"id,submit_s,duration_s,cpus,gpus\nt1,0,10,1,0\n{row}\n")
    with pytest.raises(InputError) as e:
        load_workload(p, field="--workload")
    assert needle in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 400


def test_workload_not_utf8_and_task_limit(tmp_path, monkeypatch):
    from tao_core.sim import loaders

    p = tmp_path / "w.csv"
    p.write_bytes(b"id,submit_s,duration_s,cpus,gpus\nt\xff,0,10,1,0\n")
    with pytest.raises(InputError, match="not UTF-8 text .* save it as UTF-8"):
        load_workload(p)
    monkeypatch.setattr(loaders, "MAX_TASKS", 3)
    rows = "".join(f"t{i},0,1,1,0\n" for i in range(4))
    with pytest.raises(InputError, match=r"more than 3 tasks \(the limit, which keeps memory bounded\)"):
        load_workload(write(tmp_path, "many.csv", "id,submit_s,duration_s,cpus,gpus\n" + rows))


def test_alibaba_hostile_rows(tmp_path):
    nodes = write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nx0,96000,1,8,G2\nx0,1000,1,0,\n")
    with pytest.raises(InputError, match=r"n.csv: row 3: sn: 'x0' appears twice"):
        load_alibaba_nodes(nodes, field="--nodes")
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nx0,1e400,1,8,G2\n")
    with pytest.raises(InputError, match=r"^--nodes .*row 2: cpu_milli: '1e400' is not a finite number"):
        load_alibaba_nodes(nodes, field="--nodes")
    pods = write(tmp_path, "p.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                 "deletion_time,scheduled_time\np0,12000,1,1,460,,LS,Running,0,nan,10\n")
    with pytest.raises(InputError, match=r"row 2: deletion_time: 'nan' is not a finite number"):
        load_alibaba_pods(pods)


def test_a_node_that_draws_less_on_than_off_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"off_w: 10 W is not below the idle draw, 0 W"):
        cluster_from_dict({"node_types": [{**GOOD_TYPE, "power_curve_w": [0] + [10] * 10, "off_w": 10}]},
                          source="c.json")
    nodes = write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nx0,1000,1,0,\n")
    with pytest.raises(InputError, match=r"row 2: cpu_milli: a node of 1 CPUs would draw 4.87 W idle"):
        load_alibaba_nodes(nodes)


def test_a_task_longer_than_the_limit_on_the_slowest_type_is_refused(tmp_path):
    from tao_core.sim.loaders import check_fits

    cl = cluster_from_dict({"node_types": [{**GOOD_TYPE, "speed": 0.001}]}, source="c.json")
    wl = load_workload(write(tmp_path, "w.csv", "id,submit_s,duration_s,cpus,gpus\nt1,0,1e7,1,0\n"))
    with pytest.raises(InputError, match=r"task 't1' would run 1e\+10 s on node type 'a' \(speed 0.001\), more than"):
        check_fits(cl, wl)
