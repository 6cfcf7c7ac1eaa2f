"""Hostile inputs to every ``tao`` subcommand, each run in a process of its own with memory
and time limits: malformed clusters, workloads, Alibaba traces, carbon files, flags, output
paths, powercap and cpufreq trees, ledgers and reports (hypothesis generates them).

What must hold for every input: no traceback, no hang, no runaway memory; a failure is exit
2 (1 or 3 where ``tao audit verify`` / ``tao report validate`` say the file was tampered
with or torn) with exactly one line on stderr for exit 2; and no output file, temporary file
or replaced device after a failure. A run that succeeds writes outputs that parse as strict
JSON (no NaN or Infinity).

Each case runs in a child forked from a small server process that imported TAO once (a
fresh interpreter per case would cost about a second of imports): the child sets its
limits (``RLIMIT_AS``, ``RLIMIT_CPU``), runs ``tao_core.cli.main.main(argv)`` exactly as the
``tao`` script does, and prints a traceback and exits 1 on an uncaught exception, as the
interpreter would. A few cases also run through ``python -m tao_core.cli.main`` to show the
two agree.

``TAO_FUZZ_EXAMPLES`` (default 40 per family) sets the examples per case family; the counts
(inputs tried, clean errors, tracebacks, hangs) are printed at the end and, with
``TAO_FUZZ_STATS=FILE``, written there as JSON with the failures. For a large survey:
``TAO_FUZZ_SURVEY=1`` counts failures instead of stopping at the first, ``TAO_FUZZ_RANDOM=1``
draws new examples (the default replays the same ones), ``TAO_FUZZ_ALL=1`` includes the
known audit/report failures (GOVERNANCE_PENDING)::

    TAO_FUZZ_SURVEY=1 TAO_FUZZ_RANDOM=1 TAO_FUZZ_EXAMPLES=1000 TAO_FUZZ_STATS=fuzz.json \
        python -m pytest -q tests/test_cli_fuzz.py
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "cluster_small.json"
EXAMPLES = int(os.environ.get("TAO_FUZZ_EXAMPLES", "40"))
#: count failures instead of stopping at the first (for a survey of many examples)
SURVEY = bool(os.environ.get("TAO_FUZZ_SURVEY"))
CASE_TIMEOUT_S = 60.0
#: address space a case may add to what the server already mapped, bytes
CASE_MEMORY = 2 * 1024 ** 3
#: CPU seconds a case may use
CASE_CPU_S = 60

SERVER = r'''
import json, os, resource, signal, sys, time, traceback
os.environ["MPLBACKEND"] = "Agg"
import tao_core.cli.main as climain
climain.build_parser()  # import every subcommand
import tao_core.sim.runner, tao_core.sim.engine, tao_core.sim.policies, tao_core.governance  # noqa
import tao_core.telemetry.detect, tao_core.actuators, matplotlib.pyplot  # noqa

def vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0

def child(req):
    os.chdir(req["cwd"])
    for k, v in req["env"].items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    lim = vm_bytes() + req["memory"]
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    resource.setrlimit(resource.RLIMIT_CPU, (req["cpu_s"], req["cpu_s"] + 5))
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    nul = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nul, 0); os.dup2(out, 1); os.dup2(err, 2)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rc = 1
    try:
        rc = climain.main(req["argv"])
        rc = 0 if rc is None else rc
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = 1
    try:
        sys.stdout.flush(); sys.stderr.flush()
    except BaseException:
        pass
    os._exit(rc)

for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(req)
        finally:
            os._exit(70)
    deadline = time.monotonic() + req["timeout"]
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = 9
            break
        time.sleep(0.005)
    rc = os.waitstatus_to_exitcode(status) if not timed_out else -9
    sys.stdout.write(json.dumps({"rc": rc, "timed_out": timed_out}) + "\n")
    sys.stdout.flush()
'''


class Server:
    """The fork server: one request (argv, folder, env) at a time."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO, env=env)
        self.lock = threading.Lock()

    def run(self, argv: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, str, bool]:
        out, err = cwd / ".case-stdout", cwd / ".case-stderr"
        req = {"argv": argv, "cwd": str(cwd), "env": env or {}, "memory": CASE_MEMORY, "cpu_s": CASE_CPU_S,
               "timeout": CASE_TIMEOUT_S, "stdout": str(out), "stderr": str(err)}
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fuzz server died")
        res = json.loads(line)
        o = out.read_text(errors="replace")
        e = err.read_text(errors="replace")
        out.unlink()
        err.unlink()
        return res["rc"], o, e, res["timed_out"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


STATS: Counter = Counter()
FAILURES: list[str] = []


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()
    total = STATS["tried"]
    summary = {"inputs_tried": total, "clean_errors": STATS["clean_error"], "accepted": STATS["accepted"],
               "tampered_or_torn": STATS["tampered"], "tracebacks": STATS["traceback"], "hangs": STATS["hang"],
               "other_failures": STATS["bad"], "per_family": {k[7:]: v for k, v in STATS.items()
                                                             if k.startswith("family:")}}
    print("\nfuzz summary: " + json.dumps(summary))
    path = os.environ.get("TAO_FUZZ_STATS")
    if path:
        Path(path).write_text(json.dumps({**summary, "failures": FAILURES[:200]}, indent=2))


def fuzz_settings(n: int = EXAMPLES):
    return settings(max_examples=n, deadline=None, derandomize=os.environ.get("TAO_FUZZ_RANDOM") is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- checks
def _listing(folder: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(folder.rglob("*")):
        st_ = os.lstat(p)
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st_.st_mode), st_.st_size if stat.S_ISREG(st_.st_mode) else 0,
                                           p.read_bytes() if stat.S_ISREG(st_.st_mode) and st_.st_size < 1 << 16 else b"")
    return out


def check(server: Server, family: str, argv: list[str], cwd: Path, *, ok_codes=(0, 2), tamper_codes=(),
          outputs: tuple[str, ...] = (), env: dict | None = None, desc: str = "") -> int:
    """Run one case and assert what must hold; ``outputs``: paths (relative to ``cwd``) the
    command may create when it succeeds. Returns the exit code."""
    before = _listing(cwd)
    rc, out, err, timed_out = server.run(argv, cwd, env)
    STATS["tried"] += 1
    STATS[f"family:{family}"] += 1
    lines = [x for x in err.splitlines() if x.strip()]
    what = f"{family}: tao {' '.join(a if len(a) < 80 else a[:77] + '...' for a in argv)}" + (f" [{desc}]" if desc else "")
    if timed_out:
        STATS["hang"] += 1
        return _fail(f"hang (killed after {CASE_TIMEOUT_S:g} s)", what, err)
    if "Traceback (most recent call last)" in err:
        STATS["traceback"] += 1
        return _fail(f"traceback ({lines[-1][:200] if lines else ''})", what, err)
    after = _listing(cwd)
    created = sorted(set(after) - set(before))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    replaced = [k for k in changed if before[k][0] != stat.S_IFREG]  # a device, FIFO or link is never an output
    if replaced:
        STATS["bad"] += 1
        return _fail(f"exit {rc} and replaced {replaced}, which were not regular files", what, err)
    if rc == 2:
        STATS["clean_error"] += 1
        problems = []
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if created or changed:
            problems.append(f"files created {created} or changed {changed}")
        if problems:
            STATS["bad"] += 1
            _fail("; ".join(problems), what, err)
    elif rc in tamper_codes:
        STATS["tampered"] += 1
        if not (lines or out.strip()) or created:
            _fail(f"exit {rc} without a word, or with files created {created}", what, err)
    elif rc in ok_codes:
        STATS["accepted"] += 1
        stray = [c for c in created + changed if c not in outputs]
        if stray:
            STATS["bad"] += 1
            _fail(f"exit 0 with files created or changed {stray}", what, err)
        for c in created:
            if c.endswith(".json"):
                json.loads((cwd / c).read_text(), parse_constant=_no_constant)
    else:
        STATS["bad"] += 1
        _fail(f"exit {rc}", what, err)
    return rc


def _fail(problem: str, what: str, err: str) -> int:
    """Record a failure; fail the test unless TAO_FUZZ_SURVEY is set (then only count)."""
    FAILURES.append(f"{problem}: {what}")
    if not SURVEY:
        pytest.fail(f"{problem}: {what}\n{err[-2500:]}")
    return -1


def _no_constant(name: str):
    raise AssertionError(f"{name} written into a JSON output")


# ------------------------------------------------------------------------ generators
def _short(v) -> str:
    if isinstance(v, (str, bytes)) and len(v) > 40:
        return f"<{len(v)} {'chars' if isinstance(v, str) else 'bytes'} {v[:12]!r}...>"
    if isinstance(v, (list, tuple)) and len(repr(v)) > 80:
        return "[" + ", ".join(_short(x) for x in v[:6]) + (", ..." if len(v) > 6 else "") + "]"
    return repr(v)


class Case:
    """A generated case: what was drawn (its repr, kept short) and what to run."""

    def __init__(self, log: list[str], **fields) -> None:
        self.log = log
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return "Case(" + "; ".join(self.log) + ")"


def recorder(draw, log: list[str]):
    """``draw`` that also notes each value drawn, for a short description of the case."""
    def d(strategy):
        v = draw(strategy)
        log.append(_short(v))
        return v
    return d


HOSTILE_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "-1", "0", "1e-9", "1e9", "1e20",
                   "1e308", "9" * 400, "-0", "abc", "", " ", "0x10", "1_000", "\u0661\u0662", "1e", "--1", "true"]
