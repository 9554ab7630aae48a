"""HTTP API of the server (FastAPI): device enrollment and the admin API (OpenAPI at ``/openapi.json``).

Admin routes take ``Authorization: Bearer <token>``; the token's roles decide what it may do (the
library checks again: the HTTP layer is not the only guard). Handlers only parse, call one library
function and map its errors to HTTP status codes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from linecrew.server.auth import audit, audit_log
from linecrew.server.errors import (
    AuthError,
    EnrollmentError,
    ForbiddenError,
    InvalidTransitionError,
    RolloutError,
    UnknownEscalationError,
)
from linecrew.server.metrics import ServerMetrics, fleet_summary
from linecrew.server.planner.dispatch import Job
from linecrew.server.planner.errors import PlannerError
from linecrew.server.planner.live import LivePlanner
from linecrew.server.rollout_policy import ROLES_FOR, Principal, Role, RolloutSpec, allowed_actions
from linecrew.server.store import ServerStore
from linecrew.shared.e2e import parse_public
from linecrew.shared.e2e import public_b64 as seal_public_b64
from linecrew.shared.errors import CryptoError
from linecrew.shared.identity import enrollment_challenge, pinned_token, verify_b64
from linecrew.shared.logs import log_context
from linecrew.shared.metrics import CostModel
from linecrew.shared.protocol import LINECREW_VERSION

log = logging.getLogger(__name__)
DASHBOARD = Path(__file__).parent / "dashboard"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# the dashboard loads only its own files and talks only to this server
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class EnrollRequest(BaseModel):
    token: str = Field(min_length=8, max_length=256)
    device_id: str = Field(min_length=2, max_length=63)
    device_class: str = Field(min_length=1, max_length=64)
    public_key: str = Field(min_length=40, max_length=64, description="base64 raw Ed25519 public key")
    proof: str = Field(max_length=128, description="signature of the enrollment challenge")
    seal_key: str | None = Field(None, max_length=64, description="base64 X25519 public key (end-to-end sealing)")


class EnrollResponse(BaseModel):
    device_id: str
    broker_url: str
    username: str
    password: str
    ca_pem: str
    trust_root: str | None = Field(None, description="release root metadata (root.json) to pin, if configured")
    server_seal_key: str = Field(description="the server's X25519 public key: sensitive fields are sealed to it")


class CredentialIssuer(Protocol):
    def add_device(self, device_id: str) -> str: ...
    def remove_device(self, device_id: str) -> None: ...
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


class AnswerRequest(BaseModel):
    answer: str = Field(min_length=1, max_length=4000)


class ReplanRequest(BaseModel):
    reason: str = Field("", max_length=1000)
    time_limit_s: float = Field(3.0, gt=0, le=60)
    max_moves: int | None = Field(None, ge=0, le=10_000, description="disruption budget: jobs it may move")


class RosterRequest(BaseModel):
    shifts: dict[str, tuple[int, int] | None] = Field(
        max_length=10_000, description="technician → (start, end) minutes since midnight, or null for off")
    time_limit_s: float = Field(3.0, gt=0, le=60)


class JobRequest(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field("", max_length=200)
    location: tuple[float, float]
    duration: int = Field(gt=0, le=24 * 60, description="minutes")
    window: tuple[int, int] = Field(description="earliest and latest start, minutes since midnight")
    skills: list[str] = Field(default_factory=list, max_length=16)
    priority: int = Field(3, ge=1, le=5, description="1 is most urgent")
    crew: int = Field(1, ge=1, le=6, description="people on site at once")
    qualified: int | None = Field(None, ge=1, le=6, description="how many of the crew need the skills")
    earliest_start: int | None = Field(None, ge=0, le=24 * 60, description="not before (parts ready)")


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
EscalationReader = Annotated[Principal, Depends(_needs(Role.EXPERT, Role.ADMIN))]
Answerer = Annotated[Principal, Depends(_needs(Role.EXPERT))]
Planner = Annotated[Principal, Depends(_needs(Role.PLANNER))]


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
    except PlannerError as e:  # an infeasible plan or budget, a roster naming someone unknown
        raise HTTPException(status_code=409, detail=str(e)) from e


def _database_answers(store: ServerStore) -> bool:
    try:
        return store.database_answers()
    except Exception:  # any driver failure means not ready; the reason is in the database's own log
        log.warning("readiness: database check failed", exc_info=True)
        return False


def create_app(store: ServerStore, issuer: CredentialIssuer, trust_root: str | None,
               cost: CostModel | None = None, *, broker_connected: Callable[[], bool] = lambda: True) -> FastAPI:
    # no /docs or /redoc: their pages load assets from a CDN and the dashboard is used offline; /openapi.json stays
    app = FastAPI(title="Linecrew server", version=LINECREW_VERSION, docs_url=None, redoc_url=None)
    app.state.store = store
    cost = cost or CostModel()
    metrics = ServerMetrics(store, cost)
    planner = LivePlanner(store)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """A request id on every request (the caller's X-Request-ID if sane), in logs and the reply;
        latency per route template (not per raw path: ids would explode the series)."""
        rid = request.headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        t0 = time.perf_counter()
        with log_context(request_id=rid):
            response = await call_next(request)
            elapsed = time.perf_counter() - t0
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.http.labels(request.method, route, str(response.status_code)).observe(elapsed)
            level = logging.DEBUG if request.method in ("GET", "HEAD") else logging.INFO
            log.log(level, "%s %s -> %d in %.1f ms", request.method, route, response.status_code, elapsed * 1000)
        response.headers["X-Request-ID"] = rid
        if request.url.path.startswith("/dashboard"):
            response.headers["Content-Security-Policy"] = _CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        """Prometheus exposition (no token: scrape it from the operations network only)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/whoami")
    def whoami(who: Who) -> dict[str, Any]:
        """Who the token is and what it may do (the dashboard shows only those buttons)."""
        return {"name": who.name, "roles": sorted(r.value for r in who.roles),
                "rollout_actions": sorted(a for a, roles in ROLES_FOR.items() if who.roles & roles),
                "can_replan": Role.PLANNER in who.roles, "can_answer": Role.EXPERT in who.roles,
                "can_read_escalations": bool(who.roles & {Role.EXPERT, Role.ADMIN})}

    @app.get("/v1/metrics/summary")
    def metrics_summary(who: Who) -> dict[str, Any]:
        return fleet_summary(store, cost)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, bool]:
        """Liveness: the process answers (a supervisor restarts it when this stops answering)."""
        return {"ok": True}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Readiness: the broker link is up and the database answers; 503 with the failing checks otherwise."""
        checks = {"broker": broker_connected(), "database": _database_answers(store)}
        return JSONResponse({"ready": all(checks.values()), **checks}, status_code=200 if all(checks.values()) else 503)

    @app.get("/v1/health")
    def health() -> dict[str, object]:
        return {"ok": True, "devices": len(store.registry.all())}

    @app.get("/v1/ca", include_in_schema=False)
    def ca() -> Response:
        """The project CA (public). A device checks it against the hash its enrollment token carries."""
        return Response(issuer.ca_pem, media_type="application/x-pem-file")

    @app.post("/v1/enroll", response_model=EnrollResponse)
    def enroll(req: EnrollRequest) -> EnrollResponse:
        try:
            verify_b64(req.public_key, enrollment_challenge(req.device_id, req.token), req.proof)
            if req.seal_key is not None:
                parse_public(req.seal_key)
            store.registry.enroll(token=req.token, device_id=req.device_id, device_class=req.device_class,
                                  public_key=req.public_key, seal_key=req.seal_key)
        except CryptoError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
        except EnrollmentError as e:
            raise HTTPException(status_code=403, detail=str(e)) from e
        password = issuer.add_device(req.device_id)
        return EnrollResponse(
            device_id=req.device_id, broker_url=issuer.device_url(), username=req.device_id,
            password=password, ca_pem=issuer.ca_pem, trust_root=trust_root,
            server_seal_key=seal_public_b64(store.seal_key),
        )

    # ------------------------------------------------------------------ fleet
    @app.post("/v1/enroll-tokens")
    def enroll_tokens(req: EnrollTokensRequest, who: Admin) -> dict[str, list[str]]:
        with store.db.transaction() as conn:  # the tokens and their audit entry commit together, or neither
            tokens = [pinned_token(store.registry.create_enroll_token(ttl_s=req.ttl_s, device_class=req.device_class,
                                                                      tags=req.tags), issuer.ca_pem or None)
                      for _ in range(req.count)]
            audit(conn, who.name, "enroll_tokens.create", f"class:{req.device_class or '*'}", "",
                  {"count": req.count, "tags": req.tags})
        return {"tokens": tokens}

    @app.get("/v1/devices")
    def devices(who: Who) -> list[dict[str, Any]]:
        return store.fleet()

    @app.post("/v1/devices/{device_id}/decommission")
    def decommission(device_id: str, req: ActionRequest, who: Admin) -> dict[str, Any]:
        """Retire a device (lost, replaced, scrapped): registration, queued messages and broker credentials go;
        the same id can enroll again with a new token."""
        try:
            dropped = store.decommission(device_id, actor=who.name, reason=req.reason)
        except EnrollmentError as e:
            raise HTTPException(status_code=404, detail=str(e)) from e
        issuer.remove_device(device_id)
        return {"device_id": device_id, "dropped_messages": dropped}

    @app.get("/v1/releases")
    def releases(who: Who) -> list[dict[str, Any]]:
        return store.releases.all()

    @app.get("/v1/audit")
    def audit_entries(who: Admin, target: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[dict[str, Any]]:
        return audit_log(store.db, target=target, limit=limit)

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
        """Status plus ``actions``: what this caller may do to it now (role and state both allow)."""
        with _http_errors():
            st = store.rollouts.status(rollout_id)
        st["actions"] = allowed_actions(st["state"], who, created_by=st.get("created_by"))
        return st

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

    # ------------------------------------------------------------------ plans
    @app.get("/v1/plans/latest")
    def latest_plan(who: Who) -> dict[str, Any]:
        return planner.view()

    @app.post("/v1/plans/replan")
    def replan(req: ReplanRequest, who: Planner) -> dict[str, Any]:
        with _http_errors():
            planner.replan(time_limit_s=req.time_limit_s, actor=who.name, reason=req.reason, max_moves=req.max_moves)
        return planner.view()

    @app.put("/v1/roster/{day}")
    def roster(day: dt.date, req: RosterRequest, who: Planner) -> dict[str, Any]:
        """The day's roster; a change to today's re-plans the day."""
        with _http_errors():
            done = planner.set_roster(day, req.shifts, actor=who.name, time_limit_s=req.time_limit_s)
        return {"day": day.isoformat(), "entries": len(req.shifts), "replanned": done[0] if done else None}

    @app.post("/v1/jobs", status_code=201)
    def add_job(req: JobRequest, who: Planner) -> dict[str, Any]:
        with store.db.transaction() as conn:  # the job and its audit entry commit together, or neither
            planner.add_job(Job(req.id, req.location, req.duration, req.window, frozenset(req.skills),
                                req.priority, req.title, crew=req.crew, qualified=req.qualified,
                                earliest_start=req.earliest_start))
            audit(conn, who.name, "job.create", f"job:{req.id}", "", {"priority": req.priority})
        return {"job_id": req.id}

    # ------------------------------------------------------------------ escalations
    @app.get("/v1/escalations")
    def escalations(who: EscalationReader, status: Literal["open", "answered", "all"] = "open") -> list[dict[str, Any]]:
        return store.escalations.list(status=None if status == "all" else status)

    @app.post("/v1/escalations/{escalation_id}/answer")
    def answer(escalation_id: str, req: AnswerRequest, who: Answerer) -> dict[str, Any]:
        try:
            device_id = store.escalations.answer(escalation_id, req.answer, expert=who.name)
        except UnknownEscalationError as e:
            raise HTTPException(status_code=404 if str(e).startswith("no ") else 409, detail=str(e)) from e
        return {"escalation_id": escalation_id, "device_id": device_id, "status": "answered"}

    return app
