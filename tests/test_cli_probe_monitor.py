"""`tao probe` and `tao monitor` run as real subprocesses.

For `tao monitor` the fake powercap tree moves deterministically: each ``energy_uj`` is a
named pipe, and a feeder thread hands the CLI the next counter value each time it opens the
file (as the kernel computes a fresh value at each open), so the joules printed are known
exactly whatever the timing.
"""
from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


def tao(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    e = dict(os.environ, **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "tao_core.cli.main", *args], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def fifo_zone(path: Path, name: str, max_uj: int) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    os.mkfifo(path / "energy_uj")
    return path / "energy_uj"


def _reader_holds(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def _unread_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


def feed(fifo: Path, values: list[int], pid_box: list, errors: list) -> None:
    """Give the reader one value per open of ``fifo``: wait for a reader, write the value,
    wait until it is read, close (the reader sees end of file), wait until the reader has
    closed its end, then serve the next open."""
    deadline = time.monotonic() + TIMEOUT_S

    def wait(cond, what):
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{fifo}: {what}")
            time.sleep(0.002)

    try:
        for v in values:
            while True:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                        raise
                    time.sleep(0.002)
            try:
                os.write(fd, f"{v}\n".encode())
                wait(lambda: _unread_bytes(fd) == 0, "value never read")
            finally:
                os.close(fd)
            wait(lambda: not _reader_holds(pid_box[0], str(fifo)), "reader kept the file open")
    except Exception as exc:  # reported by the test
        errors.append(f"{fifo}: {exc!r}")


def test_monitor_json_over_moving_tree_with_wrap(tmp_path):
    root = tmp_path / "powercap"
    big = 262143328850
    # values per open: RaplSource baseline, the CLI's first reading, sample 1, sample 2
    zones = {
        "package-0": (fifo_zone(root / "intel-rapl:0", "package-0", 1_000_000), [900_000, 950_000, 100_000, 600_000]),
        "core-0": (fifo_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", big), [0, 0, 1_000_000, 1_500_000]),
        "dram-0": (fifo_zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", big), [0, 1_000, 2_001_000, 5_001_000]),
        "package-1": (fifo_zone(root / "intel-rapl:1", "package-1", big), [10, 10, 3_000_010, 3_000_010]),
        "dram-1": (fifo_zone(root / "intel-rapl:1" / "intel-rapl:1:0", "dram", big), [7, 7, 7, 250_007]),
    }
    pid_box: list = []
    errors: list = []
    threads = [threading.Thread(target=feed, args=(f, vals, pid_box, errors), daemon=True) for f, vals in zones.values()]
    proc = tao("monitor", "--powercap-root", str(root), "--interval", "1", "--count", "2", "--json",
               env={"TAO_POWERCAP_ROOT": ""})
    pid_box.append(proc.pid)
    for t in threads:
        t.start()
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    for t in threads:
        t.join(timeout=5)
    assert not errors, errors
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 2
    want = [
        {"package-0": 0.15, "core-0": 1.0, "dram-0": 2.0, "package-1": 3.0, "dram-1": 0.0},
        {"package-0": 0.65, "core-0": 1.5, "dram-0": 5.0, "package-1": 3.0, "dram-1": 0.25},
    ]
    for line, exp in zip(lines, want):
        assert set(line) == {"t_s", "domains"}
        got = {k: v["energy_j"] for k, v in line["domains"].items() if k in exp}
        assert got == {k: pytest.approx(v, abs=1e-9) for k, v in exp.items()}
        assert all(v["source"] == "measured-rapl" for v in line["domains"].values())
    # power over the second interval is that interval's joules over its seconds
    dt = lines[1]["t_s"] - lines[0]["t_s"]
    assert lines[1]["domains"]["package-0"]["power_w"] == pytest.approx(0.5 / dt)
    assert lines[1]["domains"]["package-1"]["power_w"] == 0.0


def test_monitor_bad_arguments_exit_2_with_one_line(capsys):
    from tao_core.cli.main import main

    for args in (["--interval", "0"], ["--interval", "abc"], ["--count", "0"], ["--count", "x"]):
        assert main(["monitor", *args]) == 2, args
        cap = capsys.readouterr()
        assert cap.out == "" and len(cap.err.strip().splitlines()) == 1, cap.err
        assert cap.err.startswith("tao monitor: error: --"), cap.err


def test_monitor_unreadable_root_exits_2_as_a_process(tmp_path):
    p = tao("monitor", "--powercap-root", str(tmp_path / "missing"), "--count", "1")
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no powercap tree" in err, err


def test_probe_json_reports_each_candidate_with_reason(tmp_path):
    p = tao("probe", "--json", env={"TAO_POWERCAP_ROOT": str(tmp_path / "no-powercap")})
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err
    rep = json.loads(out)
    c = {x["name"]: x for x in rep["candidates"]}
    assert set(c) == {"rapl", "pyrapl", "nvml", "thermal", "modeled"}
    assert not c["rapl"]["found"] and "no powercap tree" in c["rapl"]["reason"]
    assert c["modeled"]["chosen"] and c["modeled"]["reason"]
    assert c["nvml"]["reason"]
    node = [d for d in rep["domains"] if d["domain"] == "node"]
    assert node and node[0]["source"] == "modeled"


def test_monitor_table_without_json(tmp_path):
    p = tao("monitor", "--interval", "0.2", "--count", "2", env={"TAO_POWERCAP_ROOT": str(tmp_path / "none")})
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert "node W" in lines[0] and "modeled" in lines[1] and len(lines) == 4


def _denied_tree(tmp_path, monkeypatch):
    import builtins

    from tao_core.telemetry import rapl

    for zid, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "dram")):
        p = tmp_path / "pc" / zid
        p.mkdir(parents=True)
        (p / "name").write_text(name)
        (p / "energy_uj").write_text("1")
        (p / "max_energy_range_uj").write_text("1000")
    real_open = builtins.open

    def guarded_open(file, *a, **kw):
        if str(file).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(rapl, "open", guarded_open, raising=False)
    return tmp_path / "pc"


def test_probe_and_monitor_on_root_only_counters(tmp_path, monkeypatch, capsys):
    from tao_core.cli.main import main

    root = _denied_tree(tmp_path, monkeypatch)
    assert main(["probe", "--powercap-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "permission denied" in out and "fix:" in out and "udev" in out
    assert main(["monitor", "--powercap-root", str(root), "--count", "1", "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.strip().splitlines()) == 1
    assert "permission denied" in cap.err and "fix:" in cap.err


@pytest.mark.parametrize("root", ["missing", "file", "empty"])
def test_probe_with_a_powercap_root_holding_no_rapl_exits_2(tmp_path, root):
    path = tmp_path / root
    if root == "file":
        path.write_text("x")
    elif root == "empty":
        path.mkdir()
    p = tao("probe", "--powercap-root", str(path))
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"tao probe: error: --powercap-root {path}: ")


def _garbage_tree(root: Path) -> Path:
    z = root / "intel-rapl:0"
    z.mkdir(parents=True)
    (z / "name").write_text("package-0\n")
    (z / "energy_uj").write_text("not-a-counter\n")
    (z / "max_energy_range_uj").write_text("262143328850\n")
    return root


def test_probe_and_monitor_on_a_non_numeric_counter_exit_2_without_traceback(tmp_path):
    root = _garbage_tree(tmp_path / "pc")
    for args in (("probe", "--json"), ("monitor", "--count", "1", "--interval", "0.01", "--json")):
        p = tao(*args, "--powercap-root", str(root))
        out, err = p.communicate(timeout=TIMEOUT_S)
        assert p.returncode == 2 and out == "" and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and "not a whole number" in err, err
    # without --powercap-root the same tree (through the environment) falls back to the estimator
    p = tao("probe", "--json", env={"TAO_POWERCAP_ROOT": str(root)})
    out, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err
    c = {x["name"]: x for x in json.loads(out)["candidates"]}
    assert not c["rapl"]["chosen"] and "not a whole number" in c["rapl"]["reason"] and c["modeled"]["chosen"]


@pytest.mark.parametrize("args,needle", [
    (["--interval", "1e300"], "--interval: '1e300' is out of range"),
    (["--interval", "nan"], "--interval: 'nan' is not a finite number"),
    (["--count", "2.5"], "--count: '2.5' is not a whole number"),
])
def test_monitor_flags_out_of_range(capsys, args, needle):
    from tao_core.cli.main import main

    assert main(["monitor", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
