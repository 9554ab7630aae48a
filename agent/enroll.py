"""Enrollment: create the device's Ed25519 identity locally, prove it, receive broker credentials."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from linecrew.agent import identity
from linecrew.agent.errors import EnrollmentRefusedError, ServerUnreachableError
from linecrew.agent.identity import SEAL_KEY_FILE
from linecrew.shared.e2e import load_or_create_seal_key
from linecrew.shared.e2e import public_b64 as seal_public_b64
from linecrew.shared.errors import CryptoError
from linecrew.shared.identity import (
    ca_cert_hash,
    enrollment_challenge,
    load_or_create_key,
    public_key_b64,
    sign_b64,
    split_token,
)


def enrollment_request(key: Ed25519PrivateKey, *, token: str, device_id: str, device_class: str,
                       seal_key: X25519PrivateKey) -> dict[str, str]:
    """The body of ``POST /v1/enroll``: the one-time token, proof that this device holds its key, and the public
    half of its end-to-end sealing key."""
    return {"token": token, "device_id": device_id, "device_class": device_class, "public_key": public_key_b64(key),
            "proof": sign_b64(key, enrollment_challenge(device_id, token)), "seal_key": seal_public_b64(seal_key)}


def post_enrollment(http: httpx.Client, body: dict[str, str], *, attempts: int = 5) -> dict[str, Any]:
    """Send an enrollment request; the server's answer (credentials, CA, trust root) or a clear error. A busy
    server (429, many devices enrolling from one address) is asked again after the time it names."""
    for attempt in range(attempts):
        try:
            resp = http.post("/v1/enroll", json=body)
        except httpx.HTTPError as e:
            raise ServerUnreachableError(f"cannot reach {http.base_url}: {e}") from e
        if resp.status_code != 429 or attempt == attempts - 1:
            break
        time.sleep(min(30.0, float(resp.headers.get("retry-after", "1") or 1)))  # the server's own back-off
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise EnrollmentRefusedError(f"server refused enrollment ({resp.status_code}): {detail}")
    data: dict[str, Any] = resp.json()
    return data


def enroll(*, folder: Path, server_url: str, token: str, device_id: str, device_class: str,
           timeout_s: float = 30.0) -> identity.Credentials:
    """Enroll once. A token that carries its server's CA hash pins the server: over HTTPS the CA is fetched,
    checked against the hash and then the only CA trusted for the enrollment call; over plain HTTP (loopback
    only, for trying it out) the CA in the answer must match the hash. A mismatch stores nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    secret, pin = split_token(token)
    key = load_or_create_key(folder / "identity.key")
    body = enrollment_request(key, token=secret, device_id=device_id, device_class=device_class,
                              seal_key=load_or_create_seal_key(folder / SEAL_KEY_FILE))
    base = server_url.rstrip("/")
    verify: ssl.SSLContext | bool = True
    if base.startswith("https://") and pin is not None:
        verify = ssl.create_default_context(cadata=_fetch_pinned_ca(base, pin, timeout_s))
    with httpx.Client(base_url=base, timeout=timeout_s, verify=verify) as http:
        data = post_enrollment(http, body)
    if pin is not None and ca_cert_hash(data["ca_pem"]) != pin:
        raise EnrollmentRefusedError("the server's CA does not match the hash in the token: a man in the middle, "
                                     "or the token is for another server; nothing was stored")
    creds = identity.Credentials(
        device_id=data["device_id"], device_class=device_class, broker_url=data["broker_url"],
        username=data["username"], password=data["password"],
    )
    identity.save(folder, creds, data["ca_pem"], data.get("trust_root"), data.get("server_seal_key"))
    return creds


def _fetch_pinned_ca(base: str, pin: str, timeout_s: float) -> str:
    """The server's CA over an unverified TLS connection, accepted only if its hash is the pinned one."""
    try:
        resp = httpx.get(f"{base}/v1/ca", timeout=timeout_s, verify=False)
    except httpx.HTTPError as e:
        raise ServerUnreachableError(f"cannot reach {base}: {e}") from e
    ca_pem = resp.text if resp.status_code == 200 else ""
    try:
        ok = ca_cert_hash(ca_pem) == pin
    except CryptoError:
        ok = False
    if not ok:
        raise EnrollmentRefusedError("the server's CA does not match the hash in the token: a man in the middle, "
                                     "or the token is for another server; nothing was stored")
    return ca_pem