#: raw JSON texts for one value (NaN and Infinity are not JSON, so they are spliced in as text)
HOSTILE_JSON = ["1e9", "1e308", "-1", "0", "1" + "0" * 400, "NaN", "Infinity", "-Infinity", "1e400", '"abc"',
                "null", "true", "[]", "{}", '"' + "x" * 200_000 + '"', '"\\u0000"', "[" * 5000 + "]" * 5000,
                "0.5", "100001", "1e-300", '"12"']
CSV_CELLS = HOSTILE_NUMBERS + ["x" * 140_000, '"unclosed', '"a""b"', "\x00", "a\nb", "\u202e", "1,2"]

#: Known failures of ``tao audit`` and ``tao report`` (tao_core/governance, tao_core/cli/{audit,report}.py),
#: whose input handling is being fixed apart from the commands tested here. While a class is listed, its
#: inputs are left out of the generated audit/report cases and its exact reproducers in
#: test_governance_known_failures are expected to fail (strictly: they must fail). Empty the set once the
#: fix is in: every case then runs and must pass.
#: - deep-json: a ledger line or report nested 10,000+ deep -> RecursionError traceback (audit verify/show,
#:   report build/validate/render/merge)
#: - out-folder: report build/render/merge --out FOLDER -> IsADirectoryError traceback
#: - out-device: report build/render/merge --out DEVICE -> the device node replaced by a regular file (as root)
GOVERNANCE_PENDING: set[str] = set()
if os.environ.get("TAO_FUZZ_ALL"):  # a survey of everything, pending classes included
    GOVERNANCE_PENDING = set()


