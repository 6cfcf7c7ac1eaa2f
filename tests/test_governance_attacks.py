"""Attacks on the ledger and the energy reports by someone who edits them without the
private key: every one must be detected (or, for unsigned records, kept out of reports).

Each test below is one attack on a ledger, a report or a merge; the property-based test
tries random edits, insertions, deletions, reorders and appends with hashes recomputed, and
prints how many it tried and detected (run with ``-s`` to see the counts)."""
from __future__ import annotations

import copy
import json
import pathlib
from collections import Counter

import pytest

from governance_fixtures import forged_tail, rechain, records_of, write_run
from tao_core.cli.main import main
from tao_core.errors import InputError
from tao_core.governance import (
    Ledger, MemberEvidence, build_report, load_public_key, merge_reports, sign_report, validate_report,
)
from tao_core.governance.canonical import canonical_bytes
from tao_core.governance.ledger import FORMAT
from tao_core.governance.recheck import check_against_ledger, check_federated
from tao_core.governance.validate import seal
from tao_core.governance.verify import verify_bytes

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    d = tmp_path_factory.mktemp("att")
    path = d / "run.jsonl"
    write_run(path, checkpoint_every=10)
    return path, path.read_bytes(), load_public_key(str(path) + ".pub")


@pytest.fixture(scope="module")
def sim_ledger(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    led = d / "sim.jsonl"
    assert main(["simulate", "--cluster", str(EXAMPLES / "cluster_small.json"), "--workload",
                 str(EXAMPLES / "workload_small.csv"), "--policy", "tao", "--ledger", str(led)]) == 0
    return led


# ----------------------------------------------------------------------------- random edits
def _edit(recs: list[dict], i: int, what: str, value: int) -> None:
    r = recs[i]
    p = r["payload"]
    if what == "number":
        nums = [k for k, v in p.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums:
            p[nums[value % len(nums)]] = p[nums[value % len(nums)]] * 0.5 + 1
        else:
            p["forged"] = value
    elif what == "string":
        strs = [k for k, v in p.items() if isinstance(v, str)]
        if strs:
            p[strs[value % len(strs)]] += "x"
        else:
            p["forged"] = "x"
    elif what == "add":
        p[f"forged{value}"] = value
    elif what == "drop":
        if p:
            del p[sorted(p)[value % len(p)]]
    elif what == "time":
        r["time"] = r["time"] + 1 + value
    elif what == "kind":
        r["kind"] = ["config", "energy", "summary", "decision", "checkpoint", "recovery"][value % 6]
    elif what == "seq":
        r["seq"] = r["seq"] + 1 + value


def _apply(recs: list[dict], op: tuple) -> str:
    kind = op[0]
    n = len(recs)
    if kind == "edit":
        _edit(recs, op[1] % n, op[2], op[3])
    elif kind == "insert":
        recs.insert(op[1] % (n + 1), copy.deepcopy(recs[op[2] % n]))
    elif kind == "delete" and n > 1:
        del recs[op[1] % n]
    elif kind == "reorder":
        i, j = op[1] % n, op[2] % n
        recs[i], recs[j] = recs[j], recs[i]
    elif kind == "append":
        extra = copy.deepcopy(recs[op[1] % n])
        if op[2]:
            extra["payload"]["forged"] = True
        recs.append(extra)
    return kind


def test_random_edits_of_a_closed_ledger_are_all_detected(closed):
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    path, data, pub = closed
    original = [json.loads(x) for x in data.splitlines()]
    idx = st.integers(0, 10_000)
    op = st.one_of(
        st.tuples(st.just("edit"), idx, st.sampled_from(["number", "string", "add", "drop", "time", "kind", "seq"]),
                  st.integers(0, 50)),
        st.tuples(st.just("insert"), idx, idx),
        st.tuples(st.just("delete"), idx),
        st.tuples(st.just("reorder"), idx, idx),
        st.tuples(st.just("append"), idx, st.booleans()),
    )
    tried: Counter = Counter()
    detected: Counter = Counter()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
    @given(st.lists(op, min_size=1, max_size=3), st.booleans())
    def attack(ops, renumber):
        recs = copy.deepcopy(original)
        kinds = [_apply(recs, o) for o in ops]
        forged = rechain(recs, renumber=renumber)
        assume(forged != data)
        label = "+".join(sorted(set(kinds)))
        for key in (None, pub):
            tried[label] += 1
            strict = verify_bytes(forged, pubkey=key, require_closed=True)
            plain = verify_bytes(forged, pubkey=key)
            assert strict.status != "intact", (ops, renumber, key is not None, strict.message())
            assert plain.status != "intact" or not plain.closed, (ops, renumber, plain.message())
            detected[label] += 1

    attack()
    print(f"\nledger edits with hashes recomputed: {sum(tried.values())} tried, {sum(detected.values())} detected "
          f"(with and without --pubkey); by kind: {dict(sorted(tried.items()))}")
    assert sum(tried.values()) >= 400 and tried == detected


def test_resigning_with_another_key_is_detected_with_the_pubkey(closed, tmp_path):
    """Attack: rewrite the header and every checkpoint with the attacker's own key. Without
    a trusted public key this cannot be told apart (the README says so); with it, it fails."""
    path, data, pub = closed
    fake = tmp_path / "fake.jsonl"
    recs = [json.loads(x) for x in data.splitlines()]
    with Ledger(fake, checkpoint_every=10) as led:
        for r in recs:
            if r["kind"] not in ("ledger", "checkpoint", "recovery"):
                p = r["payload"]
                if r["kind"] == "summary":
                    p = dict(p, tasks_completed=1)
                led.append(r["kind"], p)
    forged = fake.read_bytes()
    assert verify_bytes(forged).status == "intact"  # self-consistent: the embedded key proves nothing
    res = verify_bytes(forged, pubkey=pub)
    assert res.exit_code == 1 and "not by the given public key" in res.reason


# ----------------------------------------------------------------------------- appended records
def test_records_appended_after_close_fail_verify_build_and_validate(sim_ledger, tmp_path, capsys):
    """Attack: a config with the real run id and a summary with energy halved, appended
    after the final checkpoint with hashes recomputed."""
    pub = str(sim_ledger) + ".pub"
    genuine = tmp_path / "genuine.json"
    assert main(["report", "build", "--ledger", str(sim_ledger), "--pubkey", pub, "--out", str(genuine)]) == 0
    recs = records_of(sim_ledger)
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(rechain(recs + forged_tail(recs)))
    capsys.readouterr()
    assert main(["audit", "verify", str(forged), "--pubkey", pub]) == 1
    assert "follows the final checkpoint" in capsys.readouterr().err
    assert main(["report", "build", "--ledger", str(forged), "--pubkey", pub, "--out", str(tmp_path / "r.json")]) == 2
    assert "fails verification" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    assert main(["report", "validate", str(genuine), "--ledger", str(forged), "--pubkey", pub]) == 1


def test_unsigned_tail_of_an_open_ledger_stays_out_of_reports(tmp_path, capsys):
    """Attack: drop the final checkpoint of a ledger whose run is signed, then append a
    config with the run's id, node records with energy halved and a summary (hashes
    recomputed): the ledger reads as open, and the forged records never reach a report."""
    from governance_fixtures import append_run, run_parts

    path = tmp_path / "run.jsonl"
    with Ledger(path, checkpoint_every=10) as led:
        append_run(led, run_parts())
        led.checkpoint()
    pub = str(path) + ".pub"
    genuine = build_report(path, pubkey=pub, generated_at="t")
    recs = records_of(path)
    tail = forged_tail(recs)
    forged = tmp_path / "open.jsonl"
    forged.write_bytes(rechain(recs[:-1] + tail))
    capsys.readouterr()
    assert main(["audit", "verify", str(forged), "--pubkey", pub]) == 0
    assert f"{len(tail)} trailing record(s)" in capsys.readouterr().out
    assert main(["audit", "verify", str(forged), "--pubkey", pub, "--require-closed"]) == 1
    notes: list[str] = []
    signed_only = build_report(forged, pubkey=pub, generated_at="t", notes=notes)
    assert signed_only["energy"] == genuine["energy"] and f"{len(tail)} record(s)" in notes[0]
    assert signed_only["ledger"]["head_seq"] == len(recs) - 1 and signed_only["ledger"]["unsigned_records_used"] == 0
    capsys.readouterr()
    assert main(["report", "build", "--ledger", str(forged), "--pubkey", pub, "--include-unsigned"]) == 2
    assert "2 runs have the id run-1" in capsys.readouterr().err  # the forged run is not mistaken for the real one


def test_unsigned_records_are_reported_only_when_asked_and_then_flagged(tmp_path, capsys):
    """A writer that stopped before closing: its run's last records are unsigned."""
    from governance_fixtures import append_run, run_parts

    path = tmp_path / "crashed.jsonl"
    led = Ledger(path, checkpoint_every=10)
    append_run(led, run_parts())
    led.abort()
    pub = str(path) + ".pub"
    capsys.readouterr()
    assert main(["report", "build", "--ledger", str(path), "--pubkey", pub]) == 2
    err = capsys.readouterr().err
    assert "not covered by a signature" in err and "--include-unsigned" in err
    out = tmp_path / "u.json"
    assert main(["report", "build", "--ledger", str(path), "--pubkey", pub, "--include-unsigned",
                 "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    unsigned = rep["ledger"]["head_seq"] - rep["ledger"]["signed_through_seq"]
    assert rep["ledger"]["unsigned_records_used"] == unsigned > 0 and rep["parameters"]["include_unsigned"] is True
    assert main(["report", "validate", str(out), "--ledger", str(path), "--pubkey", pub]) == 0
    assert main(["report", "render", str(out), "--format", "md", "--out", str(tmp_path / "u.md")]) == 0
    assert f"UNSIGNED: {unsigned} record(s)" in (tmp_path / "u.md").read_text()


# ----------------------------------------------------------------------------- edited report claims
CLAIMS = [
    ("ledger", "signer_authenticated", True),
    ("ledger", "status", "unverified"),
    ("ledger", "closed", False),
    ("ledger", "signed_through_seq", 1),
    ("ledger", "checkpoints", 7),
    ("ledger", "key_ids", ["0123456789abcdef"]),
    ("ledger", "public_key", "ab" * 32),
    ("ledger", "unsigned_records_used", 3),
    ("parameters", "carbon_intensity_g_per_kwh", 10.0),
    ("subject", "policy", "pack"),
    ("energy", "task_energy_j", 1.0),
    ("optimization_inversion", "inverted", True),
]


@pytest.mark.parametrize("section,field,value", CLAIMS)
def test_edited_claims_with_a_recomputed_digest_fail_validate_against_the_ledger(sim_ledger, section, field, value):
    """Attack: a provenance claim (or figure) edited and the content digest recomputed."""
    rep = build_report(sim_ledger, generated_at="t")
    assert check_against_ledger(rep, sim_ledger) == []
    forged = copy.deepcopy(rep)
    assert forged[section][field] != value
    forged[section][field] = value
    seal(forged)
    problems = check_against_ledger(forged, sim_ledger)
    assert problems and (field in problems[0] or section in problems[0] or "cannot be rebuilt" in problems[0]), problems


def test_claimed_authentication_needs_the_key(sim_ledger, tmp_path):
    pub = str(sim_ledger) + ".pub"
    rep = build_report(sim_ledger, pubkey=pub, generated_at="t")
    assert rep["ledger"]["signer_authenticated"] is True
    assert check_against_ledger(rep, sim_ledger, load_public_key(pub)) == []
    problems = check_against_ledger(rep, sim_ledger)
    assert problems and "give the signer's public key" in problems[0]
    Ledger(tmp_path / "other.jsonl").close()
    problems = check_against_ledger(rep, sim_ledger, load_public_key(tmp_path / "other.jsonl.pub"))
    assert problems and "not by the given public key" in problems[0]


# ----------------------------------------------------------------------------- merge
@pytest.fixture(scope="module")
def signed_members(tmp_path_factory):
    d = tmp_path_factory.mktemp("mem")
    out = {}
    for name, kw in (("a", dict(run_id="run-a", cluster_name="lab-a", pue=1.2)),
                     ("b", dict(run_id="run-b", cluster_name="lab-b", pue=1.6, scale=2.0))):
        write_run(d / f"{name}.jsonl", **kw)
        rep = sign_report(build_report(d / f"{name}.jsonl", carbon_intensity_g_per_kwh=100.0), d / f"{name}.jsonl.key")
        out[name] = (rep, d / f"{name}.jsonl", load_public_key(d / f"{name}.jsonl.pub"))
    return out


def _ev(*members) -> list[MemberEvidence]:
    return [MemberEvidence(pubkey=m[2]) for m in members]


def test_merge_rejects_a_rehashed_edit(signed_members):
    a, b = signed_members["a"], signed_members["b"]
    bad = copy.deepcopy(b[0])
    sig = bad["integrity"]["signature"]
    bad["energy"]["by_node"][0]["energy_j"] *= 0.5
    seal(bad)
    with pytest.raises(InputError, match="rejected"):
        merge_reports([a[0], bad], evidence=_ev(a, b))  # unsigned now
    bad["integrity"]["signature"] = sig
    with pytest.raises(InputError, match="bad signature"):
        merge_reports([a[0], bad], evidence=_ev(a, b))
    with pytest.raises(InputError, match="rejected"):  # against its ledger
        merge_reports([a[0], bad], evidence=[MemberEvidence(pubkey=a[2]), MemberEvidence(ledger=b[1])])


def test_merge_rejects_a_member_signed_by_an_unknown_key(signed_members, tmp_path):
    a, b = signed_members["a"], signed_members["b"]
    Ledger(tmp_path / "x.jsonl").close()
    other = sign_report(copy.deepcopy(b[0]), tmp_path / "x.jsonl.key")
    with pytest.raises(InputError, match="not by the given public key"):
        merge_reports([a[0], other], evidence=_ev(a, b))
    with pytest.raises(InputError, match="nothing to verify it with"):
        merge_reports([a[0], b[0]], evidence=[MemberEvidence(pubkey=a[2]), MemberEvidence()])


def test_merge_rejects_impossible_sums_even_when_signed(signed_members, tmp_path):
    """Attack: a federated report with IT 1 J and facility 3.0 MJ, re-signed by a key the
    verifier was told to trust: its sums give it away."""
    a, b = signed_members["a"], signed_members["b"]
    fed = merge_reports([a[0], b[0]], evidence=_ev(a, b))
    fed["energy"]["it_energy_j"] = 1.0
    fed["energy"]["facility_energy_j"] = 3.0e6
    Ledger(tmp_path / "x.jsonl").close()
    sign_report(fed, tmp_path / "x.jsonl.key")
    problems = validate_report(fed)
    assert any("facility_energy_j" in p or "it_energy_j" in p for p in problems), problems
    with pytest.raises(InputError, match="rejected"):
        merge_reports([fed], evidence=[MemberEvidence(pubkey=load_public_key(tmp_path / "x.jsonl.pub"))])


def test_merge_rejects_the_same_report_or_ledger_twice(signed_members, tmp_path):
    """Attack: the same report merged twice under two names (energy doubled), or two
    reports of one ledger head."""
    a, b = signed_members["a"], signed_members["b"]
    with pytest.raises(InputError, match="same report"):
        merge_reports([a[0], a[0]], evidence=_ev(a, a), names=["north", "south"])
    again = sign_report(build_report(a[1], carbon_intensity_g_per_kwh=400.0), str(a[1]) + ".key")
    with pytest.raises(InputError, match="same ledger head"):
        merge_reports([a[0], again], evidence=_ev(a, a), names=["north", "south"])
    fed = merge_reports([a[0], b[0]], evidence=_ev(a, b))
    Ledger(tmp_path / "f.jsonl").close()
    sign_report(fed, tmp_path / "f.jsonl.key")
    with pytest.raises(InputError, match="same report"):  # a member again, inside a federated input
        merge_reports([fed, a[0]], evidence=[MemberEvidence(pubkey=load_public_key(tmp_path / "f.jsonl.pub")),
                                             MemberEvidence(pubkey=a[2])])


def test_a_federated_report_is_validated_again_from_its_inputs(signed_members):
    a, b = signed_members["a"], signed_members["b"]
    fed = merge_reports([a[0], b[0]], evidence=_ev(a, b), names=["north", "south"])
    assert check_federated(fed, [b[0], a[0]], _ev(b, a)) == []
    forged = copy.deepcopy(fed)
    forged["federation"]["inputs"][0]["verified_by"]["method"] = "ledger"
    seal(forged)
    problems = check_federated(forged, [a[0], b[0]], _ev(a, b))
    assert problems and "verified_by" in problems[0]
    forged = copy.deepcopy(fed)
    forged["federation"]["members"][1]["ledger"]["signer_authenticated"] = True
    seal(forged)
    assert check_federated(forged, [a[0], b[0]], _ev(a, b))
    assert "no given report" in check_federated(fed, [a[0]], _ev(a))[0]


# ----------------------------------------------------------------------------- carbon
def test_reports_of_a_carbon_run_validate_against_their_ledger(tmp_path):
    led = tmp_path / "c.jsonl"
    assert main(["simulate", "--cluster", str(EXAMPLES / "cluster_small.json"), "--workload",
                 str(EXAMPLES / "workload_small.csv"), "--policy", "tao", "--carbon", "300", "--ledger", str(led)]) == 0
    pub = str(led) + ".pub"
    for extra in ([], ["--carbon-intensity", "120"]):
        out = tmp_path / f"c{len(extra)}.json"
        assert main(["report", "build", "--ledger", str(led), "--out", str(out)] + extra) == 0
        assert main(["report", "validate", str(out), "--ledger", str(led), "--pubkey", pub]) == 0
        em = json.loads(out.read_text())["emissions"]
        assert em["basis"] == ("intensity given" if extra else "summary record")


def test_the_ledger_format_is_named_in_its_header(closed):
    _, data, _ = closed
    header = json.loads(data.splitlines()[0])
    assert header["kind"] == "ledger" and header["payload"]["format"] == FORMAT
    assert canonical_bytes(header) == data.splitlines()[0]
