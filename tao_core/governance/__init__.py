"""Governance artifacts: the hash-chained, signed decision ledger, its verification, and
the energy report (JSON Schema, Markdown and HTML renderings, federated merge)."""
from tao_core.governance.canonical import CANONICAL_FORM, canonical_bytes, sha256_hex, to_jsonable
from tao_core.governance.keys import load_public_key
from tao_core.governance.ledger import Ledger
from tao_core.governance.verify import VerifyResult, read_records, verify_ledger

__all__ = [
    "CANONICAL_FORM",
    "Ledger",
    "VerifyResult",
    "canonical_bytes",
    "load_public_key",
    "read_records",
    "sha256_hex",
    "to_jsonable",
    "verify_ledger",
]
