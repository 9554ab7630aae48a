"""HTTP API of the server (FastAPI): device enrollment and the admin API (OpenAPI at ``/docs``).

Admin routes take ``Authorization: Bearer <token>``; the token's roles decide what it may do (the
library checks again: the HTTP layer is not the only guard). Handlers only parse, call one library
function and map its errors to HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from server.auth import AuthError, audit, audit_log
from server.errors import EnrollmentError
from server.rollout_policy import (
    ForbiddenError,
    InvalidTransitionError,
    Principal,
    Role,
    RolloutError,
    RolloutSpec,
)
from server.store import ServerStore
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


class EnrollTokensRequest(BaseModel):
    count: int = Field(1, ge=1, le=10_000)
    device_class: str | None = Field(None, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=32)
    ttl_s: float = Field(3600, gt=0, le=30 * 86400)


class ActionRequest(BaseModel):
    reason: str = Field("", max_length=1000)


class CreateRolloutRequest(BaseModel):
    spec: RolloutSpec
    reason: str = Field("", max_length=1000)


_bearer = HTTPBearer(auto_error=False)


def _principal(request: Request,
               cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    try:
        return request.app.state.store.tokens.authenticate(cred.credentials if cred else None)
    except AuthError as e:
        raise HTTPException(status_code=401, detail=str(e), headers={"WWW-Authenticate": "Bearer"}) from e


def _needs(*roles: Role) -> Callable[[Principal], Principal]:
    def check(who: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not who.roles & set(roles):
            raise HTTPException(status_code=403, detail=f"{who.name} needs role {' or '.join(roles)}")
        return who
    return check


Who = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_needs(Role.ADMIN))]


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except ForbiddenError as e:
        raise HTTPException(status_code=403, detail=str(e)) from e
    except InvalidTransitionError as e:
        raise HTTPException(status_code=409, detail=str(e)) from e
    except RolloutError as e:
        status = 404 if str(e).startswith("no rollout") else 400
        raise HTTPException(status_code=status, detail=str(e)) from e


def create_app(store: ServerStore, issuer: CredentialIssuer, trust_root: str | None) -> FastAPI:
    app = FastAPI(title="Linecrew server", version="0.1.0")
    app.state.store = store

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

    # ------------------------------------------------------------------ fleet
    @app.post("/v1/enroll-tokens")
    def enroll_tokens(req: EnrollTokensRequest, who: Admin) -> dict[str, list[str]]:
        tokens = [store.create_enroll_token(ttl_s=req.ttl_s, device_class=req.device_class, tags=req.tags)
                  for _ in range(req.count)]
        with store.db.transaction() as conn:
            audit(conn, who.name, "enroll_tokens.create", f"class:{req.device_class or '*'}", "",
                  {"count": req.count, "tags": req.tags})
        return {"tokens": tokens}

    @app.get("/v1/devices")
    def devices(who: Who) -> list[dict[str, Any]]:
        return store.fleet()

    @app.get("/v1/releases")
    def releases(who: Who) -> list[dict[str, Any]]:
        return store.releases.all()

    @app.get("/v1/audit")
    def audit_entries(who: Admin, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        return audit_log(store.db, target=target, limit=min(limit, 5000))

    # ------------------------------------------------------------------ rollouts
    @app.get("/v1/rollouts")
    def rollouts(who: Who) -> list[dict[str, Any]]:
        return store.rollouts.all()

    @app.post("/v1/rollouts", status_code=201)
    def create_rollout(req: CreateRolloutRequest, who: Who) -> dict[str, Any]:
        with _http_errors():
            rid = store.rollouts.create(req.spec, who, req.reason)
            return store.rollouts.status(rid)

    @app.get("/v1/rollouts/{rollout_id}")
    def rollout(rollout_id: str, who: Who) -> dict[str, Any]:
        with _http_errors():
            return store.rollouts.status(rollout_id)

    @app.get("/v1/rollouts/{rollout_id}/devices")
    def rollout_devices(rollout_id: str, who: Who) -> list[dict[str, Any]]:
        with _http_errors():
            store.rollouts.status(rollout_id)
            return store.rollouts.devices(rollout_id)

    @app.post("/v1/rollouts/{rollout_id}/{action}")
    def rollout_action(rollout_id: str, action: str, req: ActionRequest, who: Who) -> dict[str, Any]:
        if action not in ("approve", "start", "pause", "resume", "abort", "rollback"):
            raise HTTPException(status_code=404, detail=f"no rollout action {action!r}")
        with _http_errors():
            store.rollouts.act(rollout_id, action, who, req.reason)
            return store.rollouts.status(rollout_id)

    return app
