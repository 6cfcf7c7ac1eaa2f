"""Ledger: hash chain, signatures, tamper detection, torn tails, crash safety."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tao_core.errors import InputError
from tao_core.governance import Ledger, load_public_key, verify_ledger
from tao_core.governance.canonical import canonical_bytes, sha256_hex
from tao_core.governance.verify import verify_bytes

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_ledger(tmp_path: pathlib.Path, n: int = 7, every: int = 3) -> pathlib.Path:
    path = tmp_path / "run.jsonl"
    with Ledger(path, checkpoint_every=every) as led:
        led.append("config", {"run_id": "r1", "engine": "sim", "policy": "tao"})
        for i in range(n):
            led.append("energy", {"scope": "task", "id": f"t{i}", "energy_j": 1.5 * i, "note": "héllo"})
    return path


def lines_of(path: pathlib.Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_roundtrip_and_format(tmp_path):
    path = tmp_path / "l.jsonl"
    with Ledger(path, checkpoint_every=2) as led:
        assert led.append("config", {"run_id": "x"}) == 2  # seq 1 is the header
        # header + config make 2 records: a checkpoint takes seq 3
        assert led.append("decision", {"cost": float("inf"), "v": float("nan")}) == 4
        seq = led.append("energy", {"energy_j": 3.0})
    assert seq == 5  # then a checkpoint at 6 and the final one at 7
    res = verify_ledger(path, load_public_key(str(path) + ".pub"), collect=True)
    assert res.status == "intact" and res.exit_code == 0 and res.closed
    assert res.records == 7 and res.checkpoints == 3
    assert res.pubkey_checked and res.key_ids
    recs = res.records_list
    assert [r["seq"] for r in recs] == list(range(1, 8))
    assert recs[0]["kind"] == "ledger" and recs[0]["prev"] == "0" * 64
    assert recs[3]["payload"] == {"cost": "inf", "v": "nan"}
    raw = path.read_bytes().splitlines()
    for i, line in enumerate(raw):
        rec = json.loads(line)
        assert canonical_bytes(rec) == line
        own = sha256_hex(canonical_bytes({k: v for k, v in rec.items() if k != "hash"}))
        assert rec["hash"] == own
        if i:
            assert rec["prev"] == json.loads(raw[i - 1])["hash"]
    assert res.head_hash == json.loads(raw[-1])["hash"]
    # the private key is never written into the ledger
    key_pem = (tmp_path / "l.jsonl.key").read_bytes()
    body = b"".join(key_pem.splitlines()[1:-1])
    assert body not in path.read_bytes()
    assert oct((tmp_path / "l.jsonl.key").stat().st_mode & 0o777) == "0o600"


def test_every_byte_flip_fails(tmp_path):
    path = small_ledger(tmp_path)
    data = path.read_bytes()
    starts = []  # (offset, seq) of each line
    off = 0
    for seq, line in enumerate(lines_of(path), start=1):
        starts.append((off, seq))
        off += len(line)
    pub = load_public_key(str(path) + ".pub")
    assert verify_bytes(data, pubkey=pub).exit_code == 0
    checked = 0
    for i in range(len(data)):
        seq_of_byte = max(s for o, s in starts if o <= i)
        for mask, key in ((0x01, None), (0x20, None), (0xFF, pub)):
            bad = bytearray(data)
            bad[i] ^= mask
            if True:
                res = verify_bytes(bytes(bad), pubkey=key)
                assert res.exit_code == 1, (i, mask, res.message())
                assert res.first_bad_seq in (seq_of_byte, seq_of_byte + 1), (i, mask, res.message())
                checked += 1
    assert checked == len(data) * 3


def test_delete_reorder_insert_name_the_seq(tmp_path):
    path = small_ledger(tmp_path, n=10, every=4)
    lines = lines_of(path)
    n = len(lines)
    for k in range(1, n + 1):  # delete record k (1-based)
        res = verify_bytes(b"".join(lines[: k - 1] + lines[k:]))
        if k == n:  # the final checkpoint: only --require-closed notices (see verify.py)
            assert res.exit_code == 0 and not res.closed
            continue
        assert res.exit_code == 1 and res.first_bad_seq == k, (k, res.message())
        assert "deleted" in res.reason or "genesis" in res.reason
    for k in range(1, n):  # swap records k and k+1
        sw = lines[:]
        sw[k - 1], sw[k] = sw[k], sw[k - 1]
        res = verify_bytes(b"".join(sw))
        assert res.exit_code == 1 and res.first_bad_seq == k, (k, res.message())
    for k in range(1, n + 1):  # insert a copy of record 3 before record k
        ins = lines[: k - 1] + [lines[2]] + lines[k - 1 :]
        res = verify_bytes(b"".join(ins))
        # a copy placed right before its original: the copy verifies, the original does not
        want = k + 1 if k == 3 else k
        assert res.exit_code == 1 and res.first_bad_seq == want, (k, res.message())


def test_forged_insert_with_rechained_tail_fails_at_signature(tmp_path):
    path = small_ledger(tmp_path, n=10, every=4)
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]
    forged = dict(recs[3], payload={"scope": "task", "id": "forged", "energy_j": 0.0})
    recs.insert(3, forged)
    prev = "0" * 64
    out = []
    for i, r in enumerate(recs, start=1):
        r = {k: v for k, v in r.items() if k != "hash"}
        r.update(seq=i, prev=prev)
        prev = sha256_hex(canonical_bytes(r))
        r["hash"] = prev
        out.append(canonical_bytes(r) + b"\n")
    res = verify_bytes(b"".join(out))
    first_ckpt = next(i for i, r in enumerate(recs, start=1) if r["kind"] == "checkpoint" and i > 4)
    assert res.exit_code == 1 and res.first_bad_seq == first_ckpt
    assert "signature" in res.reason or "covers_seq" in res.reason


def test_other_key_is_rejected(tmp_path):
    path = small_ledger(tmp_path)
    other = tmp_path / "other.jsonl"
    Ledger(other).close()
    res = verify_ledger(path, load_public_key(str(other) + ".pub"))
    assert res.exit_code == 1 and res.first_bad_seq == 4 and "not by the given public key" in res.reason
    # reopening with another key refuses to append
    with pytest.raises(InputError, match="was started with key"):
        Ledger(path, key_path=tmp_path / "other.jsonl.key")
    # a checkpoint signed by a key other than the header's fails even without --pubkey
    with Ledger(tmp_path / "x.jsonl", key_path=tmp_path / "k1") as led:
        led.append("energy", {"energy_j": 1.0})
    recs = [json.loads(x) for x in (tmp_path / "x.jsonl").read_bytes().splitlines()]
    forged = tmp_path / "y.jsonl"
    with Ledger(forged, key_path=tmp_path / "k2") as led:
        led.append("energy", {"energy_j": 1.0})
    lines = forged.read_bytes().splitlines(keepends=True)
    hdr = dict(recs[0], prev="0" * 64)
    # splice x's header (key k1) onto y's records (signed by k2), re-chaining the hashes
    chain = [hdr] + [json.loads(x) for x in lines[1:]]
    prev = "0" * 64
    out = []
    for r in chain:
        r = {k: v for k, v in r.items() if k != "hash"}
        r["prev"] = prev
        prev = sha256_hex(canonical_bytes(r))
        r["hash"] = prev
        out.append(canonical_bytes(r) + b"\n")
    res = verify_bytes(b"".join(out))
    assert res.exit_code == 1 and "not by the ledger's key" in res.reason


def test_every_truncation_is_intact_or_torn(tmp_path):
    path = small_ledger(tmp_path, n=4, every=2)
    data = path.read_bytes()
    ends = {i + 1 for i, b in enumerate(data) if b == 0x0A}
    for cut in range(len(data) + 1):
        res = verify_bytes(data[:cut])
        complete = data[:cut].count(b"\n")
        assert res.records == complete, cut
        if cut in ends or cut == 0:
            assert res.exit_code == 0, cut
        else:
            assert res.exit_code == 3 and res.torn_bytes == cut - max([0] + [e for e in ends if e <= cut]), cut


def test_reopen_continues_chain_and_repairs_torn_tail(tmp_path):
    path = small_ledger(tmp_path)
    n0 = verify_ledger(path).records
    with open(path, "ab") as f:
        f.write(b'{"kind":"energy","payl')
    assert verify_ledger(path).exit_code == 3
    with Ledger(path, checkpoint_every=3) as led:
        seq = led.append("energy", {"energy_j": 9.0})
    res = verify_ledger(path, load_public_key(str(path) + ".pub"), collect=True)
    assert res.exit_code == 0 and res.closed
    kinds = [r["kind"] for r in res.records_list]
    assert kinds[n0] == "recovery" and res.records_list[n0]["payload"]["torn_bytes"] == 22
    assert seq == n0 + 2


def test_threads_append_concurrently(tmp_path):
    import threading

    path = tmp_path / "threads.jsonl"
    with Ledger(path, checkpoint_every=64) as led:
        def work(k: int) -> None:
            for i in range(300):
                led.append("decision", {"thread": k, "i": i})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    res = verify_ledger(path, collect=True)
    assert res.exit_code == 0 and res.kinds["decision"] == 1200
    for k in range(4):  # each thread's records in its own order
        assert [r["payload"]["i"] for r in res.records_list if r["payload"].get("thread") == k] == list(range(300))


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="checkpoint_every"):
        Ledger(tmp_path / "a.jsonl", checkpoint_every=0)
    with pytest.raises(InputError, match="fsync"):
        Ledger(tmp_path / "a.jsonl", fsync="sometimes")
    with Ledger(tmp_path / "a.jsonl") as led:
        with pytest.raises(InputError, match="reserved"):
            led.append("checkpoint", {})
        with pytest.raises(InputError, match="must be a dict"):
            led.append("energy", [1, 2])
        with pytest.raises(InputError, match=r"energy payload\.x"):
            led.append("energy", {"x": object()})
        with pytest.raises(InputError, match="another writer"):
            Ledger(tmp_path / "a.jsonl")
    with pytest.raises(InputError, match="after close"):
        led.append("energy", {})
    assert verify_ledger(tmp_path / "a.jsonl").exit_code == 0


WRITER = r"""
import sys
from tao_core.governance import Ledger
led = Ledger(sys.argv[1], checkpoint_every=97, fsync=sys.argv[2])
print("ready", flush=True)
for i in range(10000):
    led.append("decision", {"t_s": i * 0.01, "kind": "place", "subject": "task-%d" % i,
                            "pad": "x" * (i % 700)})
