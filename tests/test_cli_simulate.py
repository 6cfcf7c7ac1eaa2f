"""``tao simulate``: outputs that must not be written (devices, FIFOs, links, one path for
two outputs), temporaries gone after SIGTERM, flags out of range, and results that cannot be
right refused instead of printed."""
from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tao_core.cli.main import main
from tao_core.control.types import Action, Decision
from tao_core.sim.loaders import load_cluster, load_workload
from tao_core.sim.metrics import implausible, lower_bound_j, summarize
from tao_core.sim.policies import PackPolicy

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "examples" / "cluster_small.json"
WORKLOAD = ROOT / "examples" / "workload_small.csv"
BASE = ["simulate", "--cluster", str(CLUSTER), "--workload", str(WORKLOAD), "--policy", "pack"]


def run_cli(args, capsys):
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, [x for x in cap.err.splitlines() if x.strip()]


@pytest.mark.parametrize("flag,value,needle", [
    ("--budget-w", "inf", "--budget-w: 'inf' is not a finite number"),
    ("--budget-w", "nan", "--budget-w: 'nan' is not a finite number"),
    ("--budget-w", "0", "--budget-w: '0' is out of range"),
    ("--lambda", "inf", "--lambda: 'inf' is not a finite number"),
    ("--lambda", "-1", "--lambda: '-1' is out of range"),
    ("--pue", "inf", "--pue: 'inf' is not a finite number"),
    ("--pue", "0.5", "--pue: '0.5' is out of range"),
    ("--seed", "abc", "argument --seed: invalid int value"),
    ("--seed", "9" * 30, "--seed: 999"),
    ("--carbon", "nan", "--carbon: 'nan' is not a finite number"),
])
def test_flags_out_of_range_are_one_line_and_exit_2(tmp_path, capsys, flag, value, needle):
    out = tmp_path / "r.json"
    try:
        rc, stdout, err = run_cli(BASE + [flag, value, "--json", str(out)], capsys)
    except SystemExit as exc:  # argparse's own errors exit through SystemExit
        rc, err = exc.code, [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["devnull", "devfull", "fifo", "symlink", "folder"])
def test_outputs_never_replace_what_is_not_a_regular_file(tmp_path, capsys, kind):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "out"
    if kind in ("devnull", "devfull"):  # a private copy of /dev/null or /dev/full, never the machine's own
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3 if kind == "devnull" else 7))
        except PermissionError:
            pytest.skip("creating device nodes needs root (CAP_MKNOD)")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(victim)
    else:
        target.mkdir()
    for flag in ("--json", "--plot", "--ledger"):
        rc, _, err = run_cli(BASE + [flag, str(target)], capsys)
        assert rc == 2 and len(err) == 1 and flag in err[0], err
    assert victim.read_text() == "keep"
    if kind in ("devnull", "devfull"):
        assert stat.S_ISCHR(os.lstat(target).st_mode)
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_one_path_for_two_outputs_or_an_input_is_refused(tmp_path, capsys):
    x = tmp_path / "x"
    for args, needle in (
        (["--json", str(x), "--ledger", str(x)], "is the same file as"),
        (["--plot", str(x), "--json", str(x)], "is the same file as"),
        (["--json", str(WORKLOAD)], "is the same file as --workload"),
        (["--json", str(x) + ".pub", "--ledger", str(x)], "is the same file as --ledger public key"),
    ):
        rc, _, err = run_cli(BASE + args, capsys)
        assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_ledger_keys_existing_files_and_a_fifo_key(tmp_path, capsys):
    led = tmp_path / "l.jsonl"
    led.write_text("old\n")
    rc, _, err = run_cli(BASE + ["--ledger", str(led)], capsys)
    assert rc == 2 and "never overwritten" in err[0] and led.read_text() == "old\n"
    led2 = tmp_path / "m.jsonl"
    os.mkfifo(tmp_path / "m.jsonl.key")  # reading it would block for ever
    rc, _, err = run_cli(BASE + ["--ledger", str(led2)], capsys)
    assert rc == 2 and "--ledger key" in err[0] and "not a regular file" in err[0]
    # a key of the user's is used, never replaced; the public key beside it is written
    first = tmp_path / "a.jsonl"
    assert run_cli(BASE + ["--ledger", str(first)], capsys)[0] == 0
    key = (tmp_path / "a.jsonl.key").read_bytes()
    second = tmp_path / "b.jsonl"
    (tmp_path / "b.jsonl.key").write_bytes(key)
    assert run_cli(BASE + ["--ledger", str(second), "--json", str(tmp_path / "b.json")], capsys)[0] == 0
    assert (tmp_path / "b.jsonl.key").read_bytes() == key
    assert (tmp_path / "b.jsonl.pub").read_bytes() == (tmp_path / "a.jsonl.pub").read_bytes()
    json.loads((tmp_path / "b.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sigterm_mid_run_leaves_no_partial_file(tmp_path):
    rows = "".join(f"t{i},{i * 0.5},{30 + i % 7},{1 + i % 3},0\n" for i in range(40_000))
    wl = tmp_path / "w.csv"
    wl.write_text("id,submit_s,duration_s,cpus,gpus\n" + rows)
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "tao_core.cli.main", "simulate", "--cluster", str(CLUSTER),
                          "--workload", str(wl), "--json", str(out / "r.json"), "--plot", str(out / "r.png"),
                          "--ledger", str(out / "l.jsonl")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.iterdir()) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)  # the ledger's staging folder appears once the inputs are read
        assert list(out.iterdir()), "no staging folder appeared"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert list(out.iterdir()) == []


