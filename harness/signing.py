"""Ed25519 signatures over run manifests and the ledger head.

A signature file is JSON: ``{"algorithm": "ed25519", "key": <fingerprint>, "signature":
<base64>, "signed": <what was signed, as text>}``. Public keys are kept beside the reports in
``keys/<fingerprint>.pub`` so old runs stay verifiable after a key rotation; an auditor who
wants independent assurance passes the public key they hold (``verify --public-key``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harness.errors import ConfigError

KEYS_DIR = "keys"


def fingerprint(public: Ed25519PublicKey) -> str:
    """``ed25519:`` and the first 32 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate(path: Path) -> str:
    """Write a new private key (0600) and its ``.pub``; the fingerprint."""
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    Path(f"{path}.pub").write_bytes(public_pem(key.public_key()))
    return fingerprint(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a usable signing key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the signing key must be Ed25519")
    return key


def load_public(data: bytes, origin: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"{origin}: not a public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{origin}: not an Ed25519 public key")
    return key


def signature(key: Ed25519PrivateKey, signed: str) -> bytes:
    """The signature file's content for the text ``signed``."""
    sig = key.sign(signed.encode())
    doc = {
        "algorithm": "ed25519",
        "key": fingerprint(key.public_key()),
        "signature": base64.b64encode(sig).decode(),
        "signed": signed,
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def publish(key: Ed25519PrivateKey, reports: Path) -> None:
    """Keep the public key beside the reports, named by its fingerprint."""
    public = key.public_key()
    target = reports / KEYS_DIR / f"{fingerprint(public).replace(':', '-')}.pub"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(public_pem(public))


def known_keys(reports: Path) -> dict[str, Ed25519PublicKey]:
    keys = {}
    for file in sorted((reports / KEYS_DIR).glob("*.pub")):
        key = load_public(file.read_bytes(), str(file))
        keys[fingerprint(key)] = key
    return keys


def check(doc_bytes: bytes, expected: str, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None if the signature file signs ``expected`` with one of ``keys``; else what is wrong."""
    try:
        doc = json.loads(doc_bytes)
        sig = base64.b64decode(doc["signature"], validate=True)
        signed, key_id = str(doc["signed"]), str(doc["key"])
    except (ValueError, KeyError, TypeError):
        return "signature file is malformed"
    if signed != expected:
        return "signature covers different content"
    key = keys.get(key_id)
    if key is None:
        return f"signed by an unknown key {key_id}"
    try:
        key.verify(sig, signed.encode())
    except InvalidSignature:
        return "bad signature"
    return None
