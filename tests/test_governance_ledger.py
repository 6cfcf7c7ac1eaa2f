"""Ledger: hash chain, signatures, signed coverage, tamper detection, torn tails, locking,
crash and signal safety."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from governance_fixtures import rechain, records_of
from tao_core.errors import InputError
from tao_core.governance import Ledger, load_public_key, verify_ledger
from tao_core.governance.canonical import canonical_bytes, sha256_hex
from tao_core.governance.verify import MAX_RECORD_BYTES, verify_bytes

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
    assert res.records == 7 and res.checkpoints == 3 and res.signed_through_seq == 7 and res.unsigned_tail == 0
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.jsonl", "l.jsonl.key", "l.jsonl.pub"]


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
        if k == n:  # the final checkpoint: the ledger no longer claims to be closed
            assert res.exit_code == 0 and not res.closed
            assert verify_bytes(b"".join(lines[:-1]), require_closed=True).exit_code == 1
            continue
        assert res.exit_code == 1 and res.first_bad_seq == k, (k, res.message())
        assert "deleted" in res.reason or "genesis" in res.reason or "header" in res.reason
    for k in range(1, n):  # swap records k and k+1
        sw = lines[:]
        sw[k - 1], sw[k] = sw[k], sw[k - 1]
        res = verify_bytes(b"".join(sw))
        assert res.exit_code == 1 and res.first_bad_seq == k, (k, res.message())
    for k in range(1, n + 1):  # insert a copy of record 3 before record k
        ins = lines[: k - 1] + [lines[2]] + lines[k - 1:]
        res = verify_bytes(b"".join(ins))
        # a copy placed right before its original: the copy verifies, the original does not
        want = k + 1 if k == 3 else k
        assert res.exit_code == 1 and res.first_bad_seq == want, (k, res.message())


def test_forged_insert_with_rechained_tail_fails_at_signature(tmp_path):
    path = small_ledger(tmp_path, n=10, every=4)
    recs = records_of(path)
    forged = dict(recs[3], payload={"scope": "task", "id": "forged", "energy_j": 0.0})
    recs.insert(3, forged)
    res = verify_bytes(rechain(recs))
    first_ckpt = next(i for i, r in enumerate(recs, start=1) if r["kind"] == "checkpoint" and i > 4)
    assert res.exit_code == 1 and res.first_bad_seq == first_ckpt
    assert "signature" in res.reason or "covers_seq" in res.reason


def test_records_appended_after_the_final_checkpoint_fail(tmp_path):
    """Attack: records appended to a closed ledger with their hashes recomputed."""
    path = small_ledger(tmp_path)
    recs = records_of(path)
    n = len(recs)
    forged = rechain(recs + [dict(recs[1], payload={"run_id": "r1", "note": "forged"})])
    pub = load_public_key(str(path) + ".pub")
    for key in (None, pub):
        res = verify_bytes(forged, pubkey=key)
        assert res.exit_code == 1 and res.first_bad_seq == n + 1, res.message()
        assert "follows the final checkpoint" in res.reason and "no signature covers it" in res.reason


def test_open_ledger_says_how_many_records_are_unsigned(tmp_path):
    path = small_ledger(tmp_path, n=7, every=3)
    recs = records_of(path)
    data = rechain(recs[:-1] + [dict(recs[2], payload={"forged": True})] * 2)
    res = verify_bytes(data)
    assert res.exit_code == 0 and not res.closed
    assert res.unsigned_tail == 2 and res.signed_through_seq == len(recs) - 1
    assert "2 trailing record(s)" in res.message() and "not covered by a signature" in res.message()
    assert not res.is_signed(len(recs)) and res.is_signed(len(recs) - 1)
    res = verify_bytes(data, require_closed=True)
    assert res.exit_code == 1 and res.first_bad_seq == len(recs) and "not covered by a signature" in res.reason


def test_an_empty_file_is_not_an_intact_ledger(tmp_path):
    res = verify_bytes(b"")
    assert res.exit_code == 1 and res.status == "bad" and "empty" in res.reason
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert verify_ledger(tmp_path / "empty.jsonl").exit_code == 1


def test_the_header_comes_first_and_only_first(tmp_path):
    path = small_ledger(tmp_path)
    recs = records_of(path)
    res = verify_bytes(rechain(recs[1:]))  # header removed, hashes recomputed
    assert res.exit_code == 1 and res.first_bad_seq == 1 and "header" in res.reason
    res = verify_bytes(rechain(recs[:2] + [recs[0]] + recs[2:]))
    assert res.exit_code == 1 and res.first_bad_seq == 3 and "header" in res.reason


def test_other_key_is_rejected(tmp_path):
    path = small_ledger(tmp_path)
    other = tmp_path / "other.jsonl"
    Ledger(other).close()
    res = verify_ledger(path, load_public_key(str(other) + ".pub"))
    assert res.exit_code == 1 and res.first_bad_seq == 1 and "not by the given public key" in res.reason
    # reopening with another key refuses to append, and writes nothing
    before = path.read_bytes(), (tmp_path / "run.jsonl.pub").read_bytes()
    with pytest.raises(InputError, match="was started with another key"):
        Ledger(path, key_path=tmp_path / "other.jsonl.key")
    assert (path.read_bytes(), (tmp_path / "run.jsonl.pub").read_bytes()) == before
    # a checkpoint signed by a key other than the header's fails even without --pubkey
    with Ledger(tmp_path / "x.jsonl", key_path=tmp_path / "k1") as led:
        led.append("energy", {"energy_j": 1.0})
    with Ledger(tmp_path / "y.jsonl", key_path=tmp_path / "k2") as led:
        led.append("energy", {"energy_j": 1.0})
    spliced = records_of(tmp_path / "x.jsonl")[:1] + records_of(tmp_path / "y.jsonl")[1:]
    res = verify_bytes(rechain(spliced))
    assert res.exit_code == 1 and "not by the ledger's key" in res.reason


def test_every_truncation_is_torn_or_a_shorter_ledger(tmp_path):
    path = small_ledger(tmp_path, n=4, every=2)
    data = path.read_bytes()
    ends = {i + 1 for i, b in enumerate(data) if b == 0x0A}
    for cut in range(len(data) + 1):
        res = verify_bytes(data[:cut])
        complete = data[:cut].count(b"\n")
        assert res.records == complete, cut
        if cut == 0:
            assert res.exit_code == 1, "an empty file is not an intact ledger"
        elif cut < min(ends):
            assert res.exit_code == 3 and res.records == 0, cut  # the header itself torn
        elif cut in ends:
            assert res.exit_code == 0 and res.closed == (cut == len(data)), cut
        else:
            assert res.exit_code == 3 and res.torn_bytes == cut - max(e for e in ends if e <= cut), cut


def test_unterminated_tail_that_no_write_leaves_is_bad(tmp_path):
    path = small_ledger(tmp_path)
    data = path.read_bytes()
    assert verify_bytes(data + b'{"hash":"ab').exit_code == 3
    assert verify_bytes(data + b"garbage").exit_code == 1
    assert verify_bytes(data + b'{"kind":"energy"').exit_code == 1  # not how a canonical record starts
    assert verify_bytes(data + b"x" * (MAX_RECORD_BYTES + 10)).exit_code == 1


@pytest.mark.parametrize("line,why", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "nested too deeply"),
    (b'{"hash":"' + b"a" * (MAX_RECORD_BYTES + 1) + b'"}', "longer than"),
    (b'{"a": NaN}', "not a valid JSON record"),
])
def test_malformed_lines_are_a_bad_ledger_not_a_crash(tmp_path, line, why):
    path = small_ledger(tmp_path)
    lines = lines_of(path)
    data = b"".join(lines[:3]) + line + b"\n" + b"".join(lines[3:])
    res = verify_bytes(data)
    assert res.exit_code == 1 and res.first_bad_seq == 4 and why in res.reason, res.message()


def test_append_refuses_records_a_reader_would_refuse(tmp_path):
    with Ledger(tmp_path / "a.jsonl") as led:
        deep: dict = {}
        cur = deep
        for _ in range(40):
            cur["x"] = {}
            cur = cur["x"]
        with pytest.raises(InputError, match="nested more than"):
            led.append("energy", deep)
        with pytest.raises(InputError, match="more than the"):
            led.append("energy", {"blob": "x" * (MAX_RECORD_BYTES + 1)})
    assert verify_ledger(tmp_path / "a.jsonl").exit_code == 0


def test_reopen_continues_chain_and_repairs_torn_tail(tmp_path):
    path = small_ledger(tmp_path)
    n0 = verify_ledger(path).records
    with open(path, "ab") as f:
        f.write(b'{"hash":"0123456789abcdef","kind":"energy","payl')
    assert verify_ledger(path).exit_code == 3
    with Ledger(path, checkpoint_every=3) as led:
        seq = led.append("energy", {"energy_j": 9.0})
    res = verify_ledger(path, load_public_key(str(path) + ".pub"), collect=True)
    assert res.exit_code == 0 and res.closed
    kinds = [r["kind"] for r in res.records_list]
    # the closed ledger gets a signed checkpoint first, then the recovery record
    assert kinds[n0] == "checkpoint" and kinds[n0 + 1] == "recovery"
    assert res.records_list[n0 + 1]["payload"]["torn_bytes"] == 48
    assert seq == n0 + 3


def test_reopen_does_not_vouch_for_unsigned_records(tmp_path):
    """Records found after the last checkpoint of an open ledger are named unvouched, so
    the reopening writer's checkpoints do not launder records it did not write."""
    path = small_ledger(tmp_path, n=7, every=3)
    recs = records_of(path)
    forged = dict(recs[2], payload={"scope": "task", "id": "forged", "energy_j": 0.0})
    path.write_bytes(rechain(recs[:-1] + [forged]))  # final checkpoint dropped, one record appended
    with Ledger(path) as led:
        led.append("energy", {"energy_j": 1.0})
    res = verify_ledger(path, load_public_key(str(path) + ".pub"), collect=True)
    assert res.exit_code == 0 and res.closed
    bad = len(recs)  # the forged record's seq
    assert res.unvouched == [(bad, bad)] and not res.is_signed(bad) and res.is_signed(bad + 2)


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
    assert list(tmp_path.iterdir()) == []
    with Ledger(tmp_path / "a.jsonl") as led:
        with pytest.raises(InputError, match="reserved"):
            led.append("checkpoint", {})
        with pytest.raises(InputError, match="must be a dict"):
            led.append("energy", [1, 2])
        with pytest.raises(InputError, match=r"energy payload\.x"):
            led.append("energy", {"x": object()})
    with pytest.raises(InputError, match="after close"):
        led.append("energy", {})
    assert verify_ledger(tmp_path / "a.jsonl").exit_code == 0


