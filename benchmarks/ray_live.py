"""Energy and makespan of one paced workload on a heterogeneous local Ray cluster, with Ray's
default scheduling and with TAO. Goal: TAO >= 40 % less modeled energy at makespan <= 1.15x.

Cluster (``ray.cluster_utils.Cluster`` on one machine, fresh for each variant): a head node
without CPUs and four worker nodes: one ``eff`` node (4 CPUs, SPECpower curve of the IBM
x3250 Xeon X3470: 41.6 W idle, 113 W at full load) and three ``old`` nodes (2 CPUs each, HP
ProLiant ML110 G3 Pentium D 930: 105 W idle, 169 W full). Curves from
``tao_core/data/specpower_servers.csv`` (SPECpower_ssj2008 results as shipped in CloudSim).
Workload: ``--tasks`` request-like tasks of ``--work`` seconds (about a fifth on the CPU),
one every ``--interval`` seconds.

Energy is modeled (there are no power counters here): each node's curve at the CPU
utilization of its own raylet and workers, integrated from the first submission to the
last result, for every node. Variants:

- ``default``: Ray's default scheduling; nothing is powered off. Ray's autoscaler would
  remove an idle node only after its idle timeout (5 minutes in Ray's cloud defaults),
  longer than this run; and with Ray spreading the work no node is idle anyway.
- ``tao``: TAO placement and scaling; a node the controller powers off is really removed
  from the cluster (``Cluster.remove_node``, standing in for the autoscaler terminating it)
  and counted at the node type's ``off_w`` (0 W) from then on.
- ``tao-placement-only``: TAO placement, no node removed (every idle node keeps drawing its
  idle power): what placement alone saves.

    python benchmarks/ray_live.py [--json OUT] [--tasks 60] [--interval 0.2] [--work 0.5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tao_ray  # noqa: E402
from ray_cluster import compare  # noqa: E402
from results_file import write_json  # noqa: E402

NODES = [("eff", 4), ("old", 2), ("old", 2), ("old", 2)]


def node_types():
    return [tao_ray.specpower_node_type("IbmX3250XeonX3470", name="eff", cpus=4),
            tao_ray.specpower_node_type("HpProLiantMl110G3PentiumD930", name="old", cpus=2)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ray_live.json"))
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--work", type=float, default=0.5)
    ap.add_argument("--variants", default="default,tao,tao-placement-only")
    a = ap.parse_args(argv)
    res = compare(NODES, node_types(), tasks=a.tasks, interval_s=a.interval, work_s=a.work,
                  variants=a.variants.split(","))
    d, t = res["default"], res["tao"]
    saving = 1.0 - t["energy_j"] / d["energy_j"]
    slow = t["makespan_s"] / d["makespan_s"]
    out = dict(res)
    out.update({
        "energy_saving": saving, "makespan_ratio": slow,
        "goal": {"energy_saving": 0.40, "makespan_ratio": 1.15},
        "workload": {"tasks": a.tasks, "interval_s": a.interval, "work_s": a.work},
        "cluster": {"nodes": NODES, "eff": "IbmX3250XeonX3470 curve", "old": "HpProLiantMl110G3PentiumD930 curve"},
        "accounting": "modeled node energy (curve at per-node process CPU utilization), all nodes, first "
                      "submission to last result; a node TAO removed counts 0 W (off_w) after removal; "
                      "default keeps every node on",
    })
    if "tao-placement-only" in res:
        out["energy_saving_placement_only"] = 1.0 - res["tao-placement-only"]["energy_j"] / d["energy_j"]
    print(f"\nTAO vs default: {100 * saving:.1f} % less modeled energy (goal >= 40 %), makespan "
          f"{slow:.3f}x (goal <= 1.15x)")
    if "energy_saving_placement_only" in out:
        print(f"placement only (no node powered off): {100 * out['energy_saving_placement_only']:.1f} % less")
    write_json(out, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