def test_a_budget_no_task_fits_under_is_refused_not_tabled(capsys, tmp_path):
    rc, out, err = run_cli(BASE[:-2] + ["--policy", "tao", "--budget-w", "1e-9", "--json", str(tmp_path / "r.json")],
                           capsys)
    assert rc == 2 and out == "" and len(err) == 1
    assert "policy tao: 60 of 60 tasks never ran" in err[0] and "raise --budget-w" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_result_checks_catch_a_gpu_task_on_a_gpu_less_node_and_energy_below_the_bound():
    from tao_core.sim.runner import build_policy, run_policy

    cl, wl = load_cluster(CLUSTER), load_workload(WORKLOAD)
    bound = lower_bound_j(cl, wl)
    res = run_policy(build_policy("pack", cl), cl, wl)
    summ = summarize(res, cl, wl, bound)
    assert implausible("pack", summ, res, cl, wl, bound) is None
    gpu_task = next(i for i, t in enumerate(wl.tasks) if t.gpus > 0)
    cpu_node = next(i for i, n in enumerate(cl.nodes) if cl.node_types[n.node_type].gpus == 0)
    res.node_of_task[gpu_task] = cpu_node
    why = implausible("pack", summ, res, cl, wl, bound)
    assert why is not None and f"ran on {cl.nodes[cpu_node].node_id}, which has 12 CPUs and 0 GPUs" in why
    low = dict(summ, energy_j=bound * 0.5)
    assert "below the lower bound" in implausible("pack", low, res, cl, wl, bound)
    assert "is inf" in implausible("pack", dict(summ, peak_power_w=math.inf), res, cl, wl, bound)


class _GpuOnFirstNode(PackPolicy):
    """A policy with a defect: every task goes to the first node, GPUs or not."""

    def decide(self, task, *, now_s):
        return Decision(task.task_id, Action.PLACE, node_id=self.ids[0])


def test_an_impossible_action_of_a_policy_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    from tao_core.sim import policies

    monkeypatch.setitem(policies.BASELINES, "pack", _GpuOnFirstNode)
    rc, out, err = run_cli(BASE + ["--json", str(tmp_path / "r.json")], capsys)
    assert rc == 2 and out == "" and len(err) == 1, err
    assert "result refused, nothing written" in err[0] and "PLACE" in err[0] and "defect of the policy" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_controller_with_an_infinite_budget_places_gpu_tasks_on_gpu_nodes():
    from tao_core.errors import InputError
    from tao_core.sim.runner import build_policy, run_policy

    cl, wl = load_cluster(CLUSTER), load_workload(WORKLOAD)
    try:
        setup = build_policy("tao", cl, budget_w=math.inf)
    except InputError:
        return  # refusing the budget is a fix too
    res = run_policy(setup, cl, wl, budget_w=math.inf)
    summ = summarize(res, cl, wl, lower_bound_j(cl, wl))
    assert implausible("tao", summ, res, cl, wl, lower_bound_j(cl, wl)) is None
