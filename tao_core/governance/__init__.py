"""Governance artifacts: the hash-chained, signed decision ledger, its verification, and
the energy report (JSON Schema, Markdown and HTML renderings, federated merge), with the
checks that recompute a report's claims from its ledger or its inputs."""
from tao_core.governance.canonical import CANONICAL_FORM, canonical_bytes, sha256_hex, to_jsonable
from tao_core.governance.keys import load_public_key
from tao_core.governance.ledger import Ledger
from tao_core.governance.merge import MemberEvidence, merge_reports
from tao_core.governance.output import write_report
from tao_core.governance.recheck import check_against_ledger, check_federated
from tao_core.governance.report import build_report, build_report_from_records
from tao_core.governance.validate import content_sha256, load_report, schema_path, sign_report, validate_report
from tao_core.governance.verify import VerifyResult, read_records, verify_ledger

__all__ = [
    "CANONICAL_FORM",
    "Ledger",
    "MemberEvidence",
    "VerifyResult",
    "build_report",
    "build_report_from_records",
    "canonical_bytes",
    "check_against_ledger",
    "check_federated",
    "content_sha256",
    "load_public_key",
    "load_report",
    "merge_reports",
    "read_records",
    "schema_path",
    "sha256_hex",
    "sign_report",
    "to_jsonable",
    "validate_report",
    "verify_ledger",
    "write_report",
]
