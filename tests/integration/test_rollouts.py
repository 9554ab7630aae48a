"""Staged rollouts end to end: real server, real Mosquitto, simulated devices as real MQTT clients,
each store (SQLite and PostgreSQL), and a clock the test moves so soak times and timeouts pass at once.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from linecrew.server.app import Server
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.server.errors import RolloutError
from linecrew.server.rollout_policy import Principal, Role, RolloutSpec, WaveSpec
from linecrew.shared.mqtt import wait_for
from linecrew.tools.simulator import Behaviour, Fleet, choose_behaviours, enroll_fleet
from tests.integration.test_updates import Fleet as Authority

RM = Principal("rita", frozenset({Role.RELEASE_MANAGER}))
RM2 = Principal("sam", frozenset({Role.RELEASE_MANAGER}))  # the second person every rollout needs
CLASSES = {"x86-dev": 0.6, "rpi5": 0.4}


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("authority"))


@dataclass
class Env:
    server: Server
    clock: Clock
    authority: Authority
    config: ServerConfig
    folder: Path
    fleet: Fleet | None = None

    def release(self) -> None:
        a = self.authority
        manifest = a.manifest("B", 2, device_classes=sorted(CLASSES))
        self.server.store.releases.add(manifest, a.models["B"], [a.deltas[("A", "B")]])

    def devices(self, n: int, **behave: Any) -> Fleet:
        ids, ca, root = enroll_fleet(
            f"http://127.0.0.1:{self.config.http_port}",
            lambda cls, tags: self.server.store.registry.create_enroll_token(ttl_s=600, device_class=cls, tags=tags),
            count=n, classes=CLASSES, tags=["region-north"], version=1, sha256=self.authority.sha["A"])
        (self.folder / "ca.crt").write_text(ca)
        self.fleet = Fleet(ids, ca_file=str(self.folder / "ca.crt"), root=root,
                           behaviours=choose_behaviours(ids, **behave))
        self.fleet.start()
        assert self.fleet.wait_connected(30)
        store = self.server.store
        assert wait_for(lambda: sum(1 for d in store.fleet() if d["version"] == 1 and d["online"]) == n, 30)
        return self.fleet

    def restart(self) -> None:
        self.server.stop()
        self.server = Server(self.config, clock=self.clock)
        self.server.start()

    def drive(self, rid: str, until: set[str], *, step_s: float = 5.0, timeout: float = 90) -> dict[str, Any]:
        """Tick the rollout, moving the clock ``step_s`` per round, until it reaches a state in ``until``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.server.store.rollouts.tick()
            st = self.server.store.rollouts.status(rid)
            if st["state"] in until:
                return st
            time.sleep(0.25)
            self.clock.advance(step_s)
        raise AssertionError(f"rollout stuck: {json.dumps(self.server.store.rollouts.status(rid), default=str)}")


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path, authority: Authority) -> Iterator[Env]:
    url = request.getfixturevalue("postgres").create_database() if request.param == "postgres" else None
    cfg = ServerConfig(data_dir=tmp_path / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), release_root=authority.folder / "root.json", database_url=url,
                       workers=0)
    clock = Clock()
    e = Env(Server(cfg, clock=clock), clock, authority, cfg, tmp_path)
    e.server.start()
    e.release()
    try:
        yield e
    finally:
        if e.fleet:
            e.fleet.stop()
        e.server.stop()


def _spec(waves: list[WaveSpec], **kw: Any) -> RolloutSpec:
    return RolloutSpec(release="smollm2-field", version=2, tags=["region-north"], waves=waves, rate_per_s=1000, **kw)


def _waves(*percents: float, soak: float = 60, **kw: Any) -> list[WaveSpec]:
    return [WaveSpec(percent=p, soak_s=soak, device_timeout_s=kw.pop("timeout", 3600), **kw) for p in percents]


def _start(env: Env, spec: RolloutSpec) -> str:
    rm = env.server.store.rollouts
    rid = rm.create(spec, RM, "quarterly model")
    rm.act(rid, "approve", RM2, "reviewed eval report")
    rm.act(rid, "start", RM, "")
    return rid


