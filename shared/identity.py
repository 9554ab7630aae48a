"""Ed25519 identities: a device's key pair and the proof of possession it sends at enrollment."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from linecrew.shared.errors import CryptoError
from linecrew.shared.fsutil import atomic_write


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as e:
            raise CryptoError(f"{path} is not a PEM private key") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise CryptoError(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(path, pem, mode=0o600)
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def enrollment_challenge(device_id: str, token: str) -> bytes:
    return f"linecrew-enroll:v1:{device_id}:{token}".encode()


def sign_b64(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def verify_b64(public_b64: str, data: bytes, signature_b64: str) -> None:
    try:
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        pub.verify(base64.b64decode(signature_b64, validate=True), data)
    except (ValueError, InvalidSignature) as e:
        raise CryptoError("proof of possession does not verify") from e
