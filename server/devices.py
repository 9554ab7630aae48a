"""Devices and enrollment: the ``devices`` and ``enroll_tokens`` tables and every query on them.

A one-time token enrolls one device id with its Ed25519 public key, atomically with its audit entry.
Presence, tags and the latest telemetry (link quality, request stats) live on the device's row.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from linecrew.server.auth import audit
from linecrew.server.errors import EnrollmentError
from linecrew.shared.db import Database
from linecrew.shared.e2e import parse_public
from linecrew.shared.protocol import Telemetry, is_valid_device_id

SCHEMA = """
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
"""
SCHEMA_TAGS = """
ALTER TABLE devices ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE devices ADD COLUMN link_quality REAL;
ALTER TABLE enroll_tokens ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
"""
SCHEMA_REQUEST_STATS = "ALTER TABLE devices ADD COLUMN request_stats TEXT NOT NULL DEFAULT '{}'"
SCHEMA_SEAL_KEY = "ALTER TABLE devices ADD COLUMN seal_key TEXT"  # X25519 public key, base64 (end to end)


@dataclass(frozen=True)
class Device:
    id: str
    device_class: str
    public_key: str
    enrolled_at: float
    last_seen: float | None
    online: bool


class DeviceRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: set[str] = set()
        self._seal_keys: dict[str, X25519PublicKey] = {}

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

    def enroll(self, *, token: str, device_id: str, device_class: str, public_key: str,
               seal_key: str | None = None) -> Device:
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
                "INSERT INTO devices (id, device_class, public_key, enrolled_at, tags, seal_key) VALUES (?,?,?,?,?,?)",
                (device_id, device_class, public_key, now, tags, seal_key),
            )
            audit(conn, f"device:{device_id}", "device.enroll", f"device:{device_id}", "",
                  {"device_class": device_class}, at=now)
        self._known.add(device_id)
        return Device(device_id, device_class, public_key, now, None, False)

    def decommission(self, conn: sqlite3.Connection, device_id: str, *, actor: str, reason: str) -> None:
        """Remove the device's registration inside the caller's transaction (its credentials are revoked by the
        caller); the same id can enroll again afterwards with a new token."""
        if not conn.execute("DELETE FROM devices WHERE id=?", (device_id,)).rowcount:
            raise EnrollmentError(f"no device {device_id}")
        audit(conn, actor, "device.decommission", f"device:{device_id}", reason, {})
        self._known.discard(device_id)
        self._seal_keys.pop(device_id, None)

    def seal_key(self, device_id: str) -> X25519PublicKey | None:
        """The device's end-to-end public key (``None`` for a device enrolled without one)."""
        if device_id not in self._seal_keys:
            b64 = self.db.scalar("SELECT seal_key FROM devices WHERE id=?", (device_id,))
            if not b64:
                return None
            self._seal_keys[device_id] = parse_public(str(b64))
        return self._seal_keys[device_id]

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

    def all(self) -> list[Device]:
        rows = self.db.query(
            "SELECT id, device_class, public_key, enrolled_at, last_seen, online FROM devices ORDER BY id"
        )
        return [_device(r) for r in rows]

    def rows(self) -> list[dict[str, Any]]:
        """Each device as operators see it: class, tags, link, last telemetry (parsed)."""
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT id, device_class, tags, online, last_seen, link_quality, telemetry FROM devices ORDER BY id")
        for r in rows:
            r["tags"] = json.loads(str(r["tags"]))
            r["telemetry"] = json.loads(str(r["telemetry"]))
            r["online"] = bool(r["online"])
        return rows

    def online_map(self, conn: sqlite3.Connection) -> dict[str, bool]:
        """Which devices are online now, read inside the caller's transaction (rollout ticks)."""
        return {str(d): bool(o) for d, o in conn.execute("SELECT id, online FROM devices").fetchall()}

    def targets(self, conn: sqlite3.Connection) -> list[tuple[str, str, list[str]]]:
        """Every device's id, class and tags, inside the caller's transaction (rollout target sets)."""
        return [(str(d), str(c), json.loads(t)) for d, c, t in
                conn.execute("SELECT id, device_class, tags FROM devices ORDER BY id").fetchall()]

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
            audit(conn, actor, "device.tag", f"device:{device_id}", "", {"tags": sorted(set(tags))})

    # ------------------------------------------------------------------ telemetry
    def on_telemetry(self, conn: sqlite3.Connection, device_id: str, p: Telemetry, now: float) -> None:
        conn.execute(
            "UPDATE devices SET telemetry=?, last_seen=?, link_quality=COALESCE(?, link_quality) WHERE id=?",
            (json.dumps(p.metrics), now, p.metrics.get("link_quality"), device_id),
        )
        if p.requests:  # cumulative on the device: the latest report replaces the last
            conn.execute("UPDATE devices SET request_stats=? WHERE id=?",
                         (json.dumps({m: s.model_dump() for m, s in p.requests.items()}), device_id))

    def request_stats(self) -> list[dict[str, Any]]:
        """Each device's latest cumulative per-model request stats (JSON as the device sent it)."""
        return [json.loads(str(r["request_stats"])) for r in
                self.db.query("SELECT request_stats FROM devices WHERE request_stats <> '{}'")]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _device(r: dict[str, object]) -> Device:
    return Device(
        id=str(r["id"]), device_class=str(r["device_class"]), public_key=str(r["public_key"]),
        enrolled_at=float(r["enrolled_at"]),  # type: ignore[arg-type]
        last_seen=None if r["last_seen"] is None else float(r["last_seen"]),  # type: ignore[arg-type]
        online=bool(r["online"]),
    )
