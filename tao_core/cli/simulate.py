"""``tao simulate``: run TAO's controller and the engines' default policies over the same
cluster and workload; print a table, and optionally write JSON, a power plot and a ledger.

Outputs are written only after every policy ran (to temporary files, then renamed): bad
input or a failed run leaves no partial file. Exit 2 on bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

from tao_core.errors import InputError

FORMATS = ("canonical", "alibaba-v2023")


def register(subparsers: Any) -> None:
    from tao_core.sim.runner import POLICY_NAMES

    p = subparsers.add_parser(
        "simulate", help="what-if: energy, delay and peak power of each policy on a cluster and workload",
        description="Simulate each policy (default: all) on the same cluster and workload and compare energy, "
                    "waits and peak power with the physical lower bound. Formats: see the README, section Simulator.")
    p.add_argument("--cluster", metavar="C.json", help="cluster spec (JSON); not used with alibaba-v2023")
    p.add_argument("--workload", metavar="W.csv", required=True, help="workload CSV (or the Alibaba pod list)")
    p.add_argument("--workload-format", choices=FORMATS, default="canonical",
                   help="canonical: id,submit_s,duration_s,cpus,gpus[,group][,deadline_s]; "
                        "alibaba-v2023: openb_pod_list_*.csv with --nodes openb_node_list_*.csv")
    p.add_argument("--nodes", metavar="N.csv", help="Alibaba v2023 node list (with --workload-format alibaba-v2023)")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES, metavar="NAME",
                   help=f"policy to run, repeatable (default: all of {', '.join(POLICY_NAMES)})")
    p.add_argument("--budget-w", type=float, metavar="W", help="cluster IT power budget in watts (overrides the spec)")
    p.add_argument("--lambda", dest="lambda_j_per_s", type=float, metavar="X",
                   help="TAO's energy-delay trade: joules one second of delay is worth")
    p.add_argument("--pue", type=float, help="facility watts per IT watt (overrides the spec)")
    p.add_argument("--carbon", metavar="CSV|G",
                   help="grid carbon intensity: a CSV (t_s or timestamp, g_co2e_per_kwh) on the workload's clock, "
                        "or one number in gCO2e/kWh; reports emissions per policy, and TAO moves deferrable tasks "
                        "with deadlines to cleaner hours")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines' random choices (default 0)")
    p.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a plot of cluster power over time per policy")
    p.add_argument("--ledger", metavar="OUT.jsonl", help="write a signed ledger (config, decision, energy, summary)")
    p.set_defaults(func=run)


def _check_out(path: Optional[str], flag: str, *, must_not_exist: bool = False) -> Optional[Path]:
    if path is None:
        return None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag}: directory {parent} does not exist; create it or give another path")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag}: directory {parent} is not writable; give another path")
    if p.is_dir():
        raise InputError(f"{flag}: {p} is a directory; give a file name")
    if must_not_exist and p.exists():
        raise InputError(f"{flag}: {p} already exists; a ledger is never overwritten: give a new path")
    return p


def load_inputs(args: argparse.Namespace):
    """(cluster, workload) from the command line arguments."""
    from tao_core.sim.loaders import check_fits, load_cluster, load_workload

    if args.workload_format == "alibaba-v2023":
        from tao_core.sim.alibaba import load_alibaba_nodes, load_alibaba_pods

        if not args.nodes:
            raise InputError("--nodes: required with --workload-format alibaba-v2023; give the openb_node_list_*.csv")
        if args.cluster:
            raise InputError("--cluster: not used with --workload-format alibaba-v2023 (the cluster comes from --nodes); "
                             "drop it, and use --pue / --budget-w for those settings")
        cluster = load_alibaba_nodes(args.nodes)
        workload = load_alibaba_pods(args.workload)
    else:
        if args.nodes:
            raise InputError("--nodes: only used with --workload-format alibaba-v2023; give the cluster with --cluster")
        if not args.cluster:
            raise InputError("--cluster: required; give a cluster spec JSON (see the README, section Simulator)")
        cluster = load_cluster(args.cluster)
        workload = load_workload(args.workload)
    if args.pue is not None:
        if not args.pue >= 1.0:
            raise InputError(f"--pue: {args.pue:g} must be >= 1.0 (facility watts over IT watts)")
        cluster.pue = float(args.pue)
    if args.budget_w is not None and not args.budget_w > 0:
        raise InputError(f"--budget-w: {args.budget_w:g} must be a positive number of watts")
    if args.lambda_j_per_s is not None and not args.lambda_j_per_s >= 0:
        raise InputError(f"--lambda: {args.lambda_j_per_s:g} must be joules per second >= 0")
    check_fits(cluster, workload)
    return cluster, workload


def load_carbon(arg: Optional[str]):
    """A carbon signal from ``--carbon`` (a number of gCO2e/kWh, or a CSV path), or None."""
    if arg is None:
        return None
    from tao_core.carbon import ConstantCarbon, SeriesCarbon

    try:
        value = float(arg)
    except ValueError:
        return SeriesCarbon.from_csv(arg)
    return ConstantCarbon(value)


def run(args: argparse.Namespace) -> int:
    from tao_core.sim import output
    from tao_core.sim.runner import POLICY_NAMES, run_all

    json_out = _check_out(args.json, "--json")
    plot_out = _check_out(args.plot, "--plot")
    ledger_out = _check_out(args.ledger, "--ledger", must_not_exist=True)
    cluster, workload = load_inputs(args)
    carbon = load_carbon(args.carbon)
    policies = list(dict.fromkeys(args.policy or POLICY_NAMES))

    temps: list[tuple[Path, Path]] = []  # (temporary, final)
    ledger = None
    try:
        sink_factory = None
        on_result = None
        if ledger_out is not None:
            from tao_core.governance import Ledger

            ledger_tmp = output._tmp_beside(ledger_out)
            ledger_tmp.unlink()
            temps.append((ledger_tmp, ledger_out))
            key_final = Path(str(ledger_out) + ".key")
            pub_final = Path(str(ledger_out) + ".pub")
            if key_final.exists():
                key_path = key_final  # the user's key: use it, never replace it
            else:
                key_path = Path(str(ledger_tmp) + ".key")
                temps.append((key_path, key_final))
            pub_tmp = Path(str(ledger_tmp) + ".pub")
            temps.append((pub_tmp, pub_final))
            ledger = Ledger(ledger_tmp, key_path=key_path, pub_path=pub_tmp)
            led = ledger

            def sink_factory(name: str):
                def sink(ev) -> None:
                    led.append("decision", ev.to_dict())

                return sink

            def on_result(name, setup, res) -> None:
                summ = summarize(res, cluster, workload, bound, carbon=carbon)
                for kind, payload in output.ledger_records(name, setup.config, res, cluster, workload, summ):
                    led.append(kind, payload)

        from tao_core.sim.metrics import lower_bound_j, summarize

        bound = lower_bound_j(cluster, workload)
        doc = run_all(cluster, workload, policies, budget_w=args.budget_w, lambda_j_per_s=args.lambda_j_per_s,
                      seed=args.seed, progress=True, sink_factory=sink_factory, on_result=on_result,
                      carbon=carbon)
        if json_out is not None:
            temps.append((output.write_json(doc, json_out), json_out))
        if plot_out is not None:
            temps.append((output.write_plot(doc["results"], plot_out,
                                            title=f"{Path(args.workload).name}: cluster IT power",
                                            budget_w=doc["power_budget_w"]), plot_out))
        if ledger is not None:
            ledger.close()
            ledger = None
        # every output is complete: rename into place
        for tmp, final in temps:
            if tmp.exists():
                os.replace(tmp, final)
        temps = []
        print(output.table(doc))
        for name, m in doc["policies"].items():
            if m.get("refused_actions"):
                print(f"note: {name}: {m['refused_actions']} impossible action(s) refused, e.g. {m['refused_examples'][0]}",
                      file=sys.stderr)
        return 0
    finally:
        if ledger is not None:
            try:
                ledger.close()
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
