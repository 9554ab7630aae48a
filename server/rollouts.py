"""Staged rollouts: a persisted state machine per rollout, per wave and per device, driven by ``tick``.

Every decision comes from :mod:`server.rollout_policy`; this module reads the registries, writes the
outcome and its audit record in one transaction, and queues offers and rollback commands through the
durable outbox (so an offline device gets them when it returns). ``tick`` is idempotent and safe to run
from several server processes: each runs in one write transaction. The clock is injected, so tests
drive soak times and timeouts without waiting.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from linecrew.server.auth import audit
from linecrew.server.devices import DeviceRegistry
from linecrew.server.errors import RolloutError
from linecrew.server.rollout_policy import (
    D,
    DeviceState,
    GateDecision,
    Principal,
    RolloutSpec,
    RolloutState,
    authorize,
    check_approver,
    count_states,
    device_order,
    evaluate_wave,
    offers_allowed,
    state_after_report,
    transition,
    wave_quotas,
)
from linecrew.server.updates import ReleaseRegistry
from linecrew.shared.db import Database
from linecrew.shared.protocol import Stream, UpdateReport, new_id
from linecrew.shared.sync import Outbox

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    release TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    created_by TEXT NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    ended REAL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE rollout_waves (
    rollout_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    quota TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    started REAL,
    success_at REAL,
    finished REAL,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE rollout_devices (
    rollout_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    wave INTEGER,
    state TEXT NOT NULL,
    offer_id TEXT,
    previous_version INTEGER,
    deadline REAL,
    updated REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_state ON rollout_devices (rollout_id, state);
CREATE INDEX rollout_devices_by_offer ON rollout_devices (offer_id);
"""

QUEUED = "queued"  # targeted, not in a wave yet
TICK_OFFERS_MAX = 500  # per rollout per tick, so one tick's transaction stays short


