"""Carbon in the simulator: emissions per policy, deferrable tasks moved to clean hours
without missing a deadline, and `tao simulate --carbon`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_core.carbon import ConstantCarbon, SeriesCarbon
from tao_core.control.types import NodeType
from tao_core.power.curve import PowerCurve
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, SimNode, SimTask, Workload
from tao_core.sim.runner import build_policy, run_policy

NT = NodeType("n", cpus=8, power_curve=PowerCurve((50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150)), boot_s=30.0)
CLEAN_AT_6H = SeriesCarbon([0, 6 * 3600, 9 * 3600], [500, 100, 500])


def cluster(nodes: int = 4) -> ClusterSpec:
    return ClusterSpec(node_types={"n": NT}, nodes=[SimNode(f"n{k}", "n") for k in range(nodes)], pue=1.0)


def run(wl: Workload, carbon, policy: str = "tao", nodes: int = 4):
    cl = cluster(nodes)
    setup = build_policy(policy, cl, carbon=carbon)
    res = run_policy(setup, cl, wl)
    return res, summarize(res, cl, wl, lower_bound_j(cl, wl), carbon=carbon)


def test_emissions_match_hand_computation() -> None:
    # one node, static policy: 50 W idle for the whole run; one task of 1 CPU for 3600 s at t=0
    wl = Workload([SimTask("a", 0.0, 3600.0, cpus=8.0)])
    res, m = run(wl, ConstantCarbon(400), policy="ray-default", nodes=1)
    # 150 W for 3600 s = 0.15 kWh at 400 g/kWh = 60 g
    assert m["emissions_kg_co2e"] == pytest.approx(0.060, rel=1e-9)
    assert m["carbon_source"].startswith("constant")


def test_deferrable_tasks_wait_for_clean_hours_and_keep_deadlines() -> None:
    # warm-up tasks teach the controller the group's run time; then deferrable tasks arrive
    tasks = [SimTask(f"w{k}", float(k), 600.0, cpus=1.0, group="batch") for k in range(3)]
    tasks += [SimTask(f"d{k}", 1000.0 + k, 600.0, cpus=1.0, group="batch", deadline_s=12 * 3600.0) for k in range(5)]
    res, m = run(Workload(tasks), CLEAN_AT_6H)
    start = np.frombuffer(res.start_s)
    assert all(6 * 3600 <= s < 9 * 3600 for s in start[3:])  # moved into the clean window
    assert m["deadlines_missed"] == 0 and m["tasks_completed"] == 8
    # the same controller without the signal, priced with it afterwards, emits more
    cl, wl = cluster(), Workload(tasks)
    plain = run_policy(build_policy("tao", cl), cl, wl)
    m_plain = summarize(plain, cl, wl, carbon=CLEAN_AT_6H)
    assert m_plain["tasks_completed"] == 8
    assert m["emissions_kg_co2e"] < m_plain["emissions_kg_co2e"]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20000), st.floats(60, 3000), st.floats(0.5, 6.0)), min_size=1, max_size=25),
       st.integers(0, 2**31 - 1))
def test_deadlines_never_missed_with_room(specs, seed) -> None:
    """Deadlines leave room for the run (twice its length plus boot and slack): however the
    signal moves, a shifted task still finishes in time on a cluster with spare room."""
    rng = np.random.default_rng(seed)
    sig = SeriesCarbon(np.arange(48) * 1800.0, rng.uniform(50, 600, 48))
    tasks = [SimTask(f"w{k}", float(k), 300.0, cpus=1.0, group="g") for k in range(3)]
    for k, (sub, dur, room_h) in enumerate(sorted(specs)):
        dur = min(dur, 300.0)  # never longer than what the group has shown: the deadline promise holds
        tasks.append(SimTask(f"t{k}", 400.0 + sub, dur, cpus=1.0, group="g",
                             deadline_s=400.0 + sub + 2 * 300 + 120 + room_h * 3600))
    res, m = run(Workload(sorted(tasks, key=lambda t: t.submit_s)), sig, nodes=8)
    assert m["deadlines_missed"] == 0
    assert m["tasks_completed"] == len(tasks)


def test_cli_carbon_csv_and_bad_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    csv = tmp_path / "ci.csv"
    csv.write_text("t_s,g_co2e_per_kwh\n0,300\n600,120\n")
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "tao_core.cli.main", "simulate", "--cluster", str(root / "examples/cluster_small.json"),
           "--workload", str(root / "examples/workload_small.csv"), "--policy", "tao", "--policy", "pack",
           "--carbon", str(csv), "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["policies"]["tao"]["emissions_kg_co2e"] > 0 and "emissions" in r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,g_co2e_per_kwh\n0,x\n")
    out2 = tmp_path / "r2.json"
    r = subprocess.run(cmd[:-4] + ["--carbon", str(bad), "--json", str(out2)], capture_output=True, text=True)
    assert r.returncode == 2 and "row 2" in r.stderr and not out2.exists()
