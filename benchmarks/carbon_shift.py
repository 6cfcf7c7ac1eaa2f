"""Carbon-aware time shifting in the simulator: emissions, energy and deadlines per policy.

Scenario (seeded, modeled): 8 two-socket Xeon X5675 servers (SPECpower curve from
``tao_core/data/specpower_servers.csv``, boot 120 s, 10 W off) over 48 hours. Batch tasks of
4 CPUs arrive as a Poisson process (one every 6 minutes on average) and run 20-90 minutes.
``--deferrable`` of them (default 60 %) carry a deadline of submit + 12 hours; the others have
none and are never shifted.

Carbon signal: a SYNTHETIC diurnal profile in gCO2e/kWh, hourly steps, shaped like a grid with
a large solar share: 450 at night, falling from 07:00 to 150 at 12:00-14:00 and rising back
to 450 by 19:00. It stands for a real forecast (give one with ``--carbon CSV``: columns t_s or
timestamp, g_co2e_per_kwh). The same signal prices every policy's facility power.

Compared: ``tao`` with the signal (moves deferrable tasks to the cleanest start that keeps
their deadline), ``tao`` without it, and Ray's default with its autoscaler. Reported:
emissions, energy, p95 wait, deadlines missed. Goal of the shifting: fewer emissions with no
deadline missed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tao_core.carbon import SeriesCarbon
from tao_core.control.types import NodeType
from tao_core.power.curve import PowerCurve
from tao_core.sim.metrics import lower_bound_j, summarize
from tao_core.sim.model import ClusterSpec, SimNode, SimTask, Workload
from tao_core.sim.runner import build_policy, run_policy
from results_file import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
X5675_W = (58.4, 98, 109, 118, 128, 140, 153, 170, 189, 205, 222)  # SPECpower_ssj2008, IBM x3550 X5675


def diurnal_signal(days: int = 3) -> SeriesCarbon:
    """The synthetic hourly profile described in the module docstring."""
    day = [450] * 7 + [400, 330, 260, 200, 160, 150, 150, 160, 200, 270, 340, 400] + [450] * 5
    vals = day * days
    return SeriesCarbon(np.arange(len(vals)) * 3600.0, vals, source="synthetic diurnal profile (solar-heavy grid)")


def workload(seed: int, hours: float, deferrable: float) -> Workload:
    rng = np.random.default_rng(seed)
    t, tasks, i = 0.0, [], 0
    while True:
        t += rng.exponential(360.0)
        if t > hours * 3600:
            break
        dur = float(rng.uniform(20, 90) * 60)
        deadline = t + 12 * 3600 if rng.random() < deferrable else None
        tasks.append(SimTask(task_id=f"b{i}", submit_s=t, duration_s=dur, cpus=4.0, gpus=0.0,
                             group="batch" if deadline is not None else "interactive", deadline_s=deadline))
        i += 1
    return Workload(tasks)


def cluster() -> ClusterSpec:
    nt = NodeType("x5675", cpus=12, power_curve=PowerCurve(X5675_W), boot_s=120.0, off_w=10.0)
    return ClusterSpec(pue=1.2, power_budget_w=None, node_types={"x5675": nt},
                       nodes=[SimNode(f"x5675-{k}", "x5675") for k in range(8)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(HERE / "results" / "carbon_shift.json"))
    ap.add_argument("--carbon", help="carbon CSV to use instead of the synthetic profile")
    ap.add_argument("--deferrable", type=float, default=0.6, help="share of tasks with a 12 h deadline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    signal = SeriesCarbon.from_csv(args.carbon) if args.carbon else diurnal_signal()
    cl, wl = cluster(), workload(args.seed, 48.0, args.deferrable)
    bound = lower_bound_j(cl, wl)
    runs = {"tao+carbon": ("tao", signal), "tao": ("tao", None), "ray-default-autoscale": ("ray-default-autoscale", None)}
    out = {"scenario": "carbon-shift", "tasks": len(wl), "carbon_source": signal.source, "source": "modeled",
           "lower_bound_j": bound, "policies": {}}
    for label, (policy, sig) in runs.items():
        setup = build_policy(policy, cl, seed=args.seed, carbon=sig)
        res = run_policy(setup, cl, wl)
        out["policies"][label] = summarize(res, cl, wl, bound, carbon=signal)
    base = out["policies"]["tao"]["emissions_kg_co2e"]
    print(f"{'policy':<24}{'kg CO2e':>9}{'vs tao':>8}{'kWh':>9}{'p95 wait s':>11}{'deadlines missed':>18}")
    for label, m in out["policies"].items():
        print(f"{label:<24}{m['emissions_kg_co2e']:>9.2f}{100 * (m['emissions_kg_co2e'] / base - 1):>7.1f}%"
              f"{m['energy_j'] / 3.6e6:>9.2f}{m['wait_p95_s']:>11.0f}"
              f"{m.get('deadlines_missed', 0):>12}/{m.get('deadlines_total', 0)}")
    print(f"carbon: {signal.source}; energy modeled from SPECpower curves; {len(wl)} tasks over 48 h")
    write_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
