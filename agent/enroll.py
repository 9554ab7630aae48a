"""Enrollment: create the device's Ed25519 identity locally, prove it, receive broker credentials."""

from __future__ import annotations

from pathlib import Path

import httpx

from linecrew.agent import identity
from linecrew.agent.errors import EnrollmentRefusedError, ServerUnreachableError
from linecrew.shared.identity import enrollment_challenge, load_or_create_key, public_key_b64, sign_b64


def enroll(*, folder: Path, server_url: str, token: str, device_id: str, device_class: str,
           timeout_s: float = 30.0) -> identity.Credentials:
    folder.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(folder / "identity.key")
    body = {
        "token": token,
        "device_id": device_id,
        "device_class": device_class,
        "public_key": public_key_b64(key),
        "proof": sign_b64(key, enrollment_challenge(device_id, token)),
    }
    try:
        resp = httpx.post(f"{server_url.rstrip('/')}/v1/enroll", json=body, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise ServerUnreachableError(f"cannot reach {server_url}: {e}") from e
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise EnrollmentRefusedError(f"server refused enrollment ({resp.status_code}): {detail}")
    data = resp.json()
    creds = identity.Credentials(
        device_id=data["device_id"], device_class=device_class, broker_url=data["broker_url"],
        username=data["username"], password=data["password"],
    )
    identity.save(folder, creds, data["ca_pem"], data.get("trust_root"))
    return creds
