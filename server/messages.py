"""The log of applied device messages (``device_messages``); sensitive payloads sealed with the field key."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Database
from linecrew.shared.e2e import SEALED_FIELDS
from linecrew.shared.protocol import Message

SENSITIVE_TYPES = frozenset(SEALED_FIELDS)  # what travels sealed end to end is also sealed at rest here

SCHEMA = """
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


class MessageLog:
    def __init__(self, db: Database, cipher: FieldCipher) -> None:
        self.db = db
        self.cipher = cipher

    def record(self, conn: sqlite3.Connection, device_id: str, msg: Message, now: float) -> None:
        """Keep one applied message, inside the inbox transaction that applies it."""
        env = msg.envelope
        raw = json.dumps(env.payload, separators=(",", ":")).encode()
        sealed = env.type in SENSITIVE_TYPES
        body = self.cipher.encrypt(raw, env.id.encode()) if sealed else raw
        conn.execute(
            "INSERT INTO device_messages (id, device_id, type, stream, seq, created, received, payload, sealed)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (env.id, device_id, env.type, env.stream, env.seq, env.created, now, body, int(sealed)),
        )

    def messages(self, device_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE device_id=?", [device_id]) if device_id else ("", [])
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT id, device_id, type, stream, seq, created, received, payload, sealed FROM device_messages"
            f" {where} ORDER BY received DESC, seq DESC LIMIT ?",
            [*params, limit],
        )
        for r in rows:
            blob = r.pop("payload")
            raw = self.cipher.decrypt(blob, str(r["id"]).encode()) if r.pop("sealed") else blob
            r["payload"] = json.loads(raw)
        return rows

    def count(self, device_id: str | None = None) -> int:
        if device_id:
            return int(self.db.scalar("SELECT COUNT(*) FROM device_messages WHERE device_id=?", (device_id,)) or 0)
        return int(self.db.scalar("SELECT COUNT(*) FROM device_messages") or 0)
