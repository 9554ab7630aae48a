"""End-to-end sealing of sensitive payload fields between a device and the server.

A broker — its disk, its persistence file, whoever operates it (a managed EMQX or HiveMQ cluster) — carries
these messages but sees only ciphertext for the fields listed in ``SEALED_FIELDS``: notes, escalation questions
and their context, expert answers, task results. Each side holds an X25519 key pair; the server's public key
reaches the device in the (pinned) enrollment answer and the device's in its enrollment request. A sealed field
set is ``ephemeral X25519 → HKDF-SHA256 → AES-256-GCM``, bound to the message id, type and field names as
associated data, so a ciphertext cannot be replayed into another message.

Wire form: the sealed fields are removed from the payload and replaced by ``"_sealed": "<base64>"``; the receiver
opens it before the payload is validated (``shared.protocol.decode(raw, opener=...)``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from linecrew.shared.errors import CryptoError
from linecrew.shared.fsutil import create_exclusive

SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    "note": ("text",),
    "escalation": ("question", "context"),
    "escalation_answer": ("answer",),
    "task_result": ("result",),
}
SEALED_KEY = "_sealed"
_VERSION = b"\x01"
_INFO = b"linecrew-e2e-v1"
log = logging.getLogger(__name__)


def load_or_create_seal_key(path: Path) -> X25519PrivateKey:
    if not path.exists():  # created once: a second process starting together reads the first one's key
        key = X25519PrivateKey.generate()
        create_exclusive(path, key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption()), mode=0o600)
    try:
        return X25519PrivateKey.from_private_bytes(path.read_bytes())
    except ValueError as e:
        raise CryptoError(f"{path} is not an X25519 private key") from e


def public_b64(key: X25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)).decode()


def parse_public(b64: str) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except ValueError as e:
        raise CryptoError("not an X25519 public key") from e


def _key(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(shared)


def _aad(message_id: str, type_: str) -> bytes:
    return f"{message_id}|{type_}".encode()


def seal_payload(payload: dict[str, Any], *, message_id: str, type_: str, recipient: X25519PublicKey
                 ) -> dict[str, Any]:
    """The payload with its sensitive fields sealed to ``recipient`` (unchanged for other types)."""
    present = [f for f in SEALED_FIELDS.get(type_, ()) if f in payload]
    if not present:
        return payload
    secret = json.dumps({f: payload[f] for f in present}, separators=(",", ":")).encode()
    eph = X25519PrivateKey.generate()
    nonce = os.urandom(12)
    ct = AESGCM(_key(eph.exchange(recipient))).encrypt(nonce, secret, _aad(message_id, type_))
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    rest = {k: v for k, v in payload.items() if k not in present}
    return {**rest, SEALED_KEY: base64.b64encode(_VERSION + eph_pub + nonce + ct).decode()}


def open_payload(payload: dict[str, Any], *, message_id: str, type_: str, key: X25519PrivateKey
                 ) -> dict[str, Any]:
    """The payload with its sealed fields opened; a wrong key, tampering or a moved ciphertext is CryptoError."""
    sealed = payload.get(SEALED_KEY)
    if sealed is None:
        return payload
    try:
        blob = base64.b64decode(str(sealed), validate=True)
    except ValueError as e:
        raise CryptoError("sealed fields are not base64") from e
    if len(blob) < 1 + 32 + 12 + 16 or blob[:1] != _VERSION:
        raise CryptoError("not a sealed field set")
    try:
        secret = AESGCM(_key(key.exchange(X25519PublicKey.from_public_bytes(blob[1:33])))).decrypt(
            blob[33:45], blob[45:], _aad(message_id, type_))
    except (InvalidTag, ValueError) as e:
        raise CryptoError("sealed fields failed authentication (wrong key, tampered, or moved)") from e
    opened = json.loads(secret)
    if not isinstance(opened, dict) or not set(opened) <= set(SEALED_FIELDS.get(type_, ())):
        raise CryptoError(f"sealed fields do not belong to a {type_}")
    rest = {k: v for k, v in payload.items() if k != SEALED_KEY and k not in opened}
    return {**rest, **opened}


class Sealer:
    """Seals outgoing sensitive fields to each peer's public key. A peer with no key yet (a device enrolled before
    end-to-end sealing, or a device not enrolled yet, whose server key is unknown) gets them as they are, logged
    once per peer: at rest they are still sealed with the field key."""

    def __init__(self, key_for: Callable[[str], X25519PublicKey | None]) -> None:
        self.key_for = key_for
        self._warned: set[str] = set()

    def __call__(self, peer: str, message_id: str, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        if type_ not in SEALED_FIELDS:
            return payload
        recipient = self.key_for(peer)
        if recipient is None:
            if peer not in self._warned:
                self._warned.add(peer)
                log.warning("no end-to-end key for %s: its %s messages are not sealed in transit", peer, type_)
            return payload
        return seal_payload(payload, message_id=message_id, type_=type_, recipient=recipient)


Opener = Callable[[dict[str, Any], str, str], dict[str, Any]]  # payload, message id, type -> opened payload


def opener_for(key: X25519PrivateKey) -> Opener:
    return lambda payload, message_id, type_: open_payload(payload, message_id=message_id, type_=type_, key=key)