def test_healthy_rollout_reaches_every_device_wave_by_wave(env: Env) -> None:
    fleet = env.devices(20)
    rid = _start(env, _spec(_waves(10, 50, 100)))
    st = env.drive(rid, {"finished", "paused", "rolled_back"})
    assert st["state"] == "finished", st
    assert [w["state"] for w in st["waves"]] == ["succeeded"] * 3
    per_class = Counter(d.ident.device_class for d in fleet.devices.values())
    cumulative = [sum(math.ceil(p * n) for n in per_class.values()) for p in (0.1, 0.5, 1.0)]
    assert [w["size"] for w in st["waves"]] == [cumulative[0], cumulative[1] - cumulative[0], 20 - cumulative[1]]
    assert wait_for(lambda: fleet.versions() == {2: 20}, 30), fleet.versions()
    assert st["counts"] == {"healthy": 20}
    canary = [d for d in env.server.store.rollouts.devices(rid) if d["wave"] == 0]
    assert {d["device_class"] for d in canary} == set(CLASSES), "every class is in the canary"
    delta = env.authority.deltas[("A", "B")].stat().st_size
    assert st["bytes_sent"] == 20 * delta, "each device got only the delta"
    actions = [a["action"] for a in reversed(env.server.store.db.query(
        "SELECT action FROM audit WHERE target=? ORDER BY id DESC", (f"rollout:{rid}",)))]
    assert actions[:3] == ["rollout.create", "rollout.approve", "rollout.start"]
    assert actions[-1] == "rollout.finish" and actions.count("wave.pass") == 3


def test_failures_in_one_class_stop_the_canary_and_roll_those_devices_back(env: Env) -> None:
    fleet = env.devices(20, fail_class="rpi5")
    rid = _start(env, _spec(_waves(10, 50, 100), on_failure="rollback"))
    st = env.drive(rid, {"finished", "paused", "rolled_back"})
    assert st["state"] == "rolled_back" and "class rpi5" in st["reason"], st
    assert [w["state"] for w in st["waves"]] == ["failed", "pending", "pending"]
    canary = {d["device_id"]: d for d in env.server.store.rollouts.devices(rid) if d["wave"] == 0}
    assert fleet.stats.get("offers") == len(canary), "no device past the canary was offered the release"
    assert wait_for(lambda: all(d.version == 1 for d in fleet.devices.values()), 30), fleet.versions()
    assert wait_for(lambda: all(d["state"] in ("failed", "rolled_back")
                                for d in env.server.store.rollouts.devices(rid) if d["wave"] == 0), 30)
    after = {d["device_id"]: d for d in env.server.store.rollouts.devices(rid)}
    assert all(after[d]["state"] == "failed" for d, x in canary.items() if x["device_class"] == "rpi5")
    assert all(after[d]["state"] == "rolled_back" for d, x in canary.items() if x["device_class"] == "x86-dev")
    assert all(d["state"] == "cancelled" for d in after.values() if d["wave"] is None)


def test_devices_that_never_answer_time_out_and_count_as_failures(env: Env) -> None:
    fleet = env.devices(10)
    silent = sorted(fleet.devices)[:3]
    for d in silent:
        fleet.devices[d].behaviour = Behaviour(silent=True)
    rid = _start(env, _spec(_waves(100, soak=0, timeout=120), on_failure="pause"))
    st = env.drive(rid, {"finished", "paused", "rolled_back"}, step_s=10)
    assert st["state"] == "paused" and "failed or timed out" in st["reason"], st
    states = {d["device_id"]: d["state"] for d in env.server.store.rollouts.devices(rid)}
    assert all(states[d] == "timed_out" for d in silent)
    assert sum(1 for s in states.values() if s == "healthy") == 7


def test_offline_devices_catch_up_when_they_return(env: Env) -> None:
    fleet = env.devices(10)
    away = sorted(fleet.devices)[:3]
    for d in away:
        fleet.devices[d].go_offline()
    assert wait_for(lambda: sum(1 for d in env.server.store.fleet() if not d["online"]) == 3, 15)
    rid = _start(env, _spec(_waves(100, soak=0, timeout=60)))
    st = env.drive(rid, {"finished", "paused", "rolled_back"}, step_s=20)
    assert st["state"] == "finished" and st["counts"] == {"healthy": 7, "waiting": 3}, st
    fleet.start(only=away)
    assert wait_for(lambda: fleet.versions() == {2: 10}, 60), fleet.versions()
    assert wait_for(lambda: env.server.store.rollouts.status(rid)["counts"] == {"healthy": 10}, 30)


