"""HTTP API of the server (FastAPI): enrollment now; the admin API grows here.

Handlers only parse, call one library function and map its errors to HTTP status codes.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from server.errors import EnrollmentError
from server.store import SqliteServerStore
from shared.errors import CryptoError
from shared.identity import enrollment_challenge, verify_b64


class EnrollRequest(BaseModel):
    token: str = Field(min_length=8, max_length=256)
    device_id: str = Field(min_length=2, max_length=63)
    device_class: str = Field(min_length=1, max_length=64)
    public_key: str = Field(min_length=40, max_length=64, description="base64 raw Ed25519 public key")
    proof: str = Field(max_length=128, description="signature of the enrollment challenge")


class EnrollResponse(BaseModel):
    device_id: str
    broker_url: str
    username: str
    password: str
    ca_pem: str
    trust_root: str | None = Field(None, description="release root metadata (root.json) to pin, if configured")


class CredentialIssuer(Protocol):
    def add_device(self, device_id: str) -> str: ...
    def device_url(self, host: str | None = None) -> str: ...
    @property
    def ca_pem(self) -> str: ...


def create_app(store: SqliteServerStore, issuer: CredentialIssuer, trust_root: str | None) -> FastAPI:
    app = FastAPI(title="Linecrew server", version="0.1.0")

    @app.get("/v1/health")
    def health() -> dict[str, object]:
        return {"ok": True, "devices": len(store.devices())}

    @app.post("/v1/enroll", response_model=EnrollResponse)
    def enroll(req: EnrollRequest) -> EnrollResponse:
        try:
            verify_b64(req.public_key, enrollment_challenge(req.device_id, req.token), req.proof)
            store.enroll(token=req.token, device_id=req.device_id, device_class=req.device_class,
                         public_key=req.public_key)
        except CryptoError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
        except EnrollmentError as e:
            raise HTTPException(status_code=403, detail=str(e)) from e
        password = issuer.add_device(req.device_id)
        return EnrollResponse(
            device_id=req.device_id, broker_url=issuer.device_url(), username=req.device_id,
            password=password, ca_pem=issuer.ca_pem, trust_root=trust_root,
        )

    return app
