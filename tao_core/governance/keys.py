"""Ed25519 signing keys for ledger checkpoints (through ``cryptography``).

Files: the private key is PKCS#8 PEM, unencrypted, created with mode 0600; the public key
is SubjectPublicKeyInfo PEM. ``load_public_key`` also accepts a private key file (it
derives the public half) or the 64 hex digits of a raw public key.

A key id is the first 16 hex digits of the SHA-256 of the raw 32-byte public key.
"""
from __future__ import annotations

import os
import pathlib
from typing import Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tao_core.errors import InputError
from tao_core.files import read_input_bytes, write_output
from tao_core.governance.canonical import sha256_hex

PathLike = Union[str, "os.PathLike[str]"]


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """Short fingerprint: first 16 hex digits of SHA-256 over the raw public key."""
    return sha256_hex(raw_public(key))[:16]


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """Public key from 64 lower-case hex digits (raises ``ValueError`` otherwise)."""
    raw = bytes.fromhex(text)
    if len(raw) != 32 or raw.hex() != text:
        raise ValueError("public key must be 64 lower-case hex digits")
    return Ed25519PublicKey.from_public_bytes(raw)


#: the largest key file read (bytes)
MAX_KEY_FILE_BYTES = 64 * 1024


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_public_key(key: Ed25519PublicKey, path: PathLike, field: str = "pub_path") -> None:
    """Write ``key`` as PEM to ``path``, whole or not at all (``tao_core.files``)."""
    write_output(path, public_key_pem(key), field)


def _load_private_key(path: pathlib.Path, field: str) -> Ed25519PrivateKey:
    data = read_input_bytes(path, field, max_bytes=MAX_KEY_FILE_BYTES)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{field} {path}: not an unencrypted PEM private key ({exc}); "
            "give an Ed25519 key file, or a path that does not exist yet to create one"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{field} {path}: holds a {type(key).__name__}; an Ed25519 key is needed")
    return key


def load_private_key(path: PathLike, field: str = "key_path") -> Ed25519PrivateKey:
    """The Ed25519 private key in the file at ``path`` (``InputError`` naming ``field``)."""
    return _load_private_key(pathlib.Path(path), field)


def load_or_create_private_key(path: PathLike, field: str = "key_path") -> tuple[Ed25519PrivateKey, bool]:
    """Load the Ed25519 private key at ``path``, or create one there (mode 0600, written
    whole and never over an existing file). Returns ``(key, created)``. Raises
    ``InputError`` when the file exists but is not an unencrypted Ed25519 private key."""
    path = pathlib.Path(path)
    if os.path.lexists(path):
        return _load_private_key(path, field), False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        write_output(path, pem, field, mode=0o600, replace=False)
    except InputError:
        if os.path.lexists(path):  # another writer created it meanwhile: use that one
            return _load_private_key(path, field), False
        raise
    return key, True


def load_public_key(path: PathLike, field: str = "pubkey") -> Ed25519PublicKey:
    """Public key from a PEM public key file, a PEM private key file or a file holding
    64 hex digits. Raises ``InputError`` naming ``field`` and the file when it is none of these."""
    path = pathlib.Path(path)
    text = read_input_bytes(path, field, max_bytes=MAX_KEY_FILE_BYTES).strip()
    try:
        if text.startswith(b"-----BEGIN PUBLIC KEY"):
            key = serialization.load_pem_public_key(text)
        elif text.startswith(b"-----BEGIN PRIVATE KEY"):
            key = serialization.load_pem_private_key(text, password=None).public_key()
        else:
            key = public_key_from_hex(text.decode("ascii"))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{field} {path}: not an Ed25519 public key ({exc}); give the LEDGER.pub PEM file "
            "the writer produced"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{field} {path}: holds a {type(key).__name__}; an Ed25519 key is needed")
    return key


def embedded_key(public_key_hex: str, claimed_key_id: str, pubkey: Optional[Ed25519PublicKey],
                 where: str) -> tuple[Optional[Ed25519PublicKey], Optional[str]]:
    """The public key a signed record carries, checked: it parses, ``claimed_key_id`` is its
    key id, and it is ``pubkey`` when one is given. Returns (key, None), or (None, the
    reason, prefixed with ``where``) when a check fails."""
    try:
        key = public_key_from_hex(public_key_hex)
    except ValueError as exc:
        return None, f"{where}/public_key: invalid ({exc})"
    if claimed_key_id != key_id(key):
        return None, f"{where}/key_id: does not match its public key"
    if pubkey is not None and raw_public(pubkey) != raw_public(key):
        return None, f"{where}: signed by key {claimed_key_id}, not by the given public key {key_id(pubkey)}"
    return key, None


def verify_signature(key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` (128 lower-case hex digits) signs ``message`` under ``key``."""
    try:
        sig = bytes.fromhex(signature_hex)
    except (ValueError, TypeError):
        return False
    if len(sig) != 64 or sig.hex() != signature_hex:
        return False
    try:
        key.verify(sig, message)
    except InvalidSignature:
        return False
    return True
