"""Enrollment: create the device's Ed25519 identity locally, prove it, receive broker credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linecrew.agent import identity
from linecrew.agent.errors import EnrollmentRefusedError, ServerUnreachableError
from linecrew.shared.identity import enrollment_challenge, load_or_create_key, public_key_b64, sign_b64


def enrollment_request(key: Ed25519PrivateKey, *, token: str, device_id: str, device_class: str) -> dict[str, str]:
    """The body of ``POST /v1/enroll``: the one-time token and proof that this device holds its key."""
    return {"token": token, "device_id": device_id, "device_class": device_class, "public_key": public_key_b64(key),
            "proof": sign_b64(key, enrollment_challenge(device_id, token))}


def post_enrollment(http: httpx.Client, body: dict[str, str]) -> dict[str, Any]:
    """Send an enrollment request; the server's answer (credentials, CA, trust root) or a clear error."""
    try:
        resp = http.post("/v1/enroll", json=body)
    except httpx.HTTPError as e:
        raise ServerUnreachableError(f"cannot reach {http.base_url}: {e}") from e
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
    folder.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(folder / "identity.key")
    body = enrollment_request(key, token=token, device_id=device_id, device_class=device_class)
    with httpx.Client(base_url=server_url.rstrip("/"), timeout=timeout_s) as http:
        data = post_enrollment(http, body)
    creds = identity.Credentials(
        device_id=data["device_id"], device_class=device_class, broker_url=data["broker_url"],
        username=data["username"], password=data["password"],
    )
    identity.save(folder, creds, data["ca_pem"], data.get("trust_root"))
    return creds