def _deep(v) -> bool:
    return isinstance(v, (str, bytes)) and v[:200].count("[" if isinstance(v, str) else b"[") > 100


def governance_values(values: list) -> list:
    """``values`` without those of a pending governance class (see GOVERNANCE_PENDING)."""
    return [v for v in values if not ("deep-json" in GOVERNANCE_PENDING and _deep(v))]


def _cluster_text(draw) -> bytes:
    base = json.loads(CLUSTER.read_text())
    kind = draw(st.sampled_from(["value", "value", "value", "drop", "extra", "raw", "count", "types"]))
    if kind == "raw":
        return draw(st.sampled_from([b"", b"null", b"[]", b'"x"', b"\xff\xfe\x00{", b"{" * 100_000,
                                     b"[" * 100_000 + b"]" * 100_000, json.dumps(base).encode()[:-7],
                                     b"\xef\xbb\xbf" + json.dumps(base).encode(), json.dumps(base).encode() + b"\xff",
                                     b'{"node_types": NaN}']))
    marker = "@@VALUE@@"
    if kind == "count":
        base["node_types"][0]["count"] = marker
        raw = draw(st.sampled_from(["1e9", "1e15", "100001", "50001", "99999.5", "1" + "0" * 30, "-3"]))
    elif kind == "types":
        base["node_types"] = base["node_types"] * draw(st.sampled_from([0, 400]))
        return json.dumps(base).encode()
    else:
        i = draw(st.integers(0, len(base["node_types"]) - 1))
        nt = base["node_types"][i]
        keys = ["name", "count", "cpus", "gpus", "speed", "power_curve_w", "gpu_idle_w", "gpu_max_w",
                "gpu_power_limit_w", "boot_s", "boot_w", "off_w"]
        top = draw(st.sampled_from(["pue", "power_budget_w", "node_types", None, None, None]))
        if kind == "drop":
            nt.pop(draw(st.sampled_from(keys)), None)
            return json.dumps(base).encode()
        if kind == "extra":
            nt[draw(st.sampled_from(["colour", "\n", "x" * 1000, "count "]))] = 1
            return json.dumps(base).encode()
        if top is not None:
            base[top] = marker
        else:
            key = draw(st.sampled_from(keys + ["power_curve_w[]"]))
            if key == "power_curve_w[]":
                nt["power_curve_w"][draw(st.integers(0, 10))] = marker
            else:
                nt[key] = marker
        raw = draw(st.sampled_from(HOSTILE_JSON))
    return json.dumps(base).replace(f'"{marker}"', raw).encode()


WL_HEADER = ["id", "submit_s", "duration_s", "cpus", "gpus", "group", "deadline_s"]
WL_ROWS = [["t0", "0", "30", "1", "0", "etl", ""], ["t1", "5", "60", "4", "1", "train", ""],
           ["t2", "9", "10", "2", "0", "etl", "400"]]


