"""API tokens with roles, and the audit log of every administrative write.

Tokens are random 256-bit strings shown once; only their sha256 is stored. The audit log records who
did what to which object and why, in the same transaction as the change it describes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable

from linecrew.server.errors import AuthError, ServerError
from linecrew.server.rollout_policy import Principal, Role
from linecrew.shared.db import Database

SCHEMA = """
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_target ON audit (target, id);
"""

SCHEMA_EXPIRY = "ALTER TABLE api_tokens ADD COLUMN expires REAL"

TOKEN_PREFIX = "lct_"
DEFAULT_TTL_S = 90 * 86400  # a forgotten token stops working by itself; 0 means it never expires


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, roles: Iterable[Role | str], *, ttl_s: float = DEFAULT_TTL_S) -> str:
        """A new token for ``name`` with ``roles``, valid ``ttl_s`` (0: no expiry); the only time the token
        itself is visible."""
        parsed = sorted({Role(r) for r in roles})
        if not parsed:
            raise ServerError("a token needs at least one role")
        if ttl_s < 0:
            raise ServerError("a token's lifetime cannot be negative")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        expires = now + ttl_s if ttl_s else None
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO api_tokens (token_hash, name, roles, created, expires) VALUES (?,?,?,?,?)",
                         (_hash(token), name, json.dumps([r.value for r in parsed]), now, expires))
            audit(conn, "system", "token.create", f"token:{name}", "",
                  {"roles": [r.value for r in parsed], "expires": expires})
        return token

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthError("no token: send 'Authorization: Bearer <token>'")
        rows = self.db.query("SELECT name, roles, revoked, expires FROM api_tokens WHERE token_hash=?",
                             (_hash(token),))
        if not rows:
            raise AuthError("unknown token")
        if rows[0]["revoked"] is not None:
            raise AuthError("token revoked")
        if rows[0]["expires"] is not None and time.time() >= float(rows[0]["expires"]):  # type: ignore[arg-type]
            raise AuthError("token expired: create a new one with 'linecrew server token create'")
        return Principal(str(rows[0]["name"]), frozenset(Role(r) for r in json.loads(str(rows[0]["roles"]))))

    def revoke(self, name: str) -> int:
        with self.db.transaction() as conn:
            n = conn.execute("UPDATE api_tokens SET revoked=? WHERE name=? AND revoked IS NULL",
                             (time.time(), name)).rowcount
            audit(conn, "system", "token.revoke", f"token:{name}", "", {})
        return int(n)

    def list(self) -> list[dict[str, object]]:
        rows = self.db.query("SELECT name, roles, created, expires, revoked FROM api_tokens ORDER BY created")
        for r in rows:
            r["roles"] = json.loads(str(r["roles"]))
        return rows


def audit(conn: sqlite3.Connection, actor: str, action: str, target: str, reason: str = "",
          detail: dict[str, object] | None = None, *, at: float | None = None) -> None:
    """Record one administrative action inside the caller's transaction."""
    conn.execute("INSERT INTO audit (at, actor, action, target, reason, detail) VALUES (?,?,?,?,?,?)",
                 (time.time() if at is None else at, actor, action, target, reason[:1000],
                  json.dumps(detail or {})))


def audit_log(db: Database, *, target: str | None = None, limit: int = 200) -> list[dict[str, object]]:
    where, params = ("WHERE target=?", [target]) if target else ("", [])
    rows = db.query(f"SELECT id, at, actor, action, target, reason, detail FROM audit {where}"
                    " ORDER BY id DESC LIMIT ?", [*params, limit])
    for r in rows:
        r["detail"] = json.loads(str(r["detail"]))
    return rows


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
