"""The device's state: one SQLite file (WAL, migrations), sensitive columns sealed with AES-GCM.

The field key lives in ``field.key`` (mode 0600) beside, not inside, the database.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from linecrew.agent.identity import SEAL_KEY_FILE, SERVER_SEAL_KEY_FILE
from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Database, Migration, executescript
from linecrew.shared.e2e import Sealer, load_or_create_seal_key, opener_for, parse_public
from linecrew.shared.errors import RejectedError
from linecrew.shared.protocol import (
    Assignment,
    Command,
    EscalationAnswer,
    Message,
    Stream,
    TaskResult,
    UpdateOffer,
    new_id,
)
from linecrew.shared.sync import Inbox, Outbox, OutboxLimits, dead_letter_migration, sync_migration

_SCHEMA_1 = """
CREATE TABLE notes (
    id TEXT PRIMARY KEY,
    job_id TEXT,
    created REAL NOT NULL,
    text_sealed BLOB NOT NULL
);
CREATE TABLE utterances (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text_sealed BLOB NOT NULL,
    avg_logprob REAL,
    no_speech_prob REAL,
    model_version TEXT,
    created REAL NOT NULL
);
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SCHEMA_3 = """
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    intent TEXT NOT NULL,
    confidence REAL NOT NULL,
    route TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reused_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    model_version TEXT,
    degraded INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    ref TEXT,
    resolved_at REAL
);
CREATE INDEX requests_by_ref ON requests (ref);
CREATE TABLE answers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    text_sealed BLOB NOT NULL,
    source TEXT NOT NULL,
    received REAL NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0
);
"""

_SCHEMA_4 = """
CREATE TABLE xfer (
    offer_id TEXT PRIMARY KEY,
    offer TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE xfer_chunks (offer_id TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (offer_id, idx));
"""

MIGRATIONS = [
    Migration(1, "context cache, notes, commands", lambda c: executescript(c, _SCHEMA_1)),
    sync_migration(2),
    Migration(3, "assistant requests and answers", lambda c: executescript(c, _SCHEMA_3)),
    Migration(4, "model update transfers", lambda c: executescript(c, _SCHEMA_4)),
    Migration(5, "rollbacks asked by the server", lambda c: executescript(c, """
CREATE TABLE rollback_requests (
    id TEXT PRIMARY KEY,
    offer_id TEXT,
    version INTEGER,
    received REAL NOT NULL,
    done REAL
)""")),
    dead_letter_migration(6),
    Migration(7, "grounded answers; expert answers apart from resolved ones", lambda c: executescript(c, """
ALTER TABLE requests ADD COLUMN grounded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN abstained INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN expert_answered_at REAL;
""")),
]

SERVER_PEER = "server"
_SEALED = "sealed:"  # a kv value's prefix: base64 of the AES-GCM blob follows


