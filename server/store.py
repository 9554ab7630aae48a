"""Server state behind a small storage interface; SQLite is the embedded default.

The registry of devices and enrollment tokens, the log of applied device messages (sensitive payloads
sealed with the server's field key) and the sync tables. Device messages are applied inside the
inbox's transaction, so recording the message id and its effect commit together.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linecrew.server import auth, rollouts, updates
from linecrew.server.errors import EnrollmentError, UnknownEscalationError
from linecrew.server.rollouts import RolloutManager
from linecrew.server.updates import ReleaseRegistry
from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Migration, executescript, open_database
from linecrew.shared.protocol import (
    DeferredTask,
    Escalation,
    JobStatus,
    Message,
    Stream,
    Telemetry,
    UpdateReport,
    is_valid_device_id,
)
from linecrew.shared.sync import Inbox, Outbox, sync_migration

SENSITIVE_TYPES = {"note", "escalation"}

_SCHEMA_1 = """
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    device_class TEXT NOT NULL,
    public_key TEXT NOT NULL,
    enrolled_at REAL NOT NULL,
    last_seen REAL,
    online INTEGER NOT NULL DEFAULT 0,
    telemetry TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE enroll_tokens (
    token_hash TEXT PRIMARY KEY,
    device_class TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used_at REAL,
    used_by TEXT
);
CREATE TABLE device_messages (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    type TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created REAL NOT NULL,
    received REAL NOT NULL,
    payload BLOB NOT NULL,
    sealed INTEGER NOT NULL
);
CREATE INDEX device_messages_by_device ON device_messages (device_id, stream, seq);
"""

_SCHEMA_3 = """
CREATE TABLE escalations (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    reason TEXT NOT NULL,
    job_id TEXT,
    question_sealed BLOB NOT NULL,
    context_sealed BLOB NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    answer_sealed BLOB,
    expert TEXT,
    answered_at REAL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    args TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    created REAL NOT NULL,
    dispatched_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result_sealed BLOB,
    worker TEXT,
    finished_at REAL
);
CREATE INDEX tasks_by_status ON tasks (status, dispatched_at);
"""

_SCHEMA_4 = """
CREATE TABLE technicians (
    id TEXT PRIMARY KEY,
    device_id TEXT,
    skills TEXT NOT NULL,
    depot_x REAL NOT NULL,
    depot_y REAL NOT NULL,
    shift_start INTEGER NOT NULL,
    shift_end INTEGER NOT NULL,
    available INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    x REAL NOT NULL,
    y REAL NOT NULL,
    duration INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    skills TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    pinned_to TEXT,
    in_progress_by TEXT,
    reason TEXT,
    updated REAL NOT NULL
);
CREATE TABLE plans (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    runtime_s REAL NOT NULL,
    travel REAL NOT NULL,
    changed INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""

MIGRATIONS = [
    Migration(1, "registry and message log", lambda c: executescript(c, _SCHEMA_1)),
    sync_migration(2),
    Migration(3, "escalations and deferred tasks", lambda c: executescript(c, _SCHEMA_3)),
    Migration(4, "planner: technicians, jobs, plans", lambda c: executescript(c, _SCHEMA_4)),
    updates.MIGRATION,
    updates.MIGRATION_6,
    auth.MIGRATION,
    rollouts.MIGRATION,
    Migration(9, "per-model request stats per device", lambda c: executescript(
        c, "ALTER TABLE devices ADD COLUMN request_stats TEXT NOT NULL DEFAULT '{}'")),
]


@dataclass(frozen=True)
class Device:
    id: str
    device_class: str
    public_key: str
    enrolled_at: float
    last_seen: float | None
    online: bool


class ServerStore:
    """Server state in one database: a SQLite file in ``folder`` or PostgreSQL at ``database_url``.

    Keys (the field key sealing sensitive columns) stay in ``folder`` either way; processes sharing a
    PostgreSQL database must share that key file too.
    """

    def __init__(self, folder: Path, *, database_url: str | None = None, synchronous: str = "FULL",
                 clock: Callable[[], float] = time.time) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db = open_database(database_url or folder / "server.db", synchronous=synchronous)
        self.db.migrate(MIGRATIONS)
        self.cipher = FieldCipher.from_key_file(folder / "field.key")
        self.outbox = Outbox(self.db, sender_id="server", cipher=self.cipher)
        self.inbox = Inbox(self.db)
        self.releases = ReleaseRegistry(self.db, self.outbox)
        self.rollouts = RolloutManager(self.db, self.outbox, self.releases, clock=clock)
        self.tokens = auth.Tokens(self.db)
        self.clock = clock
        self._known: set[str] = set()

    # ------------------------------------------------------------------ enrollment
    def create_enroll_token(self, *, ttl_s: float = 3600, device_class: str | None = None,
                            tags: list[str] | None = None) -> str:
        """A one-time token; the device it enrolls gets ``tags`` (rollouts select devices by them)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO enroll_tokens (token_hash, device_class, created, expires, tags) VALUES (?,?,?,?,?)",
                (_hash(token), device_class, now, now + ttl_s, json.dumps(sorted(set(tags or [])))),
            )
        return token

    def enroll(self, *, token: str, device_id: str, device_class: str, public_key: str) -> Device:
        """Consume a one-time token and register the device, atomically."""
        if not is_valid_device_id(device_id):
            raise EnrollmentError(f"invalid device id {device_id!r}: use 2-63 of a-z, 0-9 and '-'")
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT device_class, expires, used_at, tags FROM enroll_tokens WHERE token_hash=?",
                (_hash(token),),
            ).fetchone()
            if row is None:
                raise EnrollmentError("unknown enrollment token")
            token_class, expires, used_at, tags = row
            if used_at is not None:
                raise EnrollmentError("enrollment token already used")
            if now >= expires:
                raise EnrollmentError("enrollment token expired")
            if token_class and token_class != device_class:
                raise EnrollmentError(f"token is for device class {token_class!r}, not {device_class!r}")
            if conn.execute("SELECT 1 FROM devices WHERE id=?", (device_id,)).fetchone():
                raise EnrollmentError(f"device id {device_id!r} is already enrolled")
            conn.execute(
                "UPDATE enroll_tokens SET used_at=?, used_by=? WHERE token_hash=?", (now, device_id, _hash(token))
            )
            conn.execute(
                "INSERT INTO devices (id, device_class, public_key, enrolled_at, tags) VALUES (?,?,?,?,?)",
                (device_id, device_class, public_key, now, tags),
            )
            auth.audit(conn, f"device:{device_id}", "device.enroll", f"device:{device_id}", "",
                       {"device_class": device_class}, at=now)
        self._known.add(device_id)
        return Device(device_id, device_class, public_key, now, None, False)

    # ------------------------------------------------------------------ registry
    def device(self, device_id: str) -> Device | None:
        rows = self.db.query(
            "SELECT id, device_class, public_key, enrolled_at, last_seen, online FROM devices WHERE id=?",
            (device_id,),
        )
        return _device(rows[0]) if rows else None

    def is_known(self, device_id: str) -> bool:
        if device_id in self._known:
            return True
        if self.device(device_id) is not None:
            self._known.add(device_id)
            return True
        return False

    def devices(self) -> list[Device]:
        rows = self.db.query(
            "SELECT id, device_class, public_key, enrolled_at, last_seen, online FROM devices ORDER BY id"
        )
        return [_device(r) for r in rows]

    def set_presence(self, device_id: str, online: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET online=?, last_seen=? WHERE id=?", (int(online), time.time(), device_id)
            )

    def set_tags(self, device_id: str, tags: list[str], *, actor: str = "system") -> None:
        with self.db.transaction() as conn:
            if not conn.execute("UPDATE devices SET tags=? WHERE id=?",
                                (json.dumps(sorted(set(tags))), device_id)).rowcount:
                raise EnrollmentError(f"no device {device_id}")
            auth.audit(conn, actor, "device.tag", f"device:{device_id}", "", {"tags": sorted(set(tags))})

    def fleet(self) -> list[dict[str, object]]:
        """The device registry as operators see it: class, tags, versions per slot, health, link, backlog."""
        rows = self.db.query(
            "SELECT d.id, d.device_class, d.tags, d.online, d.last_seen, d.link_quality, d.telemetry,"
            " m.version, m.sha256, m.state AS update_state, m.slots, m.health FROM devices d"
            " LEFT JOIN device_models m ON m.device_id = d.id ORDER BY d.id")
        depth = {str(r["peer"]): int(r["n"]) for r in self.db.query(  # type: ignore[call-overload]
            "SELECT peer, COUNT(*) AS n FROM outbox GROUP BY peer")}
        for r in rows:
            r["tags"] = json.loads(str(r["tags"]))
            r["slots"] = json.loads(str(r["slots"])) if r["slots"] else {}
            r["telemetry"] = json.loads(str(r["telemetry"]))
            r["online"] = bool(r["online"])
            r["server_outbox"] = depth.get(str(r["id"]), 0)
        return rows

    # ------------------------------------------------------------------ messages
    def apply_device_message(self, conn: sqlite3.Connection, device_id: str, msg: Message) -> None:
        """The effect of one device message; runs inside the inbox transaction."""
        env = msg.envelope
        raw = json.dumps(env.payload, separators=(",", ":")).encode()
        sealed = env.type in SENSITIVE_TYPES
        body = self.cipher.encrypt(raw, env.id.encode()) if sealed else raw
        now = time.time()
        conn.execute(
            "INSERT INTO device_messages (id, device_id, type, stream, seq, created, received, payload, sealed)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (env.id, device_id, env.type, env.stream, env.seq, env.created, now, body, int(sealed)),
        )
        if isinstance(msg.payload, Telemetry):
            conn.execute(
                "UPDATE devices SET telemetry=?, last_seen=?, link_quality=COALESCE(?, link_quality) WHERE id=?",
                (json.dumps(msg.payload.metrics), now, msg.payload.metrics.get("link_quality"), device_id),
            )
            if msg.payload.requests:  # cumulative on the device: the latest report replaces the last
                conn.execute("UPDATE devices SET request_stats=? WHERE id=?",
                             (json.dumps({m: s.model_dump() for m, s in msg.payload.requests.items()}), device_id))
        elif isinstance(msg.payload, Escalation):
            p = msg.payload
            conn.execute(
                "INSERT INTO escalations (id, device_id, intent, reason, job_id, question_sealed,"
                " context_sealed, created) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (p.escalation_id, device_id, p.intent, p.reason, p.job_id, self._seal(p.question, p.escalation_id),
                 self._seal(json.dumps(p.context), p.escalation_id + ":ctx"), now),
            )
        elif isinstance(msg.payload, UpdateReport):
            self.releases.on_report(conn, device_id, msg.payload, now)
            self.rollouts.on_report(conn, device_id, msg.payload, self.clock())
        elif isinstance(msg.payload, JobStatus):
            self._apply_job_status(conn, device_id, msg.payload, now)
        elif isinstance(msg.payload, DeferredTask):
            p2 = msg.payload
            conn.execute(
                "INSERT INTO tasks (id, device_id, kind, job_id, args, created) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                (p2.task_id, device_id, p2.kind, p2.job_id, json.dumps(p2.args), now),
            )

    @staticmethod
    def _apply_job_status(conn: sqlite3.Connection, device_id: str, p: JobStatus, now: float) -> None:
        """Device job status feeds the next plan: on site pins the job as work in progress."""
        if not p.job_id:
            return
        tech = conn.execute("SELECT id FROM technicians WHERE device_id=?", (device_id,)).fetchone()
        status = {"on_site": "in_progress", "done": "done", "blocked": "blocked"}[p.status]
        conn.execute("UPDATE jobs SET status=?, in_progress_by=?, reason=?, updated=? WHERE id=?",
                     (status, tech[0] if tech and status == "in_progress" else None, p.reason, now, p.job_id))

    def _seal(self, text: str, aad: str) -> bytes:
        return self.cipher.encrypt_text(text, aad.encode())

    # ------------------------------------------------------------------ escalations
    def escalations(self, *, status: str | None = "open") -> list[dict[str, object]]:
        where, params = ("WHERE status=?", [status]) if status else ("", [])
        rows = self.db.query(f"SELECT * FROM escalations {where} ORDER BY created", params)
        for r in rows:
            eid = str(r["id"])
            r["question"] = self.cipher.decrypt_text(r.pop("question_sealed"), eid.encode())  # type: ignore[arg-type]
            r["context"] = json.loads(self.cipher.decrypt_text(r.pop("context_sealed"),  # type: ignore[arg-type]
                                                               (eid + ":ctx").encode()))
            blob = r.pop("answer_sealed")
            sealed = isinstance(blob, bytes)
            r["answer"] = self.cipher.decrypt_text(blob, (eid + ":answer").encode()) if sealed else None  # type: ignore[arg-type]
        return rows

    def answer_escalation(self, escalation_id: str, answer: str, *, expert: str) -> str:
        """Record the expert's answer and queue it to the device, atomically; returns the device id."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT device_id, status FROM escalations WHERE id=?", (escalation_id,)).fetchone()
            if row is None:
                raise UnknownEscalationError(f"no escalation {escalation_id}")
            if row[1] != "open":
                raise UnknownEscalationError(f"escalation {escalation_id} is already {row[1]}")
            conn.execute(
                "UPDATE escalations SET status='answered', answer_sealed=?, expert=?, answered_at=? WHERE id=?",
                (self._seal(answer, escalation_id + ":answer"), expert, time.time(), escalation_id),
            )
            # the answer itself stays sealed in the escalation; the audit log records who and when
            auth.audit(conn, expert, "escalation.answer", f"escalation:{escalation_id}", "",
                       {"device_id": row[0], "chars": len(answer)})
            self.outbox.put("escalation_answer", {"escalation_id": escalation_id, "answer": answer, "expert": expert},
                            peer=row[0], stream=Stream.ANSWERS, device_id=row[0])
        return str(row[0])

    # ------------------------------------------------------------------ deferred tasks
    def tasks_to_dispatch(self, *, now: float, retry_after_s: float, max_attempts: int) -> list[dict[str, object]]:
        """Queued tasks, and dispatched ones whose worker went quiet; too many attempts → failed."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, device_id, kind, job_id, args, attempts FROM tasks WHERE status='queued'"
                " OR (status='dispatched' AND dispatched_at < ?)", (now - retry_after_s,),
            ).fetchall()
            out = []
            for tid, dev, kind, job_id, args, attempts in rows:
                if attempts >= max_attempts:
                    self._finish_task(conn, tid, dev, kind, ok=False, result="no worker finished it", worker="-")
                    continue
                conn.execute("UPDATE tasks SET status='dispatched', dispatched_at=?, attempts=attempts+1 WHERE id=?",
                             (now, tid))
                out.append({"task_id": tid, "device_id": dev, "kind": kind, "job_id": job_id,
                            "args": json.loads(args)})
        return out

    def task_context(self, device_id: str, job_id: str | None) -> dict[str, object]:
        """What a worker needs: the job's notes from that device (decrypted; travels inside the server)."""
        notes = []
        for m in reversed(self.messages(device_id, limit=500)):
            payload = m["payload"]
            same_job = isinstance(payload, dict) and (job_id is None or payload.get("job_id") == job_id)
            if m["type"] == "note" and same_job:
                notes.append(payload["text"])  # type: ignore[index]
        return {"notes": notes}

    def complete_task(self, task_id: str, *, ok: bool, result: str, worker: str) -> bool:
        """Store a worker's result and queue it to the device; a repeated result is ignored."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT device_id, kind, status FROM tasks WHERE id=?", (task_id,)).fetchone()
            if row is None or row[2] in ("done", "failed"):
                return False
            self._finish_task(conn, task_id, row[0], row[1], ok=ok, result=result, worker=worker)
        return True

    def _finish_task(self, conn: sqlite3.Connection, task_id: str, device_id: str, kind: str, *, ok: bool,
                     result: str, worker: str) -> None:
        conn.execute("UPDATE tasks SET status=?, result_sealed=?, worker=?, finished_at=? WHERE id=?",
                     ("done" if ok else "failed", self._seal(result, task_id), worker, time.time(), task_id))
        self.outbox.put("task_result", {"task_id": task_id, "kind": kind, "ok": ok, "result": result},
                        peer=device_id, stream=Stream.RESULTS, device_id=device_id)

    def tasks(self) -> list[dict[str, object]]:
        return self.db.query("SELECT id, device_id, kind, job_id, status, attempts, worker, created, finished_at"
                             " FROM tasks ORDER BY created")

    def messages(self, device_id: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        where, params = ("WHERE device_id=?", [device_id]) if device_id else ("", [])
        rows = self.db.query(
            "SELECT id, device_id, type, stream, seq, created, received, payload, sealed FROM device_messages"
            f" {where} ORDER BY received DESC, seq DESC LIMIT ?",
            [*params, limit],
        )
        for r in rows:
            blob = r.pop("payload")
            assert isinstance(blob, bytes)
            raw = self.cipher.decrypt(blob, str(r["id"]).encode()) if r.pop("sealed") else blob
            r["payload"] = json.loads(raw)
        return rows

    def message_count(self, device_id: str | None = None) -> int:
        if device_id:
            return int(self.db.scalar("SELECT COUNT(*) FROM device_messages WHERE device_id=?", (device_id,)) or 0)
        return int(self.db.scalar("SELECT COUNT(*) FROM device_messages") or 0)

    def close(self) -> None:
        self.db.close()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _device(r: dict[str, object]) -> Device:
    return Device(
        id=str(r["id"]), device_class=str(r["device_class"]), public_key=str(r["public_key"]),
        enrolled_at=float(r["enrolled_at"]),  # type: ignore[arg-type]
        last_seen=None if r["last_seen"] is None else float(r["last_seen"]),  # type: ignore[arg-type]
        online=bool(r["online"]),
    )
