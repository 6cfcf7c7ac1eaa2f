"""Attribution of node energy to tasks and idle: worked cases and conservation."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_core.attribution import TaskSpan, attribute
from tao_core.errors import InputError
from tao_core.telemetry.base import DomainReading, Reading, SourceKind


def timeline(points, source=SourceKind.MEASURED_RAPL, unc=0.0):
    """Readings from (t_s, cumulative joules) pairs, one top-level domain plus a child
    domain that must not be counted twice."""
    out = []
    for t, e in points:
        out.append(
            Reading(
                t_s=t,
                domains={
                    "package-0": DomainReading("package-0", e, source, "test", uncertainty=unc),
                    "core-0": DomainReading("core-0", e * 0.5, source, "test", parent="package-0"),
                },
            )
        )
    return out


def test_single_task_all_dynamic_without_idle():
    tl = {"n1": timeline([(0, 0), (1, 100), (2, 200)])}
    a = attribute(tl, [TaskSpan("a", "n1", 0, 2)])
    row = a.tasks.set_index("task_id").loc["a"]
    assert row.energy_j == pytest.approx(200.0)
    assert row.source == "measured-rapl"
    assert a.nodes.iloc[0].idle_j == pytest.approx(0.0)
    a.check_conservation()


def test_static_split_by_capacity_and_dynamic_by_cpu_share():
    # 10 s at 100 W read; idle 40 W; node has 4 CPUs; task a 1 CPU, task b 3 CPUs, whole interval
    tl = {"n1": timeline([(0, 0), (10, 1000)])}
    spans = [TaskSpan("a", "n1", 0, 10, cpus=1), TaskSpan("b", "n1", 0, 10, cpus=3)]
    a = attribute(tl, spans, idle_w={"n1": 40}, node_cpus={"n1": 4})
    t = a.tasks.set_index("task_id")
    # static 400 J: a 1/4, b 3/4 ; dynamic 600 J: a 1/4, b 3/4
    assert t.loc["a", "static_j"] == pytest.approx(100)
    assert t.loc["b", "static_j"] == pytest.approx(300)
    assert t.loc["a", "dynamic_j"] == pytest.approx(150)
    assert t.loc["b", "dynamic_j"] == pytest.approx(450)
    assert a.nodes.iloc[0].idle_j == pytest.approx(0)
    a.check_conservation()


def test_unused_capacity_goes_to_idle_and_cpu_s_drives_dynamic():
    tl = {"n1": timeline([(0, 0), (10, 1000)])}
    # a used 9 CPU-s, b 1 CPU-s, each reserved 1 of 4 CPUs
    spans = [TaskSpan("a", "n1", 0, 10, cpu_s=9.0), TaskSpan("b", "n1", 0, 10, cpu_s=1.0)]
    a = attribute(tl, spans, idle_w={"n1": 40}, node_cpus={"n1": 4})
    t = a.tasks.set_index("task_id")
    assert t.loc["a", "dynamic_j"] == pytest.approx(540)
    assert t.loc["b", "dynamic_j"] == pytest.approx(60)
    assert t.loc["a", "static_j"] == pytest.approx(100)
    assert a.nodes.iloc[0].idle_j == pytest.approx(200)
    a.check_conservation()


def test_partial_overlap_and_empty_interval_is_idle():
    tl = {"n1": timeline([(0, 0), (1, 50), (2, 150), (3, 200)])}
    a = attribute(tl, [TaskSpan("a", "n1", 1.5, 2.0, group="g", job="j")], idle_w={"n1": 50}, node_cpus={"n1": 1})
    t = a.tasks.iloc[0]
    # interval [1,2]: 100 J, static 50 (a gets half: 25), dynamic 50 all to a
    assert t.energy_j == pytest.approx(75)
    assert a.nodes.iloc[0].idle_j == pytest.approx(125)
    assert a.groups.iloc[0].energy_j == pytest.approx(75)
    assert a.jobs.iloc[0].job == "j"
    a.check_conservation()


def test_static_capped_at_interval_energy():
    tl = {"n1": timeline([(0, 0), (10, 100)])}  # 10 W read but idle_w says 40 W
    a = attribute(tl, [TaskSpan("a", "n1", 0, 10)], idle_w={"n1": 40}, node_cpus={"n1": 2})
    t = a.tasks.iloc[0]
    assert t.dynamic_j == pytest.approx(0)
    assert t.static_j == pytest.approx(50)
    a.check_conservation()


def test_node_without_timeline_gets_nan_labelled_none():
    a = attribute({}, [TaskSpan("a", "nX", 0, 1)])
    row = a.tasks.iloc[0]
    assert math.isnan(row.energy_j) and row.source == "none"


def test_bad_spans_are_input_errors():
    with pytest.raises(InputError, match="end_s"):
        TaskSpan("a", "n", 2, 1)
    with pytest.raises(InputError, match="twice"):
        attribute({}, [TaskSpan("a", "n", 0, 1), TaskSpan("a", "n", 0, 1)])
    with pytest.raises(InputError, match="time order"):
        attribute({"n": timeline([(1, 0), (0, 1)])}, [])


spans_st = st.lists(
    st.tuples(
        st.sampled_from(["n1", "n2"]),
        st.floats(0, 20, allow_nan=False),
        st.floats(0, 10, allow_nan=False),
        st.floats(0, 4, allow_nan=False),
        st.one_of(st.none(), st.floats(0, 40, allow_nan=False)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    spans=spans_st,
    steps=st.lists(st.tuples(st.floats(0.01, 3), st.floats(0, 500)), min_size=1, max_size=15),
    idle=st.floats(0, 200),
    cpus=st.one_of(st.none(), st.floats(0.5, 8)),
)
def test_conservation_property(spans, steps, idle, cpus):
    pts, t, e = [(0.0, 0.0)], 0.0, 0.0
    for dt, de in steps:
        t += dt
        e += de
        pts.append((t, e))
    tl = {"n1": timeline(pts), "n2": timeline([(p[0], p[1] * 0.3) for p in pts], source=SourceKind.MODELED)}
    ts = [TaskSpan(f"t{i}", n, s, s + d, cpus=c, cpu_s=cs) for i, (n, s, d, c, cs) in enumerate(spans)]
    a = attribute(tl, ts, idle_w={"n1": idle, "n2": idle / 2}, node_cpus=None if cpus is None else {"n1": cpus, "n2": cpus})
    a.check_conservation()
    assert (a.tasks["energy_j"] >= -1e-9).all()
    assert (a.nodes["idle_j"] >= -1e-6).all()
    assert a.nodes["total_j"].sum() == pytest.approx(e * 1.3, rel=1e-9, abs=1e-6)
    comp = a.tasks[["cpu_package_j", "dram_j", "gpu_j", "other_j"]].sum(axis=1)
    assert ((comp - a.tasks["energy_j"]).abs() < 1e-6).all()


def test_empty_timeline_is_treated_as_missing():
    a = attribute({"n1": []}, [TaskSpan("a", "n1", 0, 1)])
    assert math.isnan(a.tasks.iloc[0].energy_j) and a.nodes.empty


def test_components_follow_the_domains():
    def r(t, pkg, dram, gpu):
        return Reading(t, {
            "package-0": DomainReading("package-0", pkg, SourceKind.MEASURED_RAPL, "x"),
            "core-0": DomainReading("core-0", pkg / 2, SourceKind.MEASURED_RAPL, "x", parent="package-0"),
            "dram-0": DomainReading("dram-0", dram, SourceKind.MEASURED_RAPL, "x"),
            "gpu-0": DomainReading("gpu-0", gpu, SourceKind.MEASURED_NVML, "y"),
        })
    tl = {"n1": [r(0, 0, 0, 0), r(10, 600, 200, 200)]}
    a = attribute(tl, [TaskSpan("a", "n1", 0, 10, cpus=2)], idle_w={"n1": 50}, node_cpus={"n1": 4})
    t = a.tasks.iloc[0]
    # task gets 500 dynamic + 250 static = 750 of 1000 J, split 60/20/20
    assert t.energy_j == pytest.approx(750)
    assert (t.cpu_package_j, t.dram_j, t.gpu_j, t.other_j) == pytest.approx((450, 150, 150, 0))
    n = a.nodes.iloc[0]
    assert (n.cpu_package_j, n.dram_j, n.gpu_j) == pytest.approx((600, 200, 200))
    assert n.source == "measured-nvml+measured-rapl"
    assert a.groups.iloc[0].gpu_j == pytest.approx(150)