def _csv(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _workload_text(draw) -> bytes:
    rows = [list(WL_HEADER)] + [list(r) for r in WL_ROWS]
    kind = draw(st.sampled_from(["cell", "cell", "cell", "header", "width", "dup", "raw", "quote"]))
    if kind == "cell":
        r = draw(st.integers(1, len(rows) - 1))
        c = draw(st.integers(0, len(WL_HEADER) - 1))
        rows[r][c] = draw(st.sampled_from(CSV_CELLS))
    elif kind == "header":
        h = draw(st.sampled_from(["drop", "dup", "unknown", "empty"]))
        if h == "drop":
            c = draw(st.integers(0, 4))
            rows = [r[:c] + r[c + 1:] for r in rows]
        elif h == "dup":
            rows[0][5] = "id"
        elif h == "unknown":
            rows[0][6] = "prio"
        else:
            return b"\n\n"
    elif kind == "width":
        rows[draw(st.integers(1, 3))].append("extra")
    elif kind == "dup":
        rows[2][0] = "t0"
    elif kind == "quote":
        return (_csv(rows) + '"t9,1,1,1,0,,\n').encode()
    else:
        return draw(st.sampled_from([b"", b"\xff\xfe" + _csv(rows).encode(), _csv(rows).encode().replace(b"t1", b"\xc3("),
                                     _csv(rows[:1]).encode(), b"\x00" * 100, _csv(rows).encode() + b"\r\r\r"]))
    return _csv(rows).encode()


def _carbon_text(draw) -> bytes:
    rows = [["t_s", "g_co2e_per_kwh"], ["0", "300"], ["3600", "150"], ["7200", "400"]]
    kind = draw(st.sampled_from(["cell", "cell", "order", "header", "ts"]))
    if kind == "cell":
        rows[draw(st.integers(1, 3))][draw(st.integers(0, 1))] = draw(st.sampled_from(CSV_CELLS))
    elif kind == "order":
        rows[2][0] = "0"
    elif kind == "header":
        rows[0] = ["time", "value"]
    else:
        rows = [["timestamp", "g_co2e_per_kwh"], ["2024-01-01T00:00:00", "300"],
                [draw(st.sampled_from(["2024-01-01T01:00:00+00:00", "yesterday", "9999-99-99", "", "1e400"])), "100"]]
    return _csv(rows).encode()


SIM_BASE = ["simulate", "--cluster", "c.json", "--workload", "w.csv", "--policy", "pack", "--policy", "tao"]


@st.composite
def simulate_case(draw):
    """argv, files to write {name: bytes}, special paths to make, whether it must fail."""
    log: list[str] = []
    draw = recorder(draw, log)
    files = {"c.json": CLUSTER.read_bytes(), "w.csv": _csv([WL_HEADER] + WL_ROWS).encode()}
    argv = list(SIM_BASE)
    target = draw(st.sampled_from(["cluster", "cluster", "workload", "workload", "carbon", "flag", "flag", "output"]))
    special: list[tuple[str, str]] = []
    must_fail = target == "output"
    if target == "cluster":
        files["c.json"] = _cluster_text(draw)
    elif target == "workload":
        files["w.csv"] = _workload_text(draw)
    elif target == "carbon":
        if draw(st.booleans()):
            files["k.csv"] = _carbon_text(draw)
            argv += ["--carbon", "k.csv"]
        else:
            argv += ["--carbon", draw(st.sampled_from(["nan", "inf", "-1", "1e400", "1e6", "-0"]))]
    elif target == "flag":
        flag = draw(st.sampled_from(["--budget-w", "--lambda", "--pue", "--seed"]))
        argv += [flag, draw(st.sampled_from(HOSTILE_NUMBERS + ["9" * 30, "-9" * 10]))]
    else:
        kind = draw(st.sampled_from(["fifo", "symlink", "folder", "devnull", "devfull", "same", "input", "nofolder",
                                     "keyfifo", "ledger-exists"]))
        flag = draw(st.sampled_from(["--json", "--plot", "--ledger"]))
        if kind == "fifo":
            special.append(("fifo", "out"))
            argv += [flag, "out"]
        elif kind == "symlink":
            special.append(("symlink", "out"))
            argv += [flag, "out"]
        elif kind == "folder":
            special.append(("folder", "out"))
            argv += [flag, "out"]
        elif kind == "devnull":
            special.append(("null", "dnull"))
            argv += [flag, "dnull"]
        elif kind == "devfull":
            special.append(("full", "dfull"))
            argv += [flag, "dfull"]
        elif kind == "same":
            other = draw(st.sampled_from([f for f in ("--json", "--plot", "--ledger") if f != flag]))
            argv += [flag, "out", other, "out"]
        elif kind == "input":
            argv += [flag, draw(st.sampled_from(["c.json", "w.csv"]))]
        elif kind == "nofolder":
            argv += [flag, "missing/out"]
        elif kind == "keyfifo":
            special.append(("fifo", "led.jsonl.key"))
            argv += ["--ledger", "led.jsonl"]
        else:
            files["led.jsonl"] = b"old\n"
            argv += ["--ledger", "led.jsonl"]
    return Case(log, argv=argv, files=files, special=special, must_fail=must_fail)


def _devices_intact() -> None:
    """The machine's own devices are never targets here (private copies are, see
    :func:`private_device`); this only makes sure of it."""
    for dev in ("/dev/null", "/dev/full"):
        if not stat.S_ISCHR(os.lstat(dev).st_mode):
            pytest.fail(f"{dev} was replaced")  # even in a survey: the machine needs repair


#: (major, minor) of the memory devices the cases copy: /dev/null and /dev/full
DEVICES = {"null": (1, 3), "full": (1, 7)}


def private_device(path: Path, kind: str) -> None:
    """A character device node like /dev/null or /dev/full at ``path`` (root only), so that
    a command that wrongly replaces its output target replaces this copy, never the
    machine's own device."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*DEVICES[kind]))
    except PermissionError:
        pytest.skip("creating device nodes needs root (CAP_MKNOD)")


def _make(folder: Path, files: dict[str, bytes], special) -> None:
    for name, data in files.items():
        (folder / name).write_bytes(data)
    for kind, name in special:
        p = folder / name
        if kind in DEVICES:
            private_device(p, kind)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "symlink":
            (folder / "victim").write_text("keep")
            p.symlink_to(folder / "victim")
        elif kind == "folder":
            p.mkdir()


@given(simulate_case())
@fuzz_settings()
def test_simulate_hostile_inputs(server, case):
    argv, files, special, must_fail = case.argv, case.files, case.special, case.must_fail
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        _make(folder, files, special)
        rc = check(server, "simulate", argv, folder, desc=repr(case))
        if rc == 0 and must_fail:
            _fail("accepted an output it must refuse", f"tao {' '.join(argv)}", "")
        if (folder / "victim").exists() and (folder / "victim").read_text() != "keep":
            _fail("wrote through a symbolic link", f"tao {' '.join(argv)}", "")
    _devices_intact()


NODE_HEADER = ["sn", "cpu_milli", "memory_mib", "gpu", "model"]
POD_HEADER = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase",
              "creation_time", "deletion_time", "scheduled_time"]


@st.composite
def alibaba_case(draw):
    log: list[str] = []
    draw = recorder(draw, log)
    nodes = [NODE_HEADER, ["n0", "96000", "1", "8", "G2"], ["n1", "32000", "1", "0", ""]]
    pods = [POD_HEADER, ["p0", "12000", "1", "1", "460", "", "LS", "Running", "0", "100", "10"],
            ["p1", "4000", "1", "0", "0", "", "BE", "Pending", "5", "50", ""]]
    which = draw(st.sampled_from(["nodes", "pods"]))
    rows = nodes if which == "nodes" else pods
    kind = draw(st.sampled_from(["cell", "cell", "cell", "header", "dup"]))
    if kind == "cell":
        r = draw(st.integers(1, len(rows) - 1))
        rows[r][draw(st.integers(0, len(rows[0]) - 1))] = draw(st.sampled_from(CSV_CELLS + ["H999", "1001", "2e9"]))
    elif kind == "header":
        rows[0] = rows[0][:-1] + ["other"]
    else:
        rows[2][0] = rows[1][0]
    return Case(log, files={"n.csv": _csv(nodes).encode(), "p.csv": _csv(pods).encode()})


@given(alibaba_case())
@fuzz_settings(max(EXAMPLES // 2, 10))
def test_alibaba_loader_hostile_inputs(server, case):
    with tempfile.TemporaryDirectory() as d:
        _make(Path(d), case.files, [])
        check(server, "alibaba", desc=repr(case), argv=["simulate", "--workload-format", "alibaba-v2023", "--workload", "p.csv",
                                  "--nodes", "n.csv", "--policy", "pack", "--json", "r.json"], cwd=Path(d),
              outputs=("r.json",))


# ----------------------------------------------------------------- probe and monitor
#: hostile values for --interval and --count, less those that are a valid request for a long run
#: (--count 1e9 asks for 10^9 samples, --interval 1_000 for 1,000 s between them)
SHORT_RUN_NUMBERS = [v for v in HOSTILE_NUMBERS if v not in ("1e9", "1_000")]
COUNTER_TEXTS = ["0", "1000", "-5", "1" + "0" * 25, "abc", "", "\xff", "1e25", " 12 ", "9" * 5000, "12.5",
                 "18446744073709551616", "+7"]


@st.composite
def powercap_case(draw):
    log: list[str] = []
    draw = recorder(draw, log)
    zones = []
    for i in range(draw(st.integers(1, 3))):
        zones.append({
            "dir": draw(st.sampled_from([f"intel-rapl:{i}", f"intel-rapl:0:{i}", f"intel-rapl:{i}x", "intel-rapl:"])),
            "name": draw(st.sampled_from(["package-0", "dram", "core", "psys", "\xff\x00", "x" * 300, ""])),
            "energy": draw(st.sampled_from(COUNTER_TEXTS + ["<dir>", "<missing>"])),
            "max": draw(st.sampled_from(["262143328850", "0", "-1", "abc", "<missing>", "1" + "0" * 30])),
        })
    root = draw(st.sampled_from(["tree", "tree", "tree", "missing", "file", "devnull"]))
    cmd = draw(st.sampled_from([["probe"], ["probe", "--json"], ["monitor", "--count", "2", "--interval", "0.01"],
                                ["monitor", "--count", "2", "--interval", "0.01", "--json"],
                                ["monitor", "--interval", draw(st.sampled_from(SHORT_RUN_NUMBERS)), "--count", "1"],
                                ["monitor", "--count", draw(st.sampled_from(SHORT_RUN_NUMBERS)), "--interval", "0.01"]]))
    return Case(log, zones=zones, root=root, cmd=cmd)


def _powercap(folder: Path, zones) -> Path:
    root = folder / "pc"
    root.mkdir()
    for z in zones:
        p = root / z["dir"]
        if p.exists():
            continue  # two zones drew the same folder: the first one stands
        p.mkdir()
        (p / "name").write_bytes(z["name"].encode("latin-1", "replace"))
        if z["energy"] == "<dir>":
            (p / "energy_uj").mkdir()
        elif z["energy"] != "<missing>":
            (p / "energy_uj").write_bytes(z["energy"].encode("latin-1"))
        if z["max"] != "<missing>":
            (p / "max_energy_range_uj").write_text(z["max"])
    return root


@given(powercap_case())
@fuzz_settings()
def test_probe_and_monitor_hostile_powercap_trees(server, case):
    zones, root_kind, cmd = case.zones, case.root, case.cmd
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        root = _powercap(folder, zones)
        if root_kind == "missing":
            root = folder / "nope"
        elif root_kind == "file":
            root = folder / "file"
            root.write_text("x")
        elif root_kind == "devnull":
            root = Path("/dev/null")
        rc = check(server, "probe-monitor", cmd + ["--powercap-root", str(root)], folder,
                   env={"TAO_POWERCAP_ROOT": None}, desc=repr(case))
        if root_kind != "tree" and rc == 0:
            _fail("accepted a powercap root with no tree", f"tao {' '.join(cmd)} --powercap-root {root}", "")


# ---------------------------------------------------------------------------- actuate
@st.composite
def actuate_case(draw):
    log: list[str] = []
    draw = recorder(draw, log)
    files = {"scaling_max_freq": "2000000", "cpuinfo_min_freq": "800000", "cpuinfo_max_freq": "3000000"}
    # after a successful --apply the setting is restored, so the files are unchanged then too
    if draw(st.booleans()):
        files[draw(st.sampled_from(sorted(files)))] = draw(st.sampled_from(COUNTER_TEXTS + ["nan", "inf", "-inf"]))
    args = ["actuate", "cpu-freq", "--cpufreq-root", "cf"]
    if draw(st.booleans()):
        args += ["--policy", draw(st.sampled_from(["0", "1", "-1", "nan", "1e9", "x"]))]
    if draw(st.booleans()):
        args += ["--khz", draw(st.sampled_from(HOSTILE_NUMBERS + ["1500000", "900000"]))]
    if draw(st.booleans()):
        args += ["--apply", "--hold", draw(st.sampled_from(["0", "nan", "inf", "-1", "1e400", "abc", "0.01"]))]
    if draw(st.integers(0, 4)) == 0:
        args = ["actuate", "gpu-limit", "--gpu", draw(st.sampled_from(["0", "-1", "nan"])),
                "--watts", draw(st.sampled_from(HOSTILE_NUMBERS))]
    return Case(log, files=files, args=args, policy_dir=draw(st.sampled_from(["policy0", "policyX", "policy00"])))


@given(actuate_case())
@fuzz_settings(max(EXAMPLES // 2, 10))
def test_actuate_hostile_trees_and_flags(server, case):
    files, args, policy_dir = case.files, case.args, case.policy_dir
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        pol = folder / "cf" / policy_dir
        pol.mkdir(parents=True)
        for k, v in files.items():
            (pol / k).write_bytes(v.encode("latin-1") + b"\n")  # as the kernel shows them
        # a failure (exit 2) must leave every file as it was: check() compares them
        check(server, "actuate", args, folder, desc=repr(case))


# ---------------------------------------------------------------- audit and report
@pytest.fixture(scope="module")
def governance_files(tmp_path_factory):
    """A real ledger (from tao simulate --ledger) and its run report."""
    from tao_core.cli.main import main

    d = tmp_path_factory.mktemp("gov")
    wl = d / "w.csv"
    wl.write_text(_csv([WL_HEADER] + WL_ROWS))
    assert main(["simulate", "--cluster", str(CLUSTER), "--workload", str(wl), "--policy", "tao",
                 "--ledger", str(d / "l.jsonl")]) == 0
    assert main(["report", "build", "--ledger", str(d / "l.jsonl"), "--out", str(d / "r.json")]) == 0
    return (d / "l.jsonl").read_bytes(), (d / "r.json").read_bytes(), (d / "l.jsonl.pub").read_bytes()


def _mutate_lines(draw, data: bytes) -> bytes:
    lines = data.split(b"\n")
    kind = draw(st.sampled_from(["flip", "drop", "dup", "swap", "truncate", "insert", "field", "raw"]))
    i = draw(st.integers(0, max(len(lines) - 2, 0)))
    if kind == "flip":
        b = bytearray(data)
        k = draw(st.integers(0, len(b) - 1))
        b[k] = (b[k] + draw(st.integers(1, 255))) % 256
        return bytes(b)
    if kind == "drop":
        del lines[i]
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "swap" and len(lines) > 2:
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif kind == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    elif kind == "insert":
        lines.insert(i, draw(st.sampled_from(governance_values([
            b"[" * 100_000, b'{"seq": NaN}', b"\xff\xfe", b"x" * 300_000, b'{"a": 1e400}', b"{}", b"null",
            b'{"seq": ' + b"9" * 5000 + b"}"]))))
    elif kind == "field":
        try:
            rec = json.loads(lines[i])
        except ValueError:
            return data
        if isinstance(rec, dict) and rec:
            key = draw(st.sampled_from(sorted(rec)))
            raw = draw(st.sampled_from(governance_values(HOSTILE_JSON)))
            rec[key] = "@@V@@"
            lines[i] = json.dumps(rec).replace('"@@V@@"', raw).encode()
    else:
        return draw(st.sampled_from(governance_values([b"", b"\n\n", b"\xff" * 10, b"[" * 100_000, data + b"\xff",
                                                       b"\x00" * 64])))
    return b"\n".join(lines)


@st.composite
def audit_case(draw, ledger_pub):
    log: list[str] = []
    draw = recorder(draw, log)
    ledger, pub = ledger_pub
    data = _mutate_lines(draw, ledger)
    cmd = draw(st.sampled_from([["audit", "verify", "l.jsonl"], ["audit", "verify", "l.jsonl", "--json"],
                                ["audit", "show", "l.jsonl"], ["audit", "verify", "l.jsonl", "--require-closed"],
                                ["audit", "verify", "l.jsonl", "--pubkey", "k.pub"]]))
    keydata = draw(st.sampled_from([pub, pub[:-10], b"\xff" * 20, b"0" * 64, b"-----BEGIN PUBLIC KEY-----\n"]))
    return Case(log, data=data, cmd=cmd, keydata=keydata)


def test_audit_hostile_ledgers(server, governance_files):
    ledger, _, pub = governance_files

    @given(audit_case((ledger, pub)))
    @fuzz_settings()
    def inner(case):
        data, cmd, keydata = case.data, case.cmd, case.keydata
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            (folder / "l.jsonl").write_bytes(data)
            (folder / "k.pub").write_bytes(keydata)
            check(server, "audit", cmd, folder, tamper_codes=(1, 3), desc=repr(case))

    inner()


@st.composite
def report_case(draw, files):
    log: list[str] = []
    draw = recorder(draw, log)
    ledger, report = files
    which = draw(st.sampled_from(["build", "validate", "render", "merge", "validate-ledger"]))
    rep = report
    led = ledger
    if which == "build":
        led = _mutate_lines(draw, ledger)
    else:
        rep = _mutate_lines(draw, report) if draw(st.booleans()) else _mutate_json(draw, report)
    targets = ["o.json", "o.json", "missing/o.json"]
    targets += [] if "out-device" in GOVERNANCE_PENDING else ["dfull", "dnull"]
    targets += [] if "out-folder" in GOVERNANCE_PENDING else ["ofolder"]
    out = draw(st.sampled_from(targets))
    cmd = {"build": ["report", "build", "--ledger", "l.jsonl", "--out", out],
           "validate": ["report", "validate", "r.json"],
           "validate-ledger": ["report", "validate", "r.json", "--ledger", "l.jsonl"],
           "render": ["report", "render", "r.json", "--format", draw(st.sampled_from(["md", "html"])), "--out",
                      out.replace(".json", ".md")],
           "merge": ["report", "merge", "r.json", "r.json", "--out", out]}[which]
    return Case(log, led=led, rep=rep, cmd=cmd)


def _mutate_json(draw, data: bytes) -> bytes:
    doc = json.loads(data)
    path = []
    node = doc
    for _ in range(draw(st.integers(1, 3))):
        if isinstance(node, dict) and node:
            k = draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            k = draw(st.integers(0, len(node) - 1))
        else:
            break
        path.append(k)
        node = node[k]
    if not path:
        return data
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = "@@V@@"
    return json.dumps(doc).replace('"@@V@@"', draw(st.sampled_from(governance_values(HOSTILE_JSON)))).encode()


def test_report_hostile_reports_and_ledgers(server, governance_files):
    ledger, report, _ = governance_files

    @given(report_case((ledger, report)))
    @fuzz_settings()
    def inner(case):
        led, rep, cmd = case.led, case.rep, case.cmd
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            (folder / "l.jsonl").write_bytes(led)
            (folder / "r.json").write_bytes(rep)
            (folder / "ofolder").mkdir()
            private_device(folder / "dfull", "full")
            private_device(folder / "dnull", "null")
            out = cmd[cmd.index("--out") + 1] if "--out" in cmd else None
            # render to md or html also writes its charts beside the page: OUT-STEM-<chart>.png
            outs = () if out is None else (out,) + tuple(
                f"{out.rsplit('.', 1)[0]}-{c}.png" for c in ("components", "facility", "groups", "nodes"))
            check(server, "report", cmd, folder, tamper_codes=(1,), outputs=outs, desc=repr(case))
        _devices_intact()

    inner()


def _governance_case(kind: str):
    """(argv, files {name: bytes}, expected exit codes) of one known governance failure."""
    deep = b"[" * 100_000 + b"]" * 100_000
    return {
        "audit-verify-deep-line": (["audit", "verify", "bad.jsonl"], {"bad.jsonl": "LEDGER+" + "deep"}, (1, 2)),
        "audit-show-deep-line": (["audit", "show", "bad.jsonl"], {"bad.jsonl": "LEDGER+" + "deep"}, (1, 2)),
        "report-build-deep-line": (["report", "build", "--ledger", "bad.jsonl", "--out", "o.json"],
                                   {"bad.jsonl": "LEDGER+" + "deep"}, (2,)),
        "report-validate-deep": (["report", "validate", "bad.json"], {"bad.json": deep}, (1, 2)),
        "report-validate-deep-field": (["report", "validate", "bad.json"], {"bad.json": "REPORT+deepfield"}, (1, 2)),
        "report-render-deep": (["report", "render", "bad.json", "--format", "md", "--out", "o.md"],
                               {"bad.json": deep}, (2,)),
        "report-merge-deep": (["report", "merge", "bad.json", "r.json", "--out", "o.json"], {"bad.json": deep}, (2,)),
        "report-build-out-folder": (["report", "build", "--ledger", "l.jsonl", "--out", "ofolder"], {}, (2,)),
        "report-render-out-folder": (["report", "render", "r.json", "--format", "md", "--out", "ofolder"], {}, (2,)),
        "report-merge-out-folder": (["report", "merge", "r.json", "r.json", "--name", "a", "--name", "b",
                                     "--out", "ofolder"], {}, (2,)),
        "report-build-out-device": (["report", "build", "--ledger", "l.jsonl", "--out", "dnull"], {}, (2,)),
        "report-render-out-device": (["report", "render", "r.json", "--format", "html", "--out", "dnull"], {}, (2,)),
        "report-merge-out-device": (["report", "merge", "r.json", "r.json", "--name", "a", "--name", "b",
                                     "--out", "dfull"], {}, (2,)),
    }[kind]


GOVERNANCE_CASES = [
    ("deep-json", "audit-verify-deep-line"), ("deep-json", "audit-show-deep-line"),
    ("deep-json", "report-build-deep-line"), ("deep-json", "report-validate-deep"),
    ("deep-json", "report-validate-deep-field"), ("deep-json", "report-render-deep"),
    ("deep-json", "report-merge-deep"),
    ("out-folder", "report-build-out-folder"), ("out-folder", "report-render-out-folder"),
    ("out-folder", "report-merge-out-folder"),
    ("out-device", "report-build-out-device"), ("out-device", "report-render-out-device"),
    ("out-device", "report-merge-out-device"),
]


@pytest.mark.parametrize("cls,kind", [
    pytest.param(cls, kind, id=kind, marks=pytest.mark.xfail(
        cls in GOVERNANCE_PENDING, strict=True, reason=f"known failure of tao audit/report ({cls}): see GOVERNANCE_PENDING"))
    for cls, kind in GOVERNANCE_CASES])
def test_governance_known_failures(tmp_path, governance_files, cls, kind):
    """Each exact input the fuzz found failing in tao audit / tao report, through the real entry point."""
    ledger, report, _ = governance_files
    argv, files, codes = _governance_case(kind)
    (tmp_path / "l.jsonl").write_bytes(ledger)
    (tmp_path / "r.json").write_bytes(report)
    (tmp_path / "ofolder").mkdir()
    private_device(tmp_path / "dnull", "null")
    private_device(tmp_path / "dfull", "full")
    for name, data in files.items():
        if data == "LEDGER+deep":
            lines = ledger.split(b"\n")
            data = b"\n".join(lines[:3] + [b"[" * 100_000 + b"]" * 100_000] + lines[3:])
        elif data == "REPORT+deepfield":
            doc = json.loads(report)
            doc["controller"] = "@@V@@"
            data = json.dumps(doc).replace('"@@V@@"', "[" * 10_000 + "]" * 10_000).encode()
        (tmp_path / name).write_bytes(data)
    before = _listing(tmp_path)
    r = subprocess.run([sys.executable, "-m", "tao_core.cli.main", *argv], cwd=tmp_path, capture_output=True,
                       text=True, timeout=CASE_TIMEOUT_S, preexec_fn=_limits, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode in codes, (r.returncode, r.stderr[-1000:])
    if r.returncode == 2:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _listing(tmp_path) == before  # nothing written, no device replaced


# ------------------------------------------------- the same through the real entry point
def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024 ** 3, 4 * 1024 ** 3))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 65))


@pytest.mark.parametrize("argv", [
    ["simulate", "--cluster", "c.json", "--workload", "w.csv", "--budget-w", "inf"],
    ["simulate", "--cluster", "big.json", "--workload", "w.csv"],
    ["simulate", "--cluster", "c.json", "--workload", "w.csv", "--json", "o.json", "--ledger", "o.json"],
    ["simulate", "--cluster", "c.json", "--workload", "w.csv", "--json", "dfull"],
    ["probe", "--powercap-root", "/nonexistent"],
    ["actuate", "cpu-freq", "--cpufreq-root", ".", "--policy", "0", "--khz", "1", "--apply", "--hold", "nan"],
])
def test_real_entry_point_agrees(tmp_path, argv):
    (tmp_path / "c.json").write_bytes(CLUSTER.read_bytes())
    (tmp_path / "w.csv").write_text(_csv([WL_HEADER] + WL_ROWS))
    big = json.loads(CLUSTER.read_text())
    big["node_types"][0]["count"] = 1e9  # once grew memory to 21 GB
    (tmp_path / "big.json").write_text(json.dumps(big))
    private_device(tmp_path / "dfull", "full")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "tao_core.cli.main", *argv], cwd=tmp_path, capture_output=True,
                       text=True, timeout=CASE_TIMEOUT_S, preexec_fn=_limits,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert stat.S_ISCHR(os.lstat(tmp_path / "dfull").st_mode)


def test_output_into_a_read_only_folder_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a folder without write permission, so there is nothing to refuse")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    (tmp_path / "w.csv").write_text(_csv([WL_HEADER] + WL_ROWS))
    r = subprocess.run([sys.executable, "-m", "tao_core.cli.main", "simulate", "--cluster", str(CLUSTER),
                        "--workload", "w.csv", "--policy", "pack", "--json", "ro/o.json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert list(ro.iterdir()) == []