def test_a_second_writer_is_refused_before_it_writes_anything(tmp_path):
    """Attack: a second writer on a held ledger must not replace LEDGER.pub with its key."""
    path = tmp_path / "a.jsonl"
    with Ledger(path) as led:
        led.append("energy", {"energy_j": 1.0})
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        with pytest.raises(InputError, match="another writer"):
            Ledger(path, key_path=tmp_path / "intruder.key", pub_path=tmp_path / "a.jsonl.pub")
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert verify_ledger(path, load_public_key(tmp_path / "a.jsonl.pub"), require_closed=True).exit_code == 0


def test_links_and_odd_targets_are_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "l.jsonl").symlink_to(victim)
    with pytest.raises(InputError, match="symbolic link"):
        Ledger(tmp_path / "l.jsonl")
    with pytest.raises(InputError, match="pub_path.*symbolic link"):
        (tmp_path / "m.jsonl.pub").symlink_to(victim)
        Ledger(tmp_path / "m.jsonl")
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        Ledger(fifo)
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "l.jsonl", "m.jsonl.pub", "victim"]


def test_planted_links_at_predictable_temp_names_are_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for planted in ("l.jsonl.pub.tmp", f".l.jsonl.pub.tmp{os.getpid()}", f".l.jsonl.tmp{os.getpid()}",
                    "l.jsonl.key.tmp"):
        (tmp_path / planted).symlink_to(victim)
    with Ledger(tmp_path / "l.jsonl") as led:
        led.append("energy", {"energy_j": 1.0})
    assert victim.read_text() == "keep"
    assert verify_ledger(tmp_path / "l.jsonl", load_public_key(tmp_path / "l.jsonl.pub")).exit_code == 0


