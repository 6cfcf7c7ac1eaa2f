"""TAO on Ray in two minutes: the same paced workload on a heterogeneous local Ray cluster,
first with Ray's default scheduling, then with TAO, a printed comparison (modeled energy,
makespan, where tasks ran, task work per request each task counted with ``tao.count``) and
TAO's energy report.

The cluster (``ray.cluster_utils.Cluster`` on this machine): one efficient node (4 CPUs,
SPECpower curve of an IBM x3250 Xeon X3470: 41.6 W idle, 113 W busy) and two old ones (2 CPUs
each, HP ProLiant ML110 G3 Pentium D 930: 105 W idle, 169 W busy); curves from
``tao_core/data/specpower_servers.csv`` (SPECpower_ssj2008 results as shipped in CloudSim).
Energy is modeled from each node's curve at the CPU use of its own processes. With TAO, a
node the controller powers off is removed from the cluster and counted at 0 W from then on;
with Ray's default every node stays on.

    python examples/ray_energy_aware.py [--report OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import tao_ray  # noqa: E402
from ray_cluster import compare  # noqa: E402

NODES = [("eff", 4), ("old", 2), ("old", 2)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default=str(ROOT / "benchmarks" / "results" / "ray_demo_report.json"))
    ap.add_argument("--tasks", type=int, default=40)
    a = ap.parse_args(argv)
    types = [tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=4),
             tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)]
    print("Ray: the same workload with Ray's default scheduling and with TAO (energy is modeled)")
    res = compare(NODES, types, tasks=a.tasks, interval_s=0.2, work_s=0.5, variants=("default", "tao"),
                  report_path=a.report, log=lambda s: print("  " + s))
    d, t = res["default"], res["tao"]
    print(f"\n{'':<10}{'energy (J)':>12}{'makespan (s)':>14}   tasks by node type")
    for name, r in (("default", d), ("TAO", t)):
        print(f"{name:<10}{r['energy_j']:>12.1f}{r['makespan_s']:>14.2f}   {r['tasks_by_node_type']}")
    print(f"task work per request (tao.count): default {d['energy_j_per_request']:.2f} J, "
          f"TAO {t['energy_j_per_request']:.2f} J")
    print(f"\nTAO used {100 * (1 - t['energy_j'] / d['energy_j']):.1f} % less modeled energy, makespan "
          f"{t['makespan_s'] / d['makespan_s']:.2f}x; it powered off {t['nodes_powered_off']} idle node(s).")
    rep = json.loads(Path(a.report).read_text())
    e = rep.get("energy", {})
    print(f"Energy report: {a.report} (IT energy {e.get('it_energy_j', float('nan')):.1f} J, "
          f"idle {e.get('idle_energy_j', float('nan')):.1f} J, source modeled)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
