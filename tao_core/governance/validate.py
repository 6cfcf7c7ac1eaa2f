"""Report integrity: the content digest, the optional Ed25519 signature, and validation
against the JSON Schema shipped beside this module (``energy_report.schema.json``).

``integrity.content_sha256`` is the SHA-256 over the canonical JSON (``canonical.py``) of
the report without its ``integrity`` field; ``integrity.signature`` (optional) is Ed25519
over ``b"tao-energy-report/1\\n"`` + that hex digest. A digest alone shows the report was
not changed by accident or by someone who did not recompute it; the signature, checked
against a public key obtained out of band, shows who vouches for it.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional, Union

from tao_core.errors import InputError
from tao_core.governance.canonical import CANONICAL_FORM, canonical_bytes, sha256_hex

PathLike = Union[str, "os.PathLike[str]"]


def content_sha256(report: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of ``report`` without its ``integrity`` field."""
    return sha256_hex(canonical_bytes({k: v for k, v in report.items() if k != "integrity"}))


def seal(report: dict) -> dict:
    """Set ``report["integrity"]`` from its content (in place) and return it."""
    report.pop("integrity", None)
    report["integrity"] = {
        "algorithm": "sha256",
        "canonicalization": CANONICAL_FORM,
        "covers": "the whole report without its integrity field",
        "content_sha256": content_sha256(report),
    }
    return report


REPORT_SIGNATURE_CONTEXT = b"tao-energy-report/1\n"  # unchanged across report formats


def sign_report(report: dict, key_path: PathLike, field: str = "sign_key") -> dict:
    """Seal ``report`` and sign its content digest with the Ed25519 private key at
    ``key_path`` (e.g. the ledger's ``LEDGER.key``); sets ``integrity.signature`` with the
    key id and public key. The signature covers ``b"tao-energy-report/1\\n"`` + the hex
    digest. Raises ``InputError`` naming ``field`` when the key file is missing or not an
    Ed25519 key."""
    from tao_core.governance.keys import key_id as _key_id, load_private_key, raw_public

    key = load_private_key(key_path, field)
    seal(report)
    digest = report["integrity"]["content_sha256"]
    pub = key.public_key()
    report["integrity"]["signature"] = {
        "alg": "ed25519",
        "key_id": _key_id(pub),
        "public_key": raw_public(pub).hex(),
        "signature": key.sign(REPORT_SIGNATURE_CONTEXT + digest.encode("ascii")).hex(),
    }
    return report


def _check_report_signature(report: Mapping[str, Any], pubkey: Any) -> Optional[str]:
    """None when the report's signature (if any) verifies, and, with ``pubkey``, when it is
    present and made by that key; else the problem."""
    from tao_core.governance.keys import embedded_key, verify_signature

    sig = report["integrity"].get("signature")
    if sig is None:
        return None if pubkey is None else "integrity/signature: the report is not signed; nothing to check the given public key against"
    embedded, why = embedded_key(sig["public_key"], sig["key_id"], pubkey, "integrity/signature")
    if why is not None:
        return why
    msg = REPORT_SIGNATURE_CONTEXT + report["integrity"]["content_sha256"].encode("ascii")
    if not verify_signature(embedded, sig["signature"], msg):
        return "integrity/signature: bad signature"
    return None


def schema_path() -> pathlib.Path:
    """The JSON Schema shipped with the package."""
    return pathlib.Path(__file__).with_name("energy_report.schema.json")


_SCHEMA: Optional[dict] = None


def load_schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = json.loads(schema_path().read_text(encoding="utf-8"))
    return _SCHEMA


def schema_problems(report: Any) -> list[str]:
    """JSON Schema errors of ``report``, each naming its field path."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = []
    for err in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        errors.append(f"{where}: {err.message}")
    return errors


def validate_report(report: Any, pubkey: Any = None) -> list[str]:
    """Problems with ``report`` (empty when valid): JSON Schema errors (each naming its
    field path), an integrity mismatch, a bad signature, internal sums that do not hold
    (``consistency.py``). ``pubkey`` (an Ed25519 public key object): also require a
    signature by this key. What it cannot check without the ledger or the members: that
    the figures and provenance claims are those of a real run (``recheck.py``)."""
    from tao_core.governance.consistency import sum_problems

    errors = schema_problems(report)
    if errors:
        return errors
    want = report["integrity"]["content_sha256"]
    try:
        got = content_sha256(report)
    except (ValueError, UnicodeEncodeError) as exc:
        return [f"integrity: the report cannot be canonicalised ({exc})"]
    if got != want:
        return [f"integrity/content_sha256: {want} does not match the content ({got}); "
                "the report was changed after it was built"]
    problem = _check_report_signature(report, pubkey)
    if problem:
        errors.append(problem)
    return errors + sum_problems(report)


def load_report(path: PathLike, field: str = "report") -> dict:
    """Read a report JSON file (``InputError`` naming ``field`` when unreadable or not JSON)."""
    from tao_core.files import load_json_file

    doc = load_json_file(path, field)
    if not isinstance(doc, dict):
        raise InputError(f"{field} {path}: holds a JSON {type(doc).__name__}, not a report object; "
                         "give a report written by `tao report build --format json`")
    return doc
