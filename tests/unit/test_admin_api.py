"""Roles and audit of the admin API's planner, escalation and metrics routes (real SQLite store, the
FastAPI app in-process; the browser tests drive the same routes through a real server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from linecrew.server.api import create_app
from linecrew.server.planner.dispatch import Technician
from linecrew.server.planner.live import LivePlanner
from linecrew.server.store import ServerStore
from linecrew.shared.protocol import Message, decode, encode, make_envelope, new_id
from tests.helpers.issuer import NoBrokerIssuer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, ServerStore, dict[str, dict[str, str]]]]:
    store = ServerStore(tmp_path)
    auth = {name: {"Authorization": f"Bearer {store.tokens.create(name, [role])}"} for name, role in
            (("ada", "admin"), ("rita", "release-manager"), ("paul", "planner"), ("eve", "expert"))}
    with TestClient(create_app(store, NoBrokerIssuer(), None)) as client:
        yield client, store, auth
    store.close()


def _escalate(store: ServerStore, device_id: str = "truck-1") -> str:
    with store.db.transaction() as conn:
        conn.execute("INSERT INTO devices (id, device_class, public_key, enrolled_at) VALUES (?,?,?,?)",
                     (device_id, "x86-dev", "k", 0.0))
    eid = new_id()
    env = make_envelope("escalation", {"escalation_id": eid, "question": "is it safe?", "reason": "r",
                                       "intent": "safety_emergency"}, device_id=device_id, stream="esc", seq=1)
    msg: Message = decode(encode(env))
    with store.db.transaction() as conn:
        store.apply_device_message(conn, device_id, msg)
    return eid


def test_escalations_are_read_by_experts_and_admins_and_answered_only_by_experts(api: tuple) -> None:
    client, store, auth = api
    eid = _escalate(store)
    assert client.get("/v1/escalations", headers=auth["paul"]).status_code == 403
    assert client.get("/v1/escalations").status_code == 401
    assert [e["question"] for e in client.get("/v1/escalations", headers=auth["ada"]).json()] == ["is it safe?"]
    assert client.post(f"/v1/escalations/{eid}/answer", json={"answer": "yes"}, headers=auth["ada"]).status_code == 403
    assert client.post(f"/v1/escalations/{eid}/answer", json={"answer": ""}, headers=auth["eve"]).status_code == 422
    r = client.post(f"/v1/escalations/{eid}/answer", json={"answer": "Yes, once grounded."}, headers=auth["eve"])
    assert r.status_code == 200 and r.json()["device_id"] == "truck-1"
    again = client.post(f"/v1/escalations/{eid}/answer", json={"answer": "again"}, headers=auth["eve"])
    assert again.status_code == 409
    assert client.post("/v1/escalations/nope/answer", json={"answer": "x"}, headers=auth["eve"]).status_code == 404
    assert store.outbox.depth("truck-1") == 1, "the answer is queued to the device once"
    answered = client.get("/v1/escalations?status=answered", headers=auth["eve"]).json()
    assert answered[0]["answer"] == "Yes, once grounded." and answered[0]["expert"] == "eve"


def test_planners_add_jobs_and_replan_and_every_write_is_audited(api: tuple) -> None:
    client, store, auth = api
    LivePlanner(store).add_technician(Technician("ana", frozenset({"lv"}), (0, 0), (420, 930)))
    job = {"id": "JOB-1", "title": "Meter swap", "location": [3, 4], "duration": 30, "window": [480, 600]}
    assert client.post("/v1/jobs", json=job, headers=auth["eve"]).status_code == 403
    assert client.post("/v1/jobs", json={**job, "priority": 9}, headers=auth["paul"]).status_code == 422
    assert client.post("/v1/jobs", json=job, headers=auth["paul"]).status_code == 201
    assert client.post("/v1/plans/replan", json={}, headers=auth["ada"]).status_code == 403
    view = client.post("/v1/plans/replan", json={"reason": "storm"}, headers=auth["paul"]).json()
    assert view["version"] == 1 and [j["job_id"] for j in view["technicians"][0]["route"]] == ["JOB-1"]
    assert client.get("/v1/plans/latest", headers=auth["eve"]).json()["version"] == 1
    audit = client.get("/v1/audit", headers=auth["ada"]).json()
    assert [(a["actor"], a["action"], a["reason"]) for a in audit][:2] == [("paul", "plan.replan", "storm"),
                                                                            ("paul", "job.create", "")]


def test_the_roster_and_the_rules_of_the_day_through_the_api(api: tuple) -> None:
    import datetime as dt

    client, store, auth = api
    planner = LivePlanner(store)
    for tid, x in (("ana", 0), ("ben", 5)):
        planner.add_technician(Technician(tid, frozenset({"lv", "hv"}), (x, 0), (420, 930)))
    crew = {"id": "T-3", "location": [3, 4], "duration": 60, "window": [480, 900], "skills": ["hv"], "crew": 2,
            "earliest_start": 600}
    assert client.post("/v1/jobs", json=crew, headers=auth["paul"]).status_code == 201
    assert client.post("/v1/jobs", json={**crew, "id": "X", "crew": 9}, headers=auth["paul"]).status_code == 422
    view = client.post("/v1/plans/replan", json={"max_moves": 0}, headers=auth["paul"]).json()
    crews = {t["id"]: [j for j in t["route"] if j["job_id"] == "T-3"] for t in view["technicians"]}
    assert all(len(r) == 1 and r[0]["start"] >= 600 for r in crews.values())
    assert crews["ana"][0]["why"] or crews["ben"][0]["why"], "the lead's assignment says why"
    today = dt.date.today().isoformat()
    assert client.put(f"/v1/roster/{today}", json={"shifts": {"ben": None}}, headers=auth["eve"]).status_code == 403
    bad = client.put(f"/v1/roster/{today}", json={"shifts": {"zed": None}}, headers=auth["paul"])
    assert bad.status_code == 409 and "zed" in bad.json()["detail"]
    r = client.put(f"/v1/roster/{today}", json={"shifts": {"ben": None}, "time_limit_s": 1}, headers=auth["paul"])
    assert r.status_code == 200 and r.json()["replanned"] == 2
    latest = client.get("/v1/plans/latest", headers=auth["eve"]).json()
    [left] = latest["unassigned"]
    assert left["job_id"] == "T-3" and left["fix"], "a crew of two with one person left: says what would place it"
    assert {m["job_id"] for m in latest["moved"]} == {"T-3"}


def test_whoami_metrics_summary_and_openapi(api: tuple) -> None:
    client, _, auth = api
    me = client.get("/v1/whoami", headers=auth["rita"]).json()
    assert me["roles"] == ["release-manager"] and "approve" in me["rollout_actions"] and not me["can_answer"]
    assert client.get("/v1/whoami", headers=auth["ada"]).json()["rollout_actions"] == ["abort", "pause", "rollback",
                                                                                       "status"]
    summary = client.get("/v1/metrics/summary", headers=auth["paul"]).json()
    assert summary["total"]["requests"] == 0 and summary["backlog"]["tasks"] == 0
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/devices", "/v1/releases", "/v1/rollouts", "/v1/plans/latest", "/v1/plans/replan",
              "/v1/escalations", "/v1/escalations/{escalation_id}/answer", "/v1/metrics/summary", "/v1/audit"):
        assert p in paths, p
    assert client.get("/dashboard/").status_code == 200 and "app.js" in client.get("/dashboard/").text


def test_healthz_answers_and_readyz_reports_the_broker_and_database(tmp_path: Path) -> None:
    store = ServerStore(tmp_path)
    up = {"broker": False}
    with TestClient(create_app(store, NoBrokerIssuer(), None, broker_connected=lambda: up["broker"])) as client:
        assert client.get("/healthz").json() == {"ok": True}
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json() == {"ready": False, "broker": False, "database": True}
        up["broker"] = True
        assert client.get("/readyz").status_code == 200
        store.close()
        gone = client.get("/readyz")
        assert gone.status_code == 503 and gone.json()["database"] is False


class _AuditFailed(RuntimeError):
    pass


def _failing_audit(*_a: object, **_k: object) -> None:
    raise _AuditFailed("audit write failed after the change")


@pytest.mark.parametrize(("who", "method", "path", "body", "table"), [
    ("ada", "post", "/v1/enroll-tokens", {"count": 3, "ttl_s": 60}, "enroll_tokens"),
    ("paul", "post", "/v1/jobs", {"id": "JOB-9", "title": "t", "location": [1, 2], "duration": 30,
                                  "window": [480, 600]}, "jobs"),
])
def test_an_audited_change_and_its_audit_entry_commit_together_or_not_at_all(
        api: tuple, monkeypatch: pytest.MonkeyPatch, who: str, method: str, path: str, body: dict[str, object],
        table: str) -> None:
    client, store, auth = api
    before = store.db.scalar("SELECT COUNT(*) FROM audit")
    monkeypatch.setattr("linecrew.server.api.audit", _failing_audit)
    with pytest.raises(_AuditFailed):
        getattr(client, method)(path, json=body, headers=auth[who])
    assert store.db.scalar(f"SELECT COUNT(*) FROM {table}") == 0, "the change was rolled back with its audit entry"
    assert store.db.scalar("SELECT COUNT(*) FROM audit") == before
    monkeypatch.undo()
    assert getattr(client, method)(path, json=body, headers=auth[who]).status_code in (200, 201)
    assert store.db.scalar(f"SELECT COUNT(*) FROM {table}") > 0
    assert store.db.scalar("SELECT COUNT(*) FROM audit") > before


def test_a_token_and_its_audit_entry_commit_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ServerStore(tmp_path)
    monkeypatch.setattr("linecrew.server.auth.audit", _failing_audit)
    with pytest.raises(_AuditFailed):
        store.tokens.create("mallory", ["admin"])
    assert store.db.scalar("SELECT COUNT(*) FROM api_tokens") == 0
    assert store.db.scalar("SELECT COUNT(*) FROM audit") == 0
    store.close()


def test_tokens_expire_and_are_listed_without_the_secret(tmp_path: Path) -> None:
    from linecrew.server.errors import AuthError

    store = ServerStore(tmp_path)
    short = store.tokens.create("temp", ["planner"], ttl_s=0.001)
    forever = store.tokens.create("robot", ["admin"], ttl_s=0)
    time.sleep(0.01)  # the token's own 1 ms lifetime, not a stand-in for an event
    with pytest.raises(AuthError, match="expired"):
        store.tokens.authenticate(short)
    assert store.tokens.authenticate(forever).name == "robot"
    listed = {r["name"]: r for r in store.tokens.list()}
    assert listed["robot"]["expires"] is None and listed["temp"]["roles"] == ["planner"]
    assert short not in str(listed) and forever not in str(listed)
    store.close()


def test_the_audit_limit_is_bounded_and_no_page_loads_assets_from_a_cdn(api: tuple) -> None:
    client, _store, auth = api
    for bad in (-1, 0, 5001):
        assert client.get("/v1/audit", params={"limit": bad}, headers=auth["ada"]).status_code == 422
    assert client.get("/v1/audit", params={"limit": 5000}, headers=auth["ada"]).status_code == 200
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert "/v1/rollouts" in client.get("/openapi.json").json()["paths"]