def test_pause_and_resume_survive_a_server_restart(env: Env) -> None:
    fleet = env.devices(12)
    rid = _start(env, _spec(_waves(10, 100, soak=30)))
    rm = env.server.store.rollouts
    env.drive(rid, {"running"})
    assert wait_for(lambda: (rm.tick(), rm.status(rid)["waves"][0]["state"])[1] == "soaking", 30)
    rm.act(rid, "pause", Principal("ops", frozenset({Role.ADMIN})), "storm in the north")
    env.restart()
    rm = env.server.store.rollouts
    assert rm.status(rid)["state"] == "paused"
    env.clock.advance(3600)
    rm.tick()
    assert rm.status(rid)["waves"][1]["state"] == "pending", "a paused rollout does not advance"
    rm.act(rid, "resume", RM, "storm over")
    st = env.drive(rid, {"finished", "rolled_back"})
    assert st["state"] == "finished"
    assert wait_for(lambda: fleet.versions() == {2: 12}, 60), fleet.versions()


def test_only_a_release_manager_token_may_approve_or_start(env: Env) -> None:
    api = f"http://127.0.0.1:{env.config.http_port}"
    tokens = env.server.store.tokens
    env.devices(3)
    rm_token = tokens.create("rita", ["release-manager"])
    reviewer = tokens.create("sam", ["release-manager"])
    planner, admin = tokens.create("paul", ["planner"]), tokens.create("ada", ["admin"])
    spec = _spec(_waves(100, soak=0)).model_dump()

    def post(path: str, token: str | None, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(api + path, json=body, headers=headers, timeout=30)

    assert post("/v1/rollouts", None, {"spec": spec}).status_code == 401
    assert post("/v1/rollouts", "lct_forged", {"spec": spec}).status_code == 401
    assert post("/v1/rollouts", planner, {"spec": spec}).status_code == 403
    created = post("/v1/rollouts", rm_token, {"spec": spec, "reason": "v2"})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    for who in (planner, admin):
        r = post(f"/v1/rollouts/{rid}/approve", who, {"reason": "lgtm"})
        assert r.status_code == 403 and "release-manager" in r.json()["detail"]
    assert post(f"/v1/rollouts/{rid}/start", rm_token, {}).status_code == 409, "not approved yet"
    own = post(f"/v1/rollouts/{rid}/approve", rm_token, {"reason": "lgtm"})
    assert own.status_code == 403 and "two-person rule" in own.json()["detail"], "no one approves their own rollout"
    assert post(f"/v1/rollouts/{rid}/approve", reviewer, {"reason": "lgtm"}).status_code == 200
    assert post(f"/v1/rollouts/{rid}/start", admin, {}).status_code == 403
    started = post(f"/v1/rollouts/{rid}/start", rm_token, {})
    assert started.status_code == 200 and started.json()["state"] == "running"
    log = httpx.get(api + "/v1/audit", params={"target": f"rollout:{rid}"},
                    headers={"Authorization": f"Bearer {admin}"}, timeout=30).json()
    assert [(e["actor"], e["action"]) for e in reversed(log)][:3] == [
        ("rita", "rollout.create"), ("sam", "rollout.approve"), ("rita", "rollout.start")]
    assert log[-1]["detail"]["approval"] == "a second release manager"


def test_a_rollout_that_matches_no_device_is_refused_at_creation(env: Env) -> None:
    env.devices(2)
    rm = env.server.store.rollouts
    before = len(rm.all())
    with pytest.raises(RolloutError, match="no enrolled device matches"):
        rm.create(RolloutSpec(release="smollm2-field", version=2, tags=["region-nowhere"],
                              waves=_waves(100, soak=0)), RM, "typo in the tag")
    assert len(rm.all()) == before, "nothing was created"
