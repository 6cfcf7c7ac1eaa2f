"""Safe input reads and output writes (tao_core.files), on real files, FIFOs and links."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from tao_core.errors import InputError
from tao_core.files import (
    OutputSet, PendingOutput, check_output_path, load_json_file, read_input_text, write_output,
)


def test_write_output_replaces_a_regular_file_whole(tmp_path):
    t = tmp_path / "out.json"
    t.write_text("old")
    write_output(t, "new", "--out")
    assert t.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder", "device"])
def test_refuses_what_is_not_a_regular_file(tmp_path, kind):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    t = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(t)
    elif kind == "symlink":
        t.symlink_to(victim)
    elif kind == "folder":
        t.mkdir()
    else:  # a private copy of /dev/null: the machine's own is never a target
        try:
            os.mknod(t, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating device nodes needs root (CAP_MKNOD)")
    with pytest.raises(InputError, match="--json"):
        write_output(t, "x", "--json")
    assert victim.read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temp_names_are_random_and_never_follow_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    t = tmp_path / "LEDGER.pub"
    for planted in (f"{t.name}.tmp", f".{t.name}.tmp{os.getpid()}"):
        (tmp_path / planted).symlink_to(victim)
    write_output(t, "pub", "--pub")
    assert victim.read_text() == "keep" and t.read_text() == "pub"


def test_same_file_as_another_input_or_output_is_refused(tmp_path):
    a = tmp_path / "a.json"
    with pytest.raises(InputError, match="same file as --ledger"):
        OutputSet([("--json", a), ("--ledger", a)])
    inp = tmp_path / "in.json"
    inp.write_text("{}")
    with pytest.raises(InputError, match="same file as --cluster"):
        check_output_path(inp, "--out", others=[("--cluster", inp)])


def test_an_output_set_writes_all_or_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(RuntimeError):
        with OutputSet([("--a", a), ("--b", b)]) as outs:
            outs["--a"].write("1")
            outs["--b"].write("2")
            raise RuntimeError("half way")
    assert list(tmp_path.iterdir()) == []
    with OutputSet([("--a", a), ("--b", b)]) as outs:
        outs["--a"].write("1")
        outs["--b"].write("2")
    assert a.read_text() == "1" and b.read_text() == "2"


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_output(tmp_path / "nope" / "x.json", "x", "--out")


def test_sigterm_removes_pending_temporaries(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from tao_core.files import PendingOutput, install_signal_cleanup
        install_signal_cleanup()
        out = PendingOutput({str(tmp_path / 'ledger.jsonl')!r}, "--ledger")
        out.write("partial")
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 128 + 15, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_pending_output_keeps_a_given_mode(tmp_path):
    with PendingOutput(tmp_path / "k.key", "--key", mode=0o600) as out:
        out.write("secret")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content,match", [
    (b"\xff\xfe{", "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a": NaN}', "not a JSON number"),
    (b'{"a": ', "not valid JSON"),
])
def test_bad_json_inputs_are_one_clear_error(tmp_path, content, match):
    p = tmp_path / "in.json"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match) as ei:
        load_json_file(p, "--cluster")
    assert "--cluster" in str(ei.value) and "\n" not in str(ei.value)


def test_inputs_that_are_not_regular_files_or_too_big_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_input_text(fifo, "--workload")  # would block for ever if opened for reading
    with pytest.raises(InputError, match="is a folder"):
        read_input_text(tmp_path, "--workload")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(InputError, match="more than the 1000"):
        read_input_text(big, "--workload", max_bytes=1000)
    with pytest.raises(InputError, match="no such file"):
        read_input_text(tmp_path / "missing", "--workload")


def test_staged_output_is_written_by_path_in_a_private_folder(tmp_path):
    from tao_core.files import StagedOutput

    t = tmp_path / "ledger.jsonl"
    out = StagedOutput(t, "--ledger")
    assert out.folder.parent == tmp_path and out.folder.stat().st_mode & 0o777 == 0o700
    out.path.write_text("records")  # as a writer that only takes a path does
    assert not t.exists()
    out.commit()
    assert t.read_text() == "records" and [p.name for p in tmp_path.iterdir()] == ["ledger.jsonl"]
    gone = StagedOutput(tmp_path / "plot.png", "--plot")
    (gone.folder / "tmp-name.png").write_bytes(b"png")
    gone.take(gone.folder / "tmp-name.png")
    gone.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.jsonl"]


def test_staged_output_refuses_a_target_that_became_a_link(tmp_path):
    from tao_core.files import StagedOutput

    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = StagedOutput(tmp_path / "out", "--plot")
    out.path.write_text("new")
    (tmp_path / "out").symlink_to(victim)  # planted after the check, before the rename
    with pytest.raises(InputError, match="symbolic link"):
        out.commit()
    assert victim.read_text() == "keep" and not out.folder.exists()


def test_sigterm_removes_staged_folders(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from tao_core.files import StagedOutput, install_signal_cleanup
        install_signal_cleanup()
        out = StagedOutput({str(tmp_path / 'ledger.jsonl')!r}, "--ledger")
        out.path.write_text("partial")
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 128 + 15, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_text_never_writes_nan_or_infinity():
    from tao_core.files import json_text

    assert json_text({"a": [1.5, 2]}, "--json") == '{\n  "a": [\n    1.5,\n    2\n  ]\n}\n'
    with pytest.raises(InputError, match=r"--json: .*not finite at policies.tao.energy_j"):
        json_text({"policies": {"tao": {"energy_j": float("inf")}}}, "--json")
    with pytest.raises(InputError, match=r"not finite at x\[1\]"):
        json_text({"x": [0.0, float("nan")]}, "--json")


def test_read_csv_names_the_row_and_the_problem(tmp_path):
    from tao_core.files import read_csv

    p = tmp_path / "w.csv"
    p.write_text("a,b\n1,2\n\n3,4\n")
    header, rows = read_csv(p, "--workload", max_rows=10)
    assert header == ["a", "b"] and list(rows) == [(2, ["1", "2"]), (4, ["3", "4"])]
    cases = [
        ("a,b\n1,2\n3\n", "row 3: 1 fields, the header has 2"),
        ("a,b\n1," + "x" * 140_000 + "\n", "row 2: malformed CSV .*longer than 131072"),
        ("a,b\n1,2\n3,4\n5,6\n", "more than 2 tasks"),
        ("", "empty file"),
    ]
    for text, match in cases:
        p.write_text(text)
        with pytest.raises(InputError, match=match) as ei:
            header, rows = read_csv(p, "--workload", max_rows=2, what="task")
            list(rows)
        assert str(ei.value).startswith(f"--workload {p}") and "\n" not in str(ei.value)


@pytest.mark.parametrize("value,match", [
    ("nan", "not a finite number"), ("inf", "not a finite number"), ("1e400", "not a finite number"),
    (10 ** 400, "too large"), ("abc", "not a number"), ("", "missing"), (True, "missing"), (None, "missing"),
    ("-1", "out of range: it must be >= 0 and <= 10"), ("11", "out of range"), ("2.5", "not a whole number"),
    ("x" * 100_000, "not a number"),
])
def test_number_refuses_what_is_not_a_finite_number_in_range(value, match):
    from tao_core.files import number

    with pytest.raises(InputError, match=match) as ei:
        number(value, "--count", lo=0, hi=10, integer=True)
    msg = str(ei.value)
    assert msg.startswith("--count: ") and len(msg) < 200


def test_number_and_name_accept_good_values():
    from tao_core.files import name, number

    assert number(" 2 ", "--x", lo=0, hi=10) == 2.0 and number(5, "--x", lo=0, lo_open=True) == 5.0
    with pytest.raises(InputError, match="must be > 0"):
        number(0, "--x", lo=0, lo_open=True)
    assert name("  node-a ", "name") == "node-a"
    for bad, match in (("a\nb", "control characters"), ("x" * 300, "more than the 256"), ("", "empty"),
                       (3, "not text")):
        with pytest.raises(InputError, match=match):
            name(bad, "name")