def test_atomic_ledger_appears_only_when_closed(tmp_path):
    path = tmp_path / "a.jsonl"
    led = Ledger(path, atomic=True)
    led.append("energy", {"energy_j": 1.0})
    assert not path.exists() and not (tmp_path / "a.jsonl.key").exists()
    led.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "a.jsonl.key", "a.jsonl.pub"]
    assert verify_ledger(path, load_public_key(tmp_path / "a.jsonl.pub"), require_closed=True).exit_code == 0
    with pytest.raises(RuntimeError):
        with Ledger(tmp_path / "b.jsonl", atomic=True) as led:
            led.append("energy", {"energy_j": 1.0})
            raise RuntimeError("the run failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "a.jsonl.key", "a.jsonl.pub"]
    with pytest.raises(InputError, match="already exists"):
        Ledger(path, atomic=True)


SIGTERM_WRITER = textwrap.dedent("""
    import os, signal, sys
    from tao_core.files import install_signal_cleanup
    from tao_core.governance import ledger as L
    install_signal_cleanup()
    where, path = sys.argv[1], sys.argv[2]
    if where == "creation":  # SIGTERM between the key and the ledger's header
        real = L.Ledger._write_header
        def header(self):
            os.kill(os.getpid(), signal.SIGTERM)
            real(self)
        L.Ledger._write_header = header
        L.Ledger(path)
    else:  # an atomic ledger half written
        led = L.Ledger(path, atomic=True, checkpoint_every=5)
        for i in range(50):
            led.append("energy", {"i": i})
        os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
""")


@pytest.mark.parametrize("where", ["creation", "atomic"])
def test_sigterm_leaves_no_hidden_partial_ledger_or_key(tmp_path, where):
    path = tmp_path / "l.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", SIGTERM_WRITER, where, str(path)], capture_output=True, timeout=60,
                       env=env)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in left if n.startswith(".")], left
    assert "l.jsonl" not in left and "l.jsonl.pub" not in left
    if "l.jsonl.key" in left:  # written whole before the signal: a usable key, not half a file
        from tao_core.governance.keys import load_private_key

        load_private_key(tmp_path / "l.jsonl.key")


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
    res = verify_ledger(path)
    assert res.exit_code in (0, 3), res.message()
    assert res.records == data.count(b"\n")  # every complete record verifies
    if res.checkpoints:  # with the key: authenticated up to the last checkpoint
        assert verify_ledger(path, load_public_key(str(path) + ".pub")).exit_code in (0, 3)
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
