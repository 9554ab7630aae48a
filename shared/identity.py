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


# ------------------------------------------------------------------------ first contact (kubeadm-style pinning)
TOKEN_PIN_SEP = "."  # token secrets are URL-safe base64, which never contains a dot


def ca_cert_hash(ca_pem: str) -> str:
    """``sha256:<hex>`` of the CA certificate (DER), as ``kubeadm --discovery-token-ca-cert-hash`` prints it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError as e:
        raise CryptoError("not a PEM certificate") from e
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def pinned_token(secret: str, ca_pem: str | None) -> str:
    """The enrollment token as handed to a technician: the secret and, when there is a CA, its hash."""
    return f"{secret}{TOKEN_PIN_SEP}{ca_cert_hash(ca_pem).removeprefix('sha256:')}" if ca_pem else secret


def split_token(token: str) -> tuple[str, str | None]:
    """``(secret, "sha256:<hex>" or None)`` from a token that may carry its server's CA hash."""
    secret, _, pin = token.partition(TOKEN_PIN_SEP)
    return secret, (f"sha256:{pin.lower()}" if pin else None)
