"""`tao audit` and `tao report`: exit codes and outputs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from governance_fixtures import write_run
from tao_core.cli.main import main
from tao_core.governance import Ledger


@pytest.fixture()
def ledger(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, checkpoint_every=10)
    return path


def test_audit_verify_exit_codes(ledger, tmp_path, capsys):
    pub = str(ledger) + ".pub"
    assert main(["audit", "verify", str(ledger)]) == 0
    assert main(["audit", "verify", str(ledger), "--pubkey", pub, "--require-closed"]) == 0
    assert "OK:" in capsys.readouterr().out
    # another signer's key
    Ledger(tmp_path / "other.jsonl").close()
    assert main(["audit", "verify", str(ledger), "--pubkey", str(tmp_path / "other.jsonl.pub")]) == 1
    assert "not by the given public key" in capsys.readouterr().err
    # a modified record in the middle names its sequence number
    lines = ledger.read_bytes().splitlines(keepends=True)
    orig = ledger.read_bytes()
    lines[7] = lines[7].replace(b'"energy_j":', b'"energy_j":1', 1) if b'"energy_j":' in lines[7] else lines[7].replace(b'"t_s":', b'"t_s":1', 1)
    ledger.write_bytes(b"".join(lines))
    assert main(["audit", "verify", str(ledger)]) == 1
    err = capsys.readouterr().err
    assert "FAILED at seq 8 " in err or "FAILED at seq 9 " in err
    # a torn last line: exit 3, says how many records verified
    n = orig.count(b"\n")
    ledger.write_bytes(orig + b'{"hash":"ab')
    assert main(["audit", "verify", str(ledger)]) == 3
    assert f"TORN: {n} record(s) verified" in capsys.readouterr().err
    # unclosed (final checkpoint removed): 0, or 1 with --require-closed
    ledger.write_bytes(b"".join(orig.splitlines(keepends=True)[:-1]))
    assert main(["audit", "verify", str(ledger)]) == 0
    assert main(["audit", "verify", str(ledger), "--require-closed"]) == 1
    assert "not closed" in capsys.readouterr().err
    # usage errors
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "junk.pub").write_text("not a key")
    assert main(["audit", "verify", str(ledger), "--pubkey", str(tmp_path / "junk.pub")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify"])
    assert exc.value.code == 2


def test_audit_show(ledger, capsys):
    assert main(["audit", "show", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "per kind" in out and "energy=27" in out and "decision=25" in out and "head hash" in out
    assert main(["audit", "show", str(ledger), "--json", "--pubkey", str(ledger) + ".pub"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["signer_authenticated"] is True and d["closed"] is True and d["records_per_kind"]["summary"] == 1


def test_report_build_validate_merge(ledger, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["report", "build", "--ledger", str(ledger), "--out", str(out), "--carbon-intensity", "300"]) == 0
    assert main(["report", "validate", str(out)]) == 0
    assert "VALID" in capsys.readouterr().out
    # rebuilt from the ledger: same figures
    assert main(["report", "validate", str(out), "--ledger", str(ledger), "--pubkey", str(ledger) + ".pub"]) == 0
    assert "same figures" in capsys.readouterr().out
    # md and html
    assert main(["report", "build", "--ledger", str(ledger), "--format", "html", "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "build", "--ledger", str(ledger), "--format", "md"]) == 2  # md needs --out
    # a changed report: integrity fails (exit 1), nothing else needed
    rep = json.loads(out.read_text())
    rep["energy"]["facility_energy_j"] = 1.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rep))
    assert main(["report", "validate", str(bad)]) == 1
    assert "integrity" in capsys.readouterr().err
    # a consistently re-sealed forgery passes the schema, but not the check against the ledger
    from tao_core.governance.validate import seal
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(seal(rep)))
    assert main(["report", "validate", str(forged)]) == 0
    assert main(["report", "validate", str(forged), "--ledger", str(ledger)]) == 1
    assert "differs from the report rebuilt" in capsys.readouterr().err
    del rep["subject"]
    (tmp_path / "nosubj.json").write_text(json.dumps(rep))
    assert main(["report", "validate", str(tmp_path / "nosubj.json")]) == 1
    (tmp_path / "notjson.json").write_text("{")
    assert main(["report", "validate", str(tmp_path / "notjson.json")]) == 2
    # merge: a tampered input is rejected and nothing is written
    p2 = tmp_path / "b.jsonl"
    write_run(p2, run_id="run-b")
    out2 = tmp_path / "r2.json"
    assert main(["report", "build", "--ledger", str(p2), "--out", str(out2), "--carbon-intensity", "300"]) == 0
    merged = tmp_path / "m.json"
    assert main(["report", "merge", str(out), str(bad), "--out", str(merged)]) == 2
    assert not merged.exists()
    assert main(["report", "merge", str(out), str(out2), "--out", str(merged), "--name", "north", "--name", "south"]) == 0
    assert main(["report", "validate", str(merged)]) == 0
    m = json.loads(merged.read_text())
    assert [x["cluster"] for x in m["federation"]["members"]] == ["north", "south"]
    # a federated report renders; a changed one does not
    assert main(["report", "render", str(merged), "--format", "md", "--out", str(tmp_path / "m.md")]) == 0
    assert "## Federation members" in (tmp_path / "m.md").read_text()
    assert main(["report", "render", str(bad), "--format", "html", "--out", str(tmp_path / "bad.html")]) == 2
    assert not (tmp_path / "bad.html").exists()
    # a tampered ledger: build refuses with exit 2
    data = ledger.read_bytes()
    ledger.write_bytes(data.replace(b'"policy":"tao"', b'"policy":"tAo"', 1))
    assert main(["report", "build", "--ledger", str(ledger)]) == 2
    assert "fails verification" in capsys.readouterr().err


def test_console_script_runs(ledger):
    proc = subprocess.run([sys.executable, "-m", "tao_core.cli.main", "audit", "verify", str(ledger)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("OK:")


def test_signed_reports(ledger, tmp_path, capsys):
    key, pub = str(ledger) + ".key", str(ledger) + ".pub"
    out = tmp_path / "s.json"
    assert main(["report", "build", "--ledger", str(ledger), "--out", str(out), "--sign-key", key]) == 0
    assert main(["report", "validate", str(out), "--pubkey", pub]) == 0
    assert "signed by key" in capsys.readouterr().out
    Ledger(tmp_path / "other.jsonl").close()
    assert main(["report", "validate", str(out), "--pubkey", str(tmp_path / "other.jsonl.pub")]) == 1
    assert "not by the given public key" in capsys.readouterr().err
    # re-sealing a changed report keeps the digest consistent, but the signature fails
    from tao_core.governance.validate import seal
    rep = json.loads(out.read_text())
    sig = rep["integrity"]["signature"]
    rep["energy"]["it_energy_j"] = 1.0
    seal(rep)
    rep["integrity"]["signature"] = sig
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(rep))
    assert main(["report", "validate", str(forged)]) == 1
    assert "bad signature" in capsys.readouterr().err
    # an unsigned report with --pubkey: nothing to check it against
    unsigned = tmp_path / "u.json"
    assert main(["report", "build", "--ledger", str(ledger), "--out", str(unsigned)]) == 0
    assert main(["report", "validate", str(unsigned), "--pubkey", pub]) == 1
    assert main(["report", "validate", str(unsigned), "--pubkey", pub, "--ledger", str(ledger)]) == 0
    # merge keeps each member's signer and rejects the forged one
    merged = tmp_path / "m.json"
    assert main(["report", "merge", str(out), str(forged), "--out", str(merged)]) == 2
    p2 = tmp_path / "b.jsonl"
    write_run(p2, run_id="run-b")
    out2 = tmp_path / "b.json"
    assert main(["report", "build", "--ledger", str(p2), "--out", str(out2)]) == 0
    assert main(["report", "merge", str(out), str(out2), "--out", str(merged), "--sign-key", key]) == 0
    m = json.loads(merged.read_text())
    assert [x["signer_key_id"] for x in m["federation"]["members"]] == [
        json.loads(out.read_text())["integrity"]["signature"]["key_id"], None]
    assert main(["report", "validate", str(merged), "--pubkey", pub]) == 0