class RolloutManager:
    def __init__(self, db: Database, outbox: Outbox, releases: ReleaseRegistry, devices: DeviceRegistry, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.outbox = outbox
        self.releases = releases
        self.registry = devices
        self.clock = clock
        self._credit: dict[str, tuple[float, float]] = {}  # rollout → (offer credit, at); per process
        self._budgets: dict[str, float] = {}

    # ------------------------------------------------------------------ commands
    def create(self, spec: RolloutSpec, who: Principal, reason: str = "") -> str:
        authorize(who, "create")
        manifest = self.releases.release(spec.release, spec.version)
        if manifest is None:
            raise RolloutError(f"no release {spec.release} v{spec.version}: add it first")
        supported = manifest["signed"]["device_classes"]
        unknown = [c for c in spec.device_classes if c not in supported]
        if unknown:
            raise RolloutError(f"release {spec.release} v{spec.version} does not support {', '.join(unknown)}")
        rid = new_id()
        now = self.clock()
        state = RolloutState.WAITING_FOR_APPROVAL if spec.require_approval else RolloutState.READY
        with self.db.transaction() as conn:
            if not self._matching(conn, spec):
                raise RolloutError(f"no enrolled device matches this rollout (classes {spec.device_classes or 'all'}"
                                   f", tags {spec.tags or 'none'}), or every match already runs v{spec.version}")
            conn.execute("INSERT INTO rollouts (id, release, version, spec, state, created, created_by, updated)"
                         " VALUES (?,?,?,?,?,?,?,?)", (rid, spec.release, spec.version, spec.model_dump_json(),
                                                       state.value, now, who.name, now))
            audit(conn, who.name, "rollout.create", f"rollout:{rid}", reason,
                  {"release": spec.release, "version": spec.version, "state": state.value,
                   "approval": "a second release manager" if spec.require_approval else
                   f"skipped by {who.name}: no second person reviewed this rollout"}, at=now)
        return rid

    def act(self, rollout_id: str, action: str, who: Principal, reason: str = "") -> RolloutState:
        """approve, start, pause, resume, abort or rollback, by someone holding the role for it."""
        authorize(who, action)
        now = self.clock()
        with self.db.transaction() as conn:
            row = self._row(conn, rollout_id)
            new = transition(RolloutState(row["state"]), action)
            if action == "approve":
                check_approver(str(row["created_by"]), who)
            if action == "start":
                self._snapshot_targets(conn, rollout_id, RolloutSpec.model_validate_json(row["spec"]), now)
            elif action == "abort":
                self._cancel_unoffered(conn, rollout_id, now)
            elif action == "rollback":
                self._roll_back_devices(conn, rollout_id, row, now)
            self._set_state(conn, rollout_id, new, who.name, action, reason, now)
        return new

    # ------------------------------------------------------------------ the engine
    def tick(self) -> None:
        """Advance every running rollout: timeouts, offline devices, new waves, offers, gates."""
        ids = [str(r["id"]) for r in self.db.query("SELECT id FROM rollouts WHERE state=?",
                                                     (RolloutState.RUNNING.value,))]
        for rid in ids:
            try:
                with self.db.transaction() as conn:
                    row = self._row(conn, rid)
                    if row["state"] == RolloutState.RUNNING:
                        self._advance(conn, rid, row, self.clock())
            except Exception:
                log.exception("rollout %s tick failed; retried next tick", rid)

    def _advance(self, conn: sqlite3.Connection, rid: str, row: dict[str, Any], now: float) -> None:
        spec = RolloutSpec.model_validate_json(row["spec"])
        self._check_links(conn, rid, spec, now)
        wave = conn.execute("SELECT idx, state, success_at, quota FROM rollout_waves WHERE rollout_id=?"
                            " AND state IN ('pending','running','soaking') ORDER BY idx LIMIT 1",
                            (rid,)).fetchone()
        if wave is None:
            self._set_state(conn, rid, RolloutState.FINISHED, "system", "finish", "every wave passed its gate", now)
            return
        idx, wstate, success_at, quota = wave
        if wstate == "pending":
            self._begin_wave(conn, rid, idx, json.loads(quota), now)
        self._offer_scheduled(conn, rid, spec, now)
        rows = conn.execute("SELECT device_class, state FROM rollout_devices WHERE rollout_id=? AND wave=?",
                            (rid, idx)).fetchall()
        decision = evaluate_wave(count_states(rows), spec.waves[idx], now=now, success_at=success_at)
        self._apply_gate(conn, rid, row, idx, decision, spec, now)

    def _check_links(self, conn: sqlite3.Connection, rid: str, spec: RolloutSpec, now: float) -> None:
        """Silent online devices past their deadline fail; offline ones wait, their clock restarts on return."""
        rows = conn.execute(
            "SELECT device_id, state, deadline, wave FROM rollout_devices"
            " WHERE rollout_id=? AND state IN ('offered','installing','waiting')", (rid,)).fetchall()
        online_now = self.registry.online_map(conn) if rows else {}
        for device_id, state, deadline, wave in rows:
            online = online_now.get(device_id, False)
            timeout = spec.waves[wave].device_timeout_s
            if state == D.WAITING and online:
                self._set_device(conn, rid, device_id, D.OFFERED, now, deadline=now + timeout)
            elif state != D.WAITING and not online:
                self._set_device(conn, rid, device_id, D.WAITING, now, deadline=None)
            elif state != D.WAITING and deadline is not None and now > deadline:
                self._set_device(conn, rid, device_id, D.TIMED_OUT, now,
                                 error=f"no health report within {timeout:g} s while online")

    def _begin_wave(self, conn: sqlite3.Connection, rid: str, idx: int, quota: dict[str, int], now: float) -> None:
        for cls, cumulative in quota.items():
            taken = conn.execute("SELECT COUNT(*) FROM rollout_devices WHERE rollout_id=? AND device_class=?"
                                 " AND wave IS NOT NULL", (rid, cls)).fetchone()[0]
            need = cumulative - int(taken)
            if need <= 0:
                continue
            queued = conn.execute("SELECT device_id FROM rollout_devices WHERE rollout_id=? AND device_class=?"
                                  " AND state=?", (rid, cls, QUEUED)).fetchall()
            online_now = self.registry.online_map(conn)
            candidates = [(d, online_now.get(d, False)) for (d,) in queued]
            for device_id in device_order(rid, candidates)[:need]:
                conn.execute("UPDATE rollout_devices SET wave=?, state=?, updated=? WHERE rollout_id=? AND device_id=?",
                             (idx, D.SCHEDULED.value, now, rid, device_id))
        conn.execute("UPDATE rollout_waves SET state='running', started=? WHERE rollout_id=? AND idx=?",
                     (now, rid, idx))
        audit(conn, "system", "wave.start", f"rollout:{rid}", f"wave {idx + 1}", {"wave": idx}, at=now)

    def _offer_scheduled(self, conn: sqlite3.Connection, rid: str, spec: RolloutSpec, now: float) -> None:
        """Offers within the rate limit, only to devices that have reported what they run (so the
        smallest payload, usually a delta against that, is chosen)."""
        burst = max(1.0, spec.rate_per_s)
        credit, at = self._credit.get(rid, (burst, now))
        n, credit = offers_allowed(spec.rate_per_s, credit, now - at, burst=burst)
        self._credit[rid] = (credit, now)
        if n <= 0:
            return
        scheduled = conn.execute("SELECT device_id, wave FROM rollout_devices WHERE rollout_id=? AND state=?"
                                 " ORDER BY wave, device_id", (rid, D.SCHEDULED.value)).fetchall()
        models = self.releases.models(conn) if scheduled else {}
        online_now = self.registry.online_map(conn) if scheduled else {}
        rows = [(d, w, online_now.get(d, False), models[d]["sha256"], models[d]["version"])
                for d, w in scheduled if d in models][:min(n, TICK_OFFERS_MAX)]
        if not rows:
            self._credit[rid] = (min(credit + n, burst), now)  # unused credit is not lost
            return
        manifest = self.releases.release(spec.release, spec.version)
        assert manifest is not None
        for device_id, wave, online, sha, version in rows:
            offer_id, _ = self.releases.offer(conn, device_id, manifest, installed_sha256=sha, rollout_id=rid,
                                              now=now)
            state, deadline = (D.OFFERED, now + spec.waves[wave].device_timeout_s) if online else (D.WAITING, None)
            conn.execute("UPDATE rollout_devices SET state=?, offer_id=?, previous_version=?, deadline=?, updated=?"
                         " WHERE rollout_id=? AND device_id=?", (state.value, offer_id, version, deadline, now, rid,
                                                                 device_id))

    def _apply_gate(self, conn: sqlite3.Connection, rid: str, row: dict[str, Any], idx: int, d: GateDecision,
                    spec: RolloutSpec, now: float) -> None:
        if d.verdict == "wait":
            return
        if d.verdict == "soak":
            conn.execute("UPDATE rollout_waves SET state='soaking', success_at=?, reason=? WHERE rollout_id=?"
                         " AND idx=?", (d.success_at, d.reason, rid, idx))
            return
        if d.verdict == "advance":
            conn.execute("UPDATE rollout_waves SET state='succeeded', finished=?, reason=? WHERE rollout_id=?"
                         " AND idx=?", (now, d.reason, rid, idx))
            audit(conn, "system", "wave.pass", f"rollout:{rid}", d.reason, {"wave": idx}, at=now)
            if idx == len(spec.waves) - 1:
                self._set_state(conn, rid, RolloutState.FINISHED, "system", "finish", d.reason, now)
            return
        conn.execute("UPDATE rollout_waves SET state='failed', finished=?, reason=? WHERE rollout_id=? AND idx=?",
                     (now, d.reason, rid, idx))
        audit(conn, "system", "wave.fail", f"rollout:{rid}", d.reason, {"wave": idx, **d.detail}, at=now)
        if spec.on_failure == "rollback":
            self._roll_back_devices(conn, rid, row, now)
            self._set_state(conn, rid, RolloutState.ROLLED_BACK, "system", "gate_rollback", d.reason, now)
        else:
            self._set_state(conn, rid, RolloutState.PAUSED, "system", "gate_pause", d.reason, now)

    # ------------------------------------------------------------------ device reports
    def on_report(self, conn: sqlite3.Connection, device_id: str, r: UpdateReport, now: float) -> None:
        """Inside the inbox transaction: move the device's state in the rollout its offer belongs to."""
        if not r.offer_id:
            return
        row = conn.execute(
            "SELECT rd.rollout_id, rd.state, ro.state FROM rollout_devices rd JOIN rollouts ro ON ro.id = rd.rollout_id"
            " WHERE rd.offer_id=? AND rd.device_id=?", (r.offer_id, device_id)).fetchone()
        if row is None:
            return
        rid, current, rollout_state = row
        new = state_after_report(DeviceState(current), r.state,
                                 rolling_back=rollout_state == RolloutState.ROLLED_BACK)
        if new is not None:
            self._set_device(conn, rid, device_id, new, now, error=r.error)

    # ------------------------------------------------------------------ helpers
    def _snapshot_targets(self, conn: sqlite3.Connection, rid: str, spec: RolloutSpec, now: float) -> None:
        """Fix the target set at start: matching class and tags, not already on this version or newer."""
        sizes: dict[str, int] = {}
        for device_id, cls, version in self._matching(conn, spec):
            conn.execute("INSERT INTO rollout_devices (rollout_id, device_id, device_class, state, previous_version,"
                         " updated) VALUES (?,?,?,?,?,?)", (rid, device_id, cls, QUEUED, version, now))
            sizes[cls] = sizes.get(cls, 0) + 1
        if not sizes:
            raise RolloutError("no enrolled device matches this rollout's classes and tags (or all run it already)")
        prev = 0
        for i, q in enumerate(wave_quotas(sizes, spec.waves)):
            total = sum(q.values())
            conn.execute("INSERT INTO rollout_waves (rollout_id, idx, quota, size, state) VALUES (?,?,?,?,?)",
                         (rid, i, json.dumps(q), total - prev, "pending"))
            prev = total
        conn.execute("UPDATE rollouts SET started=? WHERE id=?", (now, rid))

    def _matching(self, conn: sqlite3.Connection, spec: RolloutSpec) -> list[tuple[str, str, int | None]]:
        """Devices a rollout would take: class and tags match, not already on this version or newer."""
        manifest = self.releases.release(spec.release, spec.version) or {"signed": {"device_classes": []}}
        classes = spec.device_classes or list(manifest["signed"]["device_classes"])
        models = self.releases.models(conn)
        out = []
        for device_id, cls, tags in self.registry.targets(conn):
            version = models.get(device_id, {}).get("version")
            if cls not in classes or not set(spec.tags) <= set(tags):
                continue
            if version is not None and int(version) >= spec.version:
                continue
            out.append((device_id, cls, None if version is None else int(version)))
        return out

    def _cancel_unoffered(self, conn: sqlite3.Connection, rid: str, now: float) -> None:
        conn.execute("UPDATE rollout_devices SET state=?, updated=? WHERE rollout_id=? AND state IN (?,?)",
                     (D.CANCELLED.value, now, rid, QUEUED, D.SCHEDULED.value))

    def _roll_back_devices(self, conn: sqlite3.Connection, rid: str, row: dict[str, Any], now: float) -> None:
        """Everything that took (or may yet take) the release is told to go back; the rest is cancelled."""
        self._cancel_unoffered(conn, rid, now)
        targets = conn.execute(
            "SELECT device_id, offer_id, previous_version FROM rollout_devices WHERE rollout_id=? AND state IN"
            " ('offered','waiting','installing','healthy','timed_out')", (rid,)).fetchall()
        for device_id, offer_id, previous in targets:
            self.outbox.put("command", {"name": "update_rollback", "args": {
                "rollout_id": rid, "offer_id": offer_id, "version": row["version"], "to_version": previous}},
                peer=device_id, stream=Stream.UPDATES, device_id=device_id)
            self._set_device(conn, rid, device_id, D.ROLLING_BACK, now)

    def _set_device(self, conn: sqlite3.Connection, rid: str, device_id: str, state: DeviceState, now: float, *,
                    deadline: float | object | None = ..., error: str | None = None) -> None:
        if deadline is ...:
            conn.execute("UPDATE rollout_devices SET state=?, updated=?, error=COALESCE(?, error) WHERE rollout_id=?"
                         " AND device_id=?", (state.value, now, error, rid, device_id))
        else:
            conn.execute("UPDATE rollout_devices SET state=?, updated=?, deadline=?, error=COALESCE(?, error)"
                         " WHERE rollout_id=? AND device_id=?", (state.value, now, deadline, error, rid, device_id))

    def _set_state(self, conn: sqlite3.Connection, rid: str, state: RolloutState, actor: str, action: str,
                   reason: str, now: float) -> None:
        ended = now if state in (RolloutState.FINISHED, RolloutState.ABORTED, RolloutState.ROLLED_BACK) else None
        conn.execute("UPDATE rollouts SET state=?, updated=?, reason=?, ended=COALESCE(?, ended) WHERE id=?",
                     (state.value, now, reason, ended, rid))
        audit(conn, actor, f"rollout.{action}", f"rollout:{rid}", reason, {"state": state.value}, at=now)
        log.info("rollout %s → %s (%s by %s)", rid, state.value, action, actor)

    def _row(self, conn: sqlite3.Connection, rid: str) -> dict[str, Any]:
        row = conn.execute("SELECT id, release, version, spec, state, created_by FROM rollouts WHERE id=?",
                           (rid,)).fetchone()
        if row is None:
            raise RolloutError(f"no rollout {rid}")
        return dict(zip(("id", "release", "version", "spec", "state", "created_by"), row, strict=True))

    # ------------------------------------------------------------------ reading
    def bandwidth(self, rollout_id: str) -> float | None:
        """Bytes per second the chunk server may spend on this rollout (cached; specs never change)."""
        if rollout_id not in self._budgets:
            rows = self.db.query("SELECT spec FROM rollouts WHERE id=?", (rollout_id,))
            if not rows:
                return None
            self._budgets[rollout_id] = RolloutSpec.model_validate_json(str(rows[0]["spec"])).bandwidth_bytes_s
        return self._budgets[rollout_id]

    def all(self) -> list[dict[str, Any]]:
        return [self.status(str(r["id"])) for r in self.db.query("SELECT id FROM rollouts ORDER BY created DESC")]

    def status(self, rollout_id: str) -> dict[str, Any]:
        rows = self.db.query("SELECT * FROM rollouts WHERE id=?", (rollout_id,))
        if not rows:
            raise RolloutError(f"no rollout {rollout_id}")
        r: dict[str, Any] = dict(rows[0])
        r["spec"] = json.loads(r["spec"])
        by_wave: dict[int | None, dict[str, int]] = {}
        for x in self.db.query("SELECT wave, state, COUNT(*) AS n FROM rollout_devices WHERE rollout_id=?"
                               " GROUP BY wave, state", (rollout_id,)):
            w = None if x["wave"] is None else int(x["wave"])  # type: ignore[call-overload]
            by_wave.setdefault(w, {})[str(x["state"])] = int(x["n"])  # type: ignore[call-overload]
        waves = self.db.query("SELECT idx, size, state, started, success_at, finished, reason FROM rollout_waves"
                              " WHERE rollout_id=? ORDER BY idx", (rollout_id,))
        for w in waves:
            w["counts"] = by_wave.get(int(w["idx"]), {})  # type: ignore[call-overload]
        totals: dict[str, int] = {}
        for counts in by_wave.values():
            for k, n in counts.items():
                totals[k] = totals.get(k, 0) + n
        r["waves"] = waves
        r["counts"] = totals
        r["devices"] = sum(totals.values())
        r["bytes_sent"] = self.releases.bytes_sent(rollout_id)
        return r

    def device_state_counts(self) -> list[dict[str, object]]:
        """Devices per rollout and state (for /metrics)."""
        return self.db.query("SELECT rollout_id, state, COUNT(*) AS n FROM rollout_devices GROUP BY rollout_id, state")

    def devices(self, rollout_id: str) -> list[dict[str, object]]:
        return self.db.query("SELECT device_id, device_class, wave, state, offer_id, previous_version, deadline,"
                             " updated, error FROM rollout_devices WHERE rollout_id=? ORDER BY wave, device_id",
                             (rollout_id,))
