"""``tao simulate``: run TAO's controller and the engines' default policies over the same
cluster and workload; print a table, and optionally write JSON, a power plot and a ledger.

Outputs are written only after every policy ran (through ``tao_core.files``: temporary
files or private folders beside each target, then renamed): bad input, a result that cannot
be right, or a failed run leaves no partial file. Exit 2 on bad input or such a result.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

from tao_core.errors import InputError
from tao_core.files.values import number

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
    p.add_argument("--budget-w", metavar="W", help="cluster IT power budget in watts (overrides the spec)")
    p.add_argument("--lambda", dest="lambda_j_per_s", metavar="X",
                   help="TAO's energy-delay trade: joules one second of delay is worth")
    p.add_argument("--pue", help="facility watts per IT watt (overrides the spec)")
    p.add_argument("--carbon", metavar="CSV|G",
                   help="grid carbon intensity: a CSV (t_s or timestamp, g_co2e_per_kwh) on the workload's clock, "
                        "or one number in gCO2e/kWh; reports emissions per policy, and TAO moves deferrable tasks "
                        "with deadlines to cleaner hours")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines' random choices (default 0)")
    p.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a plot of cluster power over time per policy")
    p.add_argument("--ledger", metavar="OUT.jsonl", help="write a signed ledger (config, decision, energy, summary)")
    p.set_defaults(func=run)


#: largest --lambda, J/s (the README's energy-delay sweeps go to 2,000)
MAX_LAMBDA = 1e9
#: largest magnitude of --seed
MAX_SEED = 2 ** 63


def check_flags(args: argparse.Namespace) -> None:
    """The numeric flags in range, or an InputError naming the flag."""
    from tao_core.sim.loaders import MAX_BUDGET_W, MAX_PUE

    if args.pue is not None:
        args.pue = number(args.pue, "--pue", lo=1.0, hi=MAX_PUE,
                          fix=f"give facility watts over IT watts, 1.0 to {MAX_PUE:g}")
    if args.budget_w is not None:
        args.budget_w = number(args.budget_w, "--budget-w", lo=0.0, lo_open=True, hi=MAX_BUDGET_W,
                               fix=f"give the cluster IT power budget in watts, > 0 and <= {MAX_BUDGET_W:g}")
    if args.lambda_j_per_s is not None:
        args.lambda_j_per_s = number(args.lambda_j_per_s, "--lambda", lo=0.0, hi=MAX_LAMBDA,
                                     fix=f"give joules per second of delay, 0 to {MAX_LAMBDA:g}")
    if not -MAX_SEED <= args.seed <= MAX_SEED:
        raise InputError(f"--seed: {args.seed} is out of range; give a whole number within 2**63 of 0")


def load_inputs(args: argparse.Namespace):
    """(cluster, workload) from the command line arguments."""
    from tao_core.sim.loaders import check_fits, load_cluster, load_workload

    check_flags(args)
    if args.workload_format == "alibaba-v2023":
        from tao_core.sim.alibaba import load_alibaba_nodes, load_alibaba_pods

        if not args.nodes:
            raise InputError("--nodes: required with --workload-format alibaba-v2023; give the openb_node_list_*.csv")
        if args.cluster:
            raise InputError("--cluster: not used with --workload-format alibaba-v2023 (the cluster comes from --nodes); "
                             "drop it, and use --pue / --budget-w for those settings")
        cluster = load_alibaba_nodes(args.nodes, field="--nodes")
        workload = load_alibaba_pods(args.workload, field="--workload")
    else:
        if args.nodes:
            raise InputError("--nodes: only used with --workload-format alibaba-v2023; give the cluster with --cluster")
        if not args.cluster:
            raise InputError("--cluster: required; give a cluster spec JSON (see the README, section Simulator)")
        cluster = load_cluster(args.cluster, field="--cluster")
        workload = load_workload(args.workload, field="--workload")
    if args.pue is not None:
        cluster.pue = float(args.pue)
    check_fits(cluster, workload)
    return cluster, workload


def load_carbon(arg: Optional[str]):
    """A carbon signal from ``--carbon`` (a number of gCO2e/kWh, or a CSV path), or None."""
    if arg is None:
        return None
    from tao_core.carbon import MAX_INTENSITY, ConstantCarbon, SeriesCarbon

    if _carbon_path(arg) is not None:
        return SeriesCarbon.from_csv(arg, field="--carbon")
    return ConstantCarbon(number(arg, "--carbon", lo=0.0, hi=MAX_INTENSITY,
                                 fix=f"give gCO2e/kWh from 0 to {MAX_INTENSITY:g}, or a CSV file"))


def _carbon_path(arg: Optional[str]) -> Optional[str]:
    if arg is None:
        return None
    try:
        float(arg)
        return None
    except ValueError:
        return arg


def output_set(args: argparse.Namespace):
    """The outputs of the run (``--json``, ``--plot``, ``--ledger`` and its key and public
    key files), each checked against the others and the inputs; and the existing private
    key to sign with (None: one is made)."""
    from tao_core.files import OutputSet, read_input_bytes

    inputs = [("--cluster", args.cluster), ("--workload", args.workload), ("--nodes", args.nodes),
              ("--carbon", _carbon_path(args.carbon))]
    targets = [("--json", args.json), ("--plot", args.plot)]
    user_key = None
    if args.ledger is not None:
        ledger = Path(args.ledger)
        if os.path.lexists(ledger):
            raise InputError(f"--ledger {ledger}: already exists; a ledger is never overwritten: give a new path")
        key = Path(str(ledger) + ".key")
        if os.path.lexists(key):
            read_input_bytes(key, "--ledger key", max_bytes=64 * 1024)  # a regular file that can be read
            user_key = key  # the user's key: used, never replaced
            inputs.append(("--ledger key", key))
        else:
            targets.append(("--ledger key", key))
        targets += [("--ledger", ledger), ("--ledger public key", Path(str(ledger) + ".pub"))]
    return OutputSet(targets, inputs=inputs), user_key


def run(args: argparse.Namespace) -> int:
    from tao_core.files import json_text
    from tao_core.sim import output
    from tao_core.sim.engine import SimulationError
    from tao_core.sim.metrics import implausible, lower_bound_j, summarize
    from tao_core.sim.runner import POLICY_NAMES, run_all

    outs, user_key = output_set(args)
    cluster, workload = load_inputs(args)
    carbon = load_carbon(args.carbon)
    policies = list(dict.fromkeys(args.policy or POLICY_NAMES))
    bound = lower_bound_j(cluster, workload)
    with outs:
        ledger = None
        if args.ledger is not None:
            from tao_core.governance import Ledger

            key = user_key or outs.stage("--ledger key").path
            ledger = Ledger(outs.stage("--ledger").path, key_path=key, pub_path=outs.stage("--ledger public key").path)
        try:
            def sink_factory(name: str):
                if ledger is None:
                    return None
                return lambda ev: ledger.append("decision", ev.to_dict())

            def on_result(name, setup, res) -> None:
                summ = summarize(res, cluster, workload, bound, carbon=carbon)
                problem = implausible(name, summ, res, cluster, workload, bound)
                if problem is not None:
                    raise InputError(f"result refused, nothing written: {problem}")
                if ledger is not None:
                    for kind, payload in output.ledger_records(name, setup.config, res, cluster, workload, summ):
                        ledger.append(kind, payload)

            try:
                doc = run_all(cluster, workload, policies, budget_w=args.budget_w,
                              lambda_j_per_s=args.lambda_j_per_s, seed=args.seed, progress=True,
                              sink_factory=sink_factory, on_result=on_result, carbon=carbon)
            except SimulationError as exc:
                raise InputError(f"result refused, nothing written: the simulator stopped an impossible action of "
                                 f"policy {exc}; this is a defect of the policy") from None
            if args.json is not None:
                outs["--json"].write(json_text(output.json_document(doc), "--json"))
            if args.plot is not None:
                plot = outs.stage("--plot")
                plot.take(output.write_plot(doc["results"], plot.path,
                                            title=f"{Path(args.workload).name}: cluster IT power",
                                            budget_w=doc["power_budget_w"]))
        finally:
            if ledger is not None:
                ledger.close()
    # every output is complete and in place
    print(output.table(doc))
    return 0
