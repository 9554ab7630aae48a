"""Escalations to human experts and deferred tasks for the server's workers: the ``escalations`` and
``tasks`` tables and every query on them. Questions, context, answers and results are sealed at rest."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from linecrew.server.auth import audit
from linecrew.server.errors import UnknownEscalationError
from linecrew.server.messages import MessageLog
from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Database
from linecrew.shared.protocol import DeferredTask, Escalation, Stream
from linecrew.shared.sync import Outbox

SCHEMA = """
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


class Escalations:
    def __init__(self, db: Database, outbox: Outbox, cipher: FieldCipher) -> None:
        self.db = db
        self.outbox = outbox
        self.cipher = cipher

    def on_escalation(self, conn: sqlite3.Connection, device_id: str, p: Escalation, now: float) -> None:
        conn.execute(
            "INSERT INTO escalations (id, device_id, intent, reason, job_id, question_sealed,"
            " context_sealed, created) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (p.escalation_id, device_id, p.intent, p.reason, p.job_id, _seal(self.cipher, p.question, p.escalation_id),
             _seal(self.cipher, json.dumps(p.context), p.escalation_id + ":ctx"), now),
        )

    def list(self, *, status: str | None = "open") -> list[dict[str, Any]]:
        where, params = ("WHERE status=?", [status]) if status else ("", [])
        rows: list[dict[str, Any]] = self.db.query(f"SELECT * FROM escalations {where} ORDER BY created", params)
        for r in rows:
            eid = str(r["id"])
            r["question"] = self.cipher.decrypt_text(r.pop("question_sealed"), eid.encode())
            r["context"] = json.loads(self.cipher.decrypt_text(r.pop("context_sealed"), (eid + ":ctx").encode()))
            blob = r.pop("answer_sealed")
            sealed = isinstance(blob, bytes)
            r["answer"] = self.cipher.decrypt_text(blob, (eid + ":answer").encode()) if sealed else None
        return rows

    def open_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM escalations WHERE status='open'") or 0)

    def answer(self, escalation_id: str, answer: str, *, expert: str) -> str:
        """Record the expert's answer and queue it to the device, atomically; returns the device id."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT device_id, status FROM escalations WHERE id=?", (escalation_id,)).fetchone()
            if row is None:
                raise UnknownEscalationError(f"no escalation {escalation_id}")
            if row[1] != "open":
                raise UnknownEscalationError(f"escalation {escalation_id} is already {row[1]}")
            conn.execute(
                "UPDATE escalations SET status='answered', answer_sealed=?, expert=?, answered_at=? WHERE id=?",
                (_seal(self.cipher, answer, escalation_id + ":answer"), expert, time.time(), escalation_id),
            )
            # the answer itself stays sealed in the escalation; the audit log records who and when
            audit(conn, expert, "escalation.answer", f"escalation:{escalation_id}", "",
                  {"device_id": row[0], "chars": len(answer)})
            self.outbox.put("escalation_answer", {"escalation_id": escalation_id, "answer": answer, "expert": expert},
                            peer=row[0], stream=Stream.ANSWERS, device_id=row[0])
        return str(row[0])


class Tasks:
    """Deferred tasks: queued from devices, dispatched to workers (retried when a worker goes quiet), results
    sealed and queued back to the device."""

    def __init__(self, db: Database, outbox: Outbox, cipher: FieldCipher, log: MessageLog) -> None:
        self.db = db
        self.outbox = outbox
        self.cipher = cipher
        self.log = log

    def on_task(self, conn: sqlite3.Connection, device_id: str, p: DeferredTask, now: float) -> None:
        conn.execute(
            "INSERT INTO tasks (id, device_id, kind, job_id, args, created) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            (p.task_id, device_id, p.kind, p.job_id, json.dumps(p.args), now),
        )

    def to_dispatch(self, *, now: float, retry_after_s: float, max_attempts: int) -> list[dict[str, Any]]:
        """Queued tasks, and dispatched ones whose worker went quiet; too many attempts → failed."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, device_id, kind, job_id, args, attempts FROM tasks WHERE status='queued'"
                " OR (status='dispatched' AND dispatched_at < ?)", (now - retry_after_s,),
            ).fetchall()
            out = []
            for tid, dev, kind, job_id, args, attempts in rows:
                if attempts >= max_attempts:
                    self._finish(conn, tid, dev, kind, ok=False, result="no worker finished it", worker="-")
                    continue
                conn.execute("UPDATE tasks SET status='dispatched', dispatched_at=?, attempts=attempts+1 WHERE id=?",
                             (now, tid))
                out.append({"task_id": tid, "device_id": dev, "kind": kind, "job_id": job_id,
                            "args": json.loads(args)})
        return out

    def context(self, device_id: str, job_id: str | None) -> dict[str, object]:
        """What a worker needs: the job's notes from that device (decrypted; travels inside the server)."""
        notes = []
        for m in reversed(self.log.messages(device_id, limit=500)):
            payload = m["payload"]
            same_job = isinstance(payload, dict) and (job_id is None or payload.get("job_id") == job_id)
            if m["type"] == "note" and same_job:
                notes.append(payload["text"])
        return {"notes": notes}

    def complete(self, task_id: str, *, ok: bool, result: str, worker: str) -> bool:
        """Store a worker's result and queue it to the device; a repeated result is ignored."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT device_id, kind, status FROM tasks WHERE id=?", (task_id,)).fetchone()
            if row is None or row[2] in ("done", "failed"):
                return False
            self._finish(conn, task_id, row[0], row[1], ok=ok, result=result, worker=worker)
        return True

    def _finish(self, conn: sqlite3.Connection, task_id: str, device_id: str, kind: str, *, ok: bool,
                result: str, worker: str) -> None:
        conn.execute("UPDATE tasks SET status=?, result_sealed=?, worker=?, finished_at=? WHERE id=?",
                     ("done" if ok else "failed", _seal(self.cipher, result, task_id), worker, time.time(), task_id))
        self.outbox.put("task_result", {"task_id": task_id, "kind": kind, "ok": ok, "result": result},
                        peer=device_id, stream=Stream.RESULTS, device_id=device_id)

    def all(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT id, device_id, kind, job_id, status, attempts, worker, created, finished_at FROM tasks"
            " ORDER BY created")
        return rows

    def backlog(self) -> list[dict[str, Any]]:
        """Unfinished tasks by kind and status, with the oldest creation time of each group."""
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT kind, status, COUNT(*) AS n, MIN(created) AS oldest FROM tasks"
            " WHERE status IN ('queued', 'dispatched') GROUP BY kind, status")
        return rows


def _seal(cipher: FieldCipher, text: str, aad: str) -> bytes:
    return cipher.encrypt_text(text, aad.encode())
