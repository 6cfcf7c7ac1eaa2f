"""One small workload through the simulator and through tao_dask on a LocalCluster (worker
processes, nothing mocked), with the same controller configuration and admission queue:

- without a power budget, two waves of two tasks: both put every task on the same node type;
- under a power budget that lets one task run at a time: both place the first task on the
  same node and defer the second for power headroom (later decisions of the live run also
  follow telemetry, which the simulator has exactly);
- both keep the books alike: each node's energy is its task work + idle (+ boot + off), and
  the task records add up to the task work.

Figures here are MODELED from the SPECpower curves."""
from __future__ import annotations

import logging
import time

import pytest

distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

import tao_dask  # noqa: E402
from tao_core.power.catalog import specpower_node_type  # noqa: E402
from tao_core.sim.model import ClusterSpec, SimTask, Workload, make_nodes  # noqa: E402
from tao_core.sim.output import attributed_energy  # noqa: E402
from tao_core.sim.runner import build_policy, run_policy  # noqa: E402
from tao_dask.reporting import fetch  # noqa: E402

pytestmark = pytest.mark.timeout(240)

EFFICIENT = "IbmX3250XeonX3470"  # 41.6 W idle .. 113 W peak
WASTEFUL = "HpProLiantMl110G3PentiumD930"  # 105 W idle .. 169 W peak
RUN_S = 0.3
TYPES = {t: specpower_node_type(t, cpus=1) for t in (EFFICIENT, WASTEFUL)}
#: both nodes idle plus one of them busy, never both (IT watts)
BUDGET_W = sum(t.idle_w for t in TYPES.values()) + max(t.peak_w - t.idle_w for t in TYPES.values()) + 2.0


def busy(x, seconds=RUN_S):
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass
    return x


def _simulated(submits, budget_w):
    cl = ClusterSpec(node_types=TYPES, nodes=make_nodes([(EFFICIENT, 1), (WASTEFUL, 1)]), power_budget_w=budget_w)
    wl = Workload(tasks=[SimTask(f"t{i}", s, RUN_S, 1.0, 0.0, "busy") for i, s in enumerate(submits)], source="test")
    events = []
    res = run_policy(build_policy("tao", cl, event_sink=events.append), cl, wl)
    task_j, parts = attributed_energy(res, cl, wl)
    for ne in res.nodes:  # the simulator's books: node energy = task work + idle + boot + off
        assert parts[ne.node_id].total_j == pytest.approx(ne.it_j, rel=1e-9)
    assert sum(task_j) == pytest.approx(sum(p.tasks_j for p in parts.values()), rel=1e-9)
    ids = [t.task_id for t in wl.tasks]
    return {"on": [cl.nodes[int(n)].node_type for n in res.node_of_task], "first": _first(events, ids, cl.nodes),
            "parts": parts}


def _first(events, ids, nodes=None):
    """(kind, node type) of the first decision about each task."""
    type_of = (lambda n: n) if nodes is None else {n.node_id: n.node_type for n in nodes}.get
    out = {}
    for e in events:
        e = e if isinstance(e, dict) else e.to_dict()
        if e["kind"] in ("place", "defer") and e["subject"] in ids and e["subject"] not in out:
            out[e["subject"]] = (e["kind"], type_of(e["node_id"]) if e["node_id"] else None)
    return [out.get(t) for t in ids]


def _live(waves, budget_w, tmp_path):
    """Run ``waves`` (tasks per wave, each after the last finished) on a 2-worker cluster."""
    cfg = {} if budget_w is None else {"power_budget_w": budget_w}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cl, Client(cl) as c:
        tao_dask.register(c, workers={"0": EFFICIENT, "1": WASTEFUL}, config=cfg)
        end = time.time() + 30
        while time.time() < end and sum(len(t["t_s"]) >= 2 for t in fetch(c)["timelines"].values()) < 2:
            time.sleep(0.1)
        futs = []
        for n in waves:
            wave = c.map(busy, range(n), pure=False)
            assert c.gather(wave) == list(range(n))
            futs += wave
        time.sleep(0.8)  # a sample after the last task
        df = tao_dask.report(c, str(tmp_path / f"r{budget_w}.json"))
        data = fetch(c)
    type_of = {n["address"]: n["node_type"] for n in data["nodes"]}
    ids = [f"{f.key}#1" for f in futs]
    places = {e["subject"]: type_of[e["node_id"]] for e in data["decisions"] if e["kind"] == "place"}
    first = [(k, type_of.get(n) if n else None) for k, n in _first(data["decisions"], ids)]
    # the live books: node energy = task work + idle, the task records add up to the task work
    nodes = df.attrs["nodes"]
    for r in nodes.itertuples(index=False):
        assert r.tasks_j + r.idle_j == pytest.approx(r.total_j, rel=1e-9, abs=1e-6)
    assert df["energy_j"].sum() == pytest.approx(nodes["tasks_j"].sum(), rel=1e-9)
    assert df.attrs["report"]["energy"]["task_energy_j"] == pytest.approx(nodes["tasks_j"].sum(), rel=1e-6)
    mine = df[df["task_id"].isin(ids)]
    assert len(mine) == len(ids) and (mine["energy_j"] > 0).all()
    return {"on": [places.get(t) for t in ids], "first": first, "ran_on": [type_of[n] for n in mine["node_id"]]}


def test_without_a_budget_both_put_every_task_on_the_same_node_type(tmp_path):
    sim = _simulated([0.0, 0.0, 1.0, 1.0], None)
    live = _live([2, 2], None, tmp_path)
    assert sim["on"] == [EFFICIENT, WASTEFUL, EFFICIENT, WASTEFUL]
    assert sorted(live["on"][:2]) == sorted(sim["on"][:2]) and sorted(live["on"][2:]) == sorted(sim["on"][2:])
    assert live["first"][0] == sim["first"][0] == ("place", EFFICIENT), "the first task of a wave: the efficient node"


def test_under_a_budget_both_place_the_first_task_alike_and_defer_the_second(tmp_path):
    sim = _simulated([0.0, 0.0], BUDGET_W)
    live = _live([2], BUDGET_W, tmp_path)
    assert sim["first"] == [("place", WASTEFUL), ("defer", None)], "the lower marginal watts; no headroom for two"
    assert live["first"] == sim["first"]
    assert sim["on"] == [WASTEFUL, WASTEFUL]
    assert sim["parts"][f"{WASTEFUL}-0"].tasks_j > 0 and sim["parts"][f"{EFFICIENT}-0"].tasks_j == 0.0