led.close()
print("done", flush=True)
"""


@pytest.mark.parametrize("delay_s,fsync", [(0.0, "never"), (0.05, "checkpoint"), (0.15, "never")])
def test_sigkill_during_appends(tmp_path, delay_s, fsync):
    path = tmp_path / "killed.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), fsync], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    data = path.read_bytes()
    res = verify_ledger(path, load_public_key(str(path) + ".pub"))
    assert res.exit_code in (0, 3), res.message()
    assert res.records == data.count(b"\n")  # every complete record verifies
    # the chain continues after the crash
    with Ledger(path, checkpoint_every=97) as led:
        led.append("summary", {"note": "after crash"})
    assert verify_ledger(path).exit_code == 0


def test_any_json_payload_round_trips(tmp_path):
    """Canonical form holds for arbitrary payloads (unicode, big and small numbers, nesting)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tao_core.governance.canonical import to_jsonable

    leaves = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
    payloads = st.dictionaries(st.text(max_size=8), st.recursive(
        leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
        max_leaves=12), max_size=6)
    counter = iter(range(10**6))

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(payloads)
    def check(payload):
        path = tmp_path / f"h{next(counter)}.jsonl"
        try:
            clean = to_jsonable(payload)
        except InputError:
            return
        try:
            canonical_bytes(clean)
        except UnicodeEncodeError:  # lone surrogates are not UTF-8: append must refuse them
            with Ledger(path, key_path=tmp_path / "k", fsync="never", pub_path="") as led:
                with pytest.raises(InputError):
                    led.append("energy", payload)
            return
        with Ledger(path, key_path=tmp_path / "k", checkpoint_every=2, fsync="never", pub_path="") as led:
            seq = led.append("energy", payload)
        res = verify_ledger(path, collect=True)
        assert res.exit_code == 0, res.message()
        assert res.records_list[seq - 1]["payload"] == clean

    check()