class AgentStore:
    def __init__(self, folder: Path, *, device_id: str, limits: OutboxLimits | None = None,
                 synchronous: str = "FULL") -> None:
        self.folder = folder
        self.device_id = device_id
        self.db = Database(folder / "agent.db", synchronous=synchronous)
        self.db.migrate(MIGRATIONS)
        self.cipher = FieldCipher.from_key_file(folder / "field.key")
        self.seal_key = load_or_create_seal_key(folder / SEAL_KEY_FILE)  # end to end with the server (X25519)
        self.opener = opener_for(self.seal_key)
        self.outbox = Outbox(self.db, sender_id=device_id, cipher=self.cipher, limits=limits,
                             sealer=Sealer(self._server_seal_key))
        self.inbox = Inbox(self.db, cipher=self.cipher)
        self._server_key: X25519PublicKey | None = None

    def _server_seal_key(self, peer: str) -> X25519PublicKey | None:
        """The server's end-to-end key, from the enrollment answer (unknown until the device is enrolled)."""
        if peer != SERVER_PEER:
            return None
        if self._server_key is None and (self.folder / SERVER_SEAL_KEY_FILE).exists():
            self._server_key = parse_public((self.folder / SERVER_SEAL_KEY_FILE).read_text().strip())
        return self._server_key

    def add_note(self, text: str, *, job_id: str | None = None) -> str:
        """Store a note (sealed) and queue it to the server in one step; returns the note id."""
        note_id = new_id()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO notes (id, job_id, created, text_sealed) VALUES (?,?,?,?)",
                (note_id, job_id, time.time(), self.cipher.encrypt_text(text, note_id.encode())),
            )
            self.outbox.put(
                "note", {"text": text, "job_id": job_id}, peer=SERVER_PEER, stream=Stream.NOTES
            )
        return note_id

    def notes(self) -> list[dict[str, object]]:
        rows = self.db.query("SELECT id, job_id, created, text_sealed FROM notes ORDER BY created")
        for r in rows:
            blob = r.pop("text_sealed")
            assert isinstance(blob, bytes)
            r["text"] = self.cipher.decrypt_text(blob, str(r["id"]).encode())
        return rows

    def add_utterance(self, *, session: str, start_s: float, end_s: float, text: str, avg_logprob: float,
                      no_speech_prob: float, model_version: str) -> str:
        """Store one final transcript (text sealed) in the context cache; returns its id."""
        uid = new_id()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO utterances (id, session, start_s, end_s, text_sealed, avg_logprob, no_speech_prob,"
                " model_version, created) VALUES (?,?,?,?,?,?,?,?,?)",
                (uid, session, start_s, end_s, self.cipher.encrypt_text(text, uid.encode()), avg_logprob,
                 no_speech_prob, model_version, time.time()),
            )
        return uid

    def utterances(self, *, session: str | None = None, limit: int = 50) -> list[dict[str, object]]:
        """Most recent first; decrypted for the assistant."""
        where, params = ("WHERE session=?", [session]) if session else ("", [])
        rows = self.db.query(
            f"SELECT * FROM utterances {where} ORDER BY created DESC, start_s DESC LIMIT ?", [*params, limit]
        )
        for r in rows:
            blob = r.pop("text_sealed")
            assert isinstance(blob, bytes)
            r["text"] = self.cipher.decrypt_text(blob, str(r["id"]).encode())
        return rows

    # ------------------------------------------------------------------ key/value (job context, link)
    # Every value is sealed (AES-GCM, bound to its key): a note read back and waiting for a yes, a question
    # offered to an expert, the job's address and the conversation are as sensitive as the notes themselves.
    # A value written before sealing (plain JSON) is still read, and sealed when it is next written.
    def _seal(self, key: str, value: object) -> str:
        blob = self.cipher.encrypt_text(json.dumps(value), f"kv:{key}".encode())
        return _SEALED + base64.b64encode(blob).decode("ascii")

    def _open(self, key: str, raw: str) -> object:
        if not raw.startswith(_SEALED):
            return json.loads(raw)
        return json.loads(self.cipher.decrypt_text(base64.b64decode(raw[len(_SEALED):]), f"kv:{key}".encode()))

    def get(self, key: str) -> object:
        raw = self.db.scalar("SELECT value FROM kv WHERE key=?", (key,))
        return None if raw is None else self._open(key, str(raw))

    def put(self, key: str, value: object, *, conn: sqlite3.Connection | None = None) -> None:
        """Write ``key`` (sealed), in its own transaction or in the caller's ``conn``."""
        if conn is not None:
            conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, self._seal(key, value)))
            return
        with self.db.transaction() as own:
            self.put(key, value, conn=own)

    # ------------------------------------------------------------------ answers from the server/experts
    def answers(self, *, unseen_only: bool = False) -> list[dict[str, object]]:
        rows = self.db.query("SELECT * FROM answers" + (" WHERE seen=0" if unseen_only else "") + " ORDER BY received")
        for r in rows:
            blob = r.pop("text_sealed")
            assert isinstance(blob, bytes)
            r["text"] = self.cipher.decrypt_text(blob, str(r["id"]).encode())
        return rows

    def mark_seen(self, ids: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE answers SET seen=1 WHERE id=?", [(i,) for i in ids])

    def _store_answer(self, conn: sqlite3.Connection, msg_id: str, kind: str, ref: str, text: str, source: str) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO answers (id, kind, ref, text_sealed, source, received) VALUES (?,?,?,?,?,?)",
            (msg_id, kind, ref, self.cipher.encrypt_text(text, msg_id.encode()), source, time.time()),
        )
        conn.execute("UPDATE requests SET expert_answered_at=? WHERE ref=? AND expert_answered_at IS NULL",
                     (time.time(), ref))

    def apply_server_message(self, conn: sqlite3.Connection, peer: str, msg: Message) -> None:
        """Effect of one server→device message, inside the inbox transaction (exactly once)."""
        p = msg.payload
        if isinstance(p, EscalationAnswer):
            self._store_answer(conn, msg.id, "expert", p.escalation_id, p.answer, p.expert)
            return
        if isinstance(p, TaskResult):
            self._store_answer(conn, msg.id, "task", p.task_id, p.result if p.ok else f"failed: {p.result}",
                               f"server:{p.kind}")
            return
        if isinstance(p, UpdateOffer):
            conn.execute("INSERT OR IGNORE INTO xfer (offer_id, offer, state, created) VALUES (?,?,?,?)",
                         (p.offer_id, p.model_dump_json(), "downloading", time.time()))
            return
        if isinstance(p, Assignment):
            self._apply_assignment(conn, p)
            return
        if isinstance(p, Command) and p.name == "update_rollback":
            self._apply_rollback_request(conn, msg.id, p.args)
            return
        if isinstance(msg.payload, Command):
            env = msg.envelope
            conn.execute(
                "INSERT INTO commands (id, stream, seq, name, args, received) VALUES (?,?,?,?,?,?)",
                (env.id, env.stream, env.seq, msg.payload.name, json.dumps(msg.payload.args), time.time()),
            )
            return
        raise RejectedError(f"device does not apply {msg.type} messages")

    @staticmethod
    def _apply_rollback_request(conn: sqlite3.Connection, msg_id: str, args: dict[str, object]) -> None:
        """A rollout went back: stop that download now; the update worker reverts an installed model."""
        offer_id = args.get("offer_id")
        version = args.get("version")
        if not isinstance(offer_id, str) or not isinstance(version, int):
            raise RejectedError("update_rollback needs offer_id (string) and version (integer)")
        conn.execute("UPDATE xfer SET state='cancelled' WHERE offer_id=? AND state='downloading'", (offer_id,))
        conn.execute("DELETE FROM xfer_chunks WHERE offer_id=?", (offer_id,))
        conn.execute("INSERT INTO rollback_requests (id, offer_id, version, received) VALUES (?,?,?,?)",
                     (msg_id, offer_id, version, time.time()))

    def _apply_assignment(self, conn: sqlite3.Connection, a: Assignment) -> None:
        """Keep the newest plan only; its first job becomes the current job context."""
        row = conn.execute("SELECT value FROM kv WHERE key='assignment'").fetchone()
        current = self._open("assignment", row[0]) if row else None
        if isinstance(current, dict) and current.get("plan_version", 0) > a.plan_version:
            return
        self.put("assignment", a.model_dump(mode="json"), conn=conn)
        if a.jobs:
            j = a.jobs[0]
            job = {"job_id": j.job_id, "title": j.title, "location": f"{j.location[0]:g},{j.location[1]:g}",
                   "details": f"planned {j.start_min // 60:02d}:{j.start_min % 60:02d}, priority {j.priority}"}
            self.put("current_job", job, conn=conn)

    def commands(self) -> list[dict[str, object]]:
        return self.db.query("SELECT id, stream, seq, name, args, received FROM commands ORDER BY stream, seq")

    def close(self) -> None:
        self.db.close()
