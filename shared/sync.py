"""Durable store-and-forward: the outbox and inbox both sides use.

Rules:

* **Outbox** — a message is committed to SQLite before anyone may publish it, and deleted only when
  the peer's application-level ``ack`` arrives (the peer sends it after its own commit). Each
  ``(peer, stream)`` has a gap-free sequence; a stream's priority orders streams against each other.
  A byte quota bounds the table; when it is full the policy decides: ``reject`` refuses the new
  message (the caller keeps it), ``evict`` turns the oldest lower-priority messages into ``skip``
  tombstones recorded in ``dead_letters``, so the receiver's sequence stays gap-free.
* **Inbox** — a batch is applied in one transaction: messages sorted per stream; a message whose
  ``seq`` is the next expected one is applied (or, if expired, recorded without acting); a seen ``seq``
  is a duplicate and only acknowledged again; a gap asks the sender to resend from the missing seq.
  Applied ids are recorded, so each effect happens at most once while transport is at-least-once.

Retry timing is pure (``RetrySchedule``), so the engines that publish can be tested without a clock.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Database, Migration, executescript
from linecrew.shared.e2e import Sealer
from linecrew.shared.errors import CryptoError, OutboxFullError, ProtocolError, StorageError
from linecrew.shared.protocol import (
    Ack,
    Envelope,
    Message,
    Payload,
    Rejection,
    Resend,
    Stream,
    encode,
    make_envelope,
    register,
)

log = logging.getLogger(__name__)

OnFull = Literal["reject", "evict"]


class Skip(Payload):
    """Tombstone for a message the sender evicted: the receiver advances the stream, applies nothing."""

    reason: str


register("skip", Skip)

SYNC_SCHEMA = """
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (peer, stream, seq)
);
CREATE INDEX outbox_send_order ON outbox (peer, priority DESC, stream, seq);
CREATE TABLE outbox_streams (
    peer TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    PRIMARY KEY (peer, stream)
);
CREATE TABLE outbox_usage (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER NOT NULL);
INSERT INTO outbox_usage VALUES (1, 0);
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB
);
CREATE TABLE inbox_streams (
    peer TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (peer, stream)
);
CREATE TABLE inbox_applied (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    outcome TEXT NOT NULL,
    applied_at REAL NOT NULL
);
"""


DEAD_LETTER_SCHEMA = """
CREATE TABLE inbox_dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT,
    peer TEXT NOT NULL,
    type TEXT,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL,
    sealed INTEGER NOT NULL
);
"""
DEAD_LETTERS_KEEP = 10_000  # newest kept for inspection; a flood of poison cannot fill the disk
DEAD_LETTER_BODY_BYTES = 8192


def dead_letter_migration(version: int) -> Migration:
    """Rejected incoming messages, kept (bounded, sealed when a cipher is given) for inspection."""
    return Migration(version, "inbox dead letters", lambda conn: executescript(conn, DEAD_LETTER_SCHEMA))


def sync_migration(version: int) -> Migration:
    """The outbox/inbox tables as one migration, for the agent's and the server's schema lists."""
    return Migration(version, "outbox and inbox", lambda conn: executescript(conn, SYNC_SCHEMA))


# ---------------------------------------------------------------------------------------------- outbox
@dataclass(frozen=True)
class OutboxLimits:
    quota_bytes: int = 256 * 1024 * 1024
    on_full: OnFull = "reject"


@dataclass(frozen=True)
class Pending:
    id: str
    peer: str
    stream: str
    seq: int
    body: bytes  # the encoded envelope, ready to publish
    expires: float | None = None  # Unix seconds; also set as the MQTT message expiry


class Outbox:
    """Messages waiting for a peer's acknowledgement, per ``(peer, stream)`` in sequence order."""

    def __init__(
        self,
        db: Database,
        *,
        sender_id: str,
        cipher: FieldCipher | None = None,
        limits: OutboxLimits | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self.sender_id = sender_id
        self.cipher = cipher
        self.limits = limits or OutboxLimits()
        self.sealer = sealer  # end to end: sensitive fields leave sealed to the peer's key

    def put(
        self,
        type_: str,
        payload: Payload | dict[str, object],
        *,
        peer: str,
        stream: str = "default",
        priority: int | None = None,
        ttl_s: float | None = None,
        device_id: str | None = None,
    ) -> Envelope:
        """Commit one message; when this returns it will be delivered or visibly dead-lettered."""
        return self.put_many(
            [(type_, payload)], peer=peer, stream=stream, priority=priority, ttl_s=ttl_s, device_id=device_id
        )[0]

    def put_many(
        self,
        items: Iterable[tuple[str, Payload | dict[str, object]]],
        *,
        peer: str,
        stream: str = "default",
        priority: int | None = None,
        ttl_s: float | None = None,
        device_id: str | None = None,
    ) -> list[Envelope]:
        """Commit several messages of one stream in one transaction (all or none).

        A protocol ``Stream`` has its priority defined there; ``priority`` is for ad-hoc streams (tests, tools).
        A stream keeps the priority it was created with."""
        if priority is None:
            priority = Stream(stream).priority if stream in Stream.__members__.values() else 0
        now = time.time()
        out: list[Envelope] = []
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT last_seq, priority FROM outbox_streams WHERE peer=? AND stream=?", (peer, stream)
            ).fetchone()
            last_seq, priority = (row[0], row[1]) if row else (0, priority)
            rows = []
            for type_, payload in items:
                last_seq += 1
                env = make_envelope(
                    type_,
                    payload,
                    device_id=device_id or self.sender_id,
                    stream=stream,
                    seq=last_seq,
                    ttl_s=ttl_s,
                    now=now,
                )
                if self.sealer is not None:
                    env = env.model_copy(update={"payload": self.sealer(peer, env.id, env.type, env.payload)})
                body = self._seal(encode(env), env.id)
                rows.append(
                    (env.id, peer, stream, last_seq, type_, priority, now, env.expires, len(body), body)
                )
                out.append(env)
            added = sum(r[8] for r in rows)
            self._make_room(conn, added, priority)
            conn.executemany(
                "INSERT INTO outbox (id, peer, stream, seq, type, priority, created, expires, size, body)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.execute(
                "INSERT INTO outbox_streams (peer, stream, last_seq, priority) VALUES (?,?,?,?)"
                " ON CONFLICT (peer, stream) DO UPDATE SET last_seq=excluded.last_seq",
                (peer, stream, last_seq, priority),
            )
            conn.execute("UPDATE outbox_usage SET bytes = bytes + ?", (added,))
        return out

    def _make_room(self, conn: sqlite3.Connection, needed: int, priority: int) -> None:
        used = conn.execute("SELECT bytes FROM outbox_usage").fetchone()[0]
        over = used + needed - self.limits.quota_bytes
        if over <= 0:
            return
        if self.limits.on_full == "reject":
            raise OutboxFullError(
                f"outbox full: {used} of {self.limits.quota_bytes} bytes used, {needed} more refused"
            )
        victims = conn.execute(
            "SELECT id, peer, stream, seq, type, size FROM outbox WHERE priority < ? AND type != 'skip'"
            " ORDER BY priority, created LIMIT 10000",
            (priority,),
        ).fetchall()
        freed = 0
        for vid, vpeer, vstream, vseq, vtype, vsize in victims:
            if freed >= over:
                break
            freed += vsize - self._bury(conn, vid, vpeer, vstream, vseq, vtype, vsize, "evicted: outbox full")[1]
        if freed < over:
            raise OutboxFullError(f"outbox full and only {freed} of {over} bytes could be evicted")

    def _bury(self, conn: sqlite3.Connection, id_: str, peer: str, stream: str, seq: int, type_: str, size: int,
              reason: str, body: bytes | None = None) -> tuple[bytes, int]:
        """Replace a queued message by a tombstone (the receiver's stream stays gap-free) and record why in
        ``dead_letters`` (with ``body`` where it is kept); returns the tombstone and its size at rest."""
        now = time.time()
        tomb = encode(make_envelope("skip", Skip(reason=reason), device_id=self.sender_id,
                                    stream=stream, seq=seq, now=now, id_=id_))
        sealed = self._seal(tomb, id_)
        conn.execute("UPDATE outbox SET type='skip', body=?, size=? WHERE id=?", (sealed, len(sealed), id_))
        conn.execute(
            "INSERT INTO dead_letters (id, peer, stream, seq, type, reason, at, body) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET reason=excluded.reason, at=excluded.at,"
            " body=COALESCE(excluded.body, dead_letters.body)",
            (id_, peer, stream, seq, type_, reason, now, body),
        )
        conn.execute("UPDATE outbox_usage SET bytes = bytes - ?", (size - len(sealed),))
        return tomb, len(sealed)

    def pending(self, peer: str, *, limit: int, exclude: set[str] | None = None) -> list[Pending]:
        """Oldest-first per stream, higher-priority streams first; ``exclude`` skips ids in flight."""
        exclude = exclude or set()
        out: list[Pending] = []
        offset = 0
        while len(out) < limit:
            with self.db.lock:
                rows = self.db.conn.execute(
                    "SELECT id, stream, seq, body, expires FROM outbox WHERE peer=?"
                    " ORDER BY priority DESC, stream, seq LIMIT ? OFFSET ?",
                    (peer, limit + len(exclude), offset),
                ).fetchall()
            if not rows:
                break
            offset += len(rows)
            for rid, stream, seq, body, expires in rows:
                if rid not in exclude:
                    try:
                        opened: bytes | None = self._open(body, rid)
                    except CryptoError as e:  # one unreadable row must not stall every message behind it
                        opened = self._unreadable(rid, peer, stream, seq, body, e)
                    if opened is None:  # acknowledged meanwhile
                        continue
                    out.append(Pending(rid, peer, stream, seq, opened, expires))
                    if len(out) >= limit:
                        break
        return out

    def _unreadable(self, id_: str, peer: str, stream: str, seq: int, body: bytes,
                    error: CryptoError) -> bytes | None:
        """A row the field key cannot open (sealed with another key, or damaged on disk) goes to the receiver as
        a tombstone and to ``dead_letters`` with its sealed body, so the stream behind it moves on."""
        log.error("outbox message %s (%s #%d) cannot be opened: %s; sent as a tombstone", id_, stream, seq, error)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT type, size FROM outbox WHERE id=?", (id_,)).fetchone()
            if row is None:
                return None
            type_, size = row
            return self._bury(conn, id_, peer, stream, seq, type_, size, f"unreadable at rest: {error}", body)[0]

    def acknowledge(self, peer: str, ids: Iterable[str], rejected: Iterable[Rejection] = ()) -> int:
        """Delete acknowledged messages; move rejected ones to ``dead_letters`` with the reason."""
        ids = list(ids)
        rejected = list(rejected)
        if not ids and not rejected:
            return 0
        now = time.time()
        with self.db.transaction() as conn:
            for r in rejected:
                conn.execute(
                    "INSERT INTO dead_letters (id, peer, stream, seq, type, reason, at, body)"
                    " SELECT id, peer, stream, seq, type, ?, ?, body FROM outbox WHERE id=? AND peer=?"
                    " ON CONFLICT (id) DO UPDATE SET reason=excluded.reason, at=excluded.at, body=excluded.body",
                    (f"rejected by peer: {r.reason}", now, r.id, peer),
                )
            all_ids = ids + [r.id for r in rejected]
            freed = 0
            deleted = 0
            for chunk in _chunks(all_ids, 500):
                marks = ",".join("?" * len(chunk))
                freed += conn.execute(
                    f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE peer=? AND id IN ({marks})",
                    (peer, *chunk),
                ).fetchone()[0]
                deleted += conn.execute(
                    f"DELETE FROM outbox WHERE peer=? AND id IN ({marks})", (peer, *chunk)
                ).rowcount
            conn.execute("UPDATE outbox_usage SET bytes = bytes - ?", (freed,))
        return deleted

    def depth(self, peer: str | None = None) -> int:
        if peer is None:
            return int(self.db.scalar("SELECT COUNT(*) FROM outbox") or 0)
        return int(self.db.scalar("SELECT COUNT(*) FROM outbox WHERE peer=?", (peer,)) or 0)

    def forget_peer(self, conn: sqlite3.Connection, peer: str) -> int:
        """Drop everything queued for a decommissioned peer (inside the caller's transaction); returns how many."""
        freed = conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE peer=?", (peer,)).fetchone()[0]
        dropped = int(conn.execute("DELETE FROM outbox WHERE peer=?", (peer,)).rowcount)
        conn.execute("DELETE FROM outbox_streams WHERE peer=?", (peer,))
        conn.execute("UPDATE outbox_usage SET bytes = bytes - ?", (freed,))
        return dropped

    def depth_by_type(self) -> dict[str, int]:
        """Waiting messages per type (a device screen shows queued escalations, notes, job updates)."""
        rows = self.db.query("SELECT type, COUNT(*) AS n FROM outbox GROUP BY type")
        return {str(r["type"]): int(r["n"]) for r in rows}  # type: ignore[call-overload]

    def depth_by_peer(self) -> dict[str, int]:
        return {str(r["peer"]): int(r["n"]) for r in  # type: ignore[call-overload]
                self.db.query("SELECT peer, COUNT(*) AS n FROM outbox GROUP BY peer")}

    def used_bytes(self) -> int:
        return int(self.db.scalar("SELECT bytes FROM outbox_usage") or 0)

    def last_seq(self, peer: str, stream: str) -> int:
        return int(
            self.db.scalar("SELECT last_seq FROM outbox_streams WHERE peer=? AND stream=?", (peer, stream))
            or 0
        )

    def dead_letters(self) -> list[dict[str, object]]:
        return self.db.query("SELECT id, peer, stream, seq, type, reason, at FROM dead_letters ORDER BY at")

    def _seal(self, body: bytes, id_: str) -> bytes:
        return self.cipher.encrypt(body, id_.encode()) if self.cipher else body

    def _open(self, body: bytes, id_: str) -> bytes:
        return self.cipher.decrypt(body, id_.encode()) if self.cipher else body


# ----------------------------------------------------------------------------------------------- inbox
class Outcome(StrEnum):
    APPLIED = "applied"
    EXPIRED = "expired"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    GAP = "gap"


ApplyFn = Callable[[sqlite3.Connection, str, Message], None]


@dataclass
class BatchResult:
    """What to tell each peer after the commit: one :class:`Ack` per peer, plus per-outcome counts."""

    acks: dict[str, Ack] = field(default_factory=dict)
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    applied: list[tuple[str, Message]] = field(default_factory=list)
    rejected: list[tuple[str, Message, str]] = field(default_factory=list)  # peer, message, reason

    def _ack(self, peer: str) -> Ack:
        return self.acks.setdefault(peer, Ack())

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1



def _store_failure(e: Exception) -> bool:
    """A failure of the database itself (disk, lock, lost connection), as opposed to one caused by a message."""
    if isinstance(e, StorageError | sqlite3.OperationalError | sqlite3.InterfaceError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)


class Inbox:
    """Applies incoming durable messages exactly once, in per-stream order."""

    def __init__(self, db: Database, *, cipher: FieldCipher | None = None) -> None:
        self.db = db
        self.cipher = cipher

    def dead_letter(self, conn: sqlite3.Connection | None, peer: str, message_id: str | None, type_: str | None,
                    reason: str, body: bytes) -> None:
        """Keep a rejected message (its first bytes) with the reason, inside ``conn``'s transaction if given."""
        if conn is None:
            with self.db.transaction() as own:
                self.dead_letter(own, peer, message_id, type_, reason, body)
            return
        body = body[:DEAD_LETTER_BODY_BYTES]
        sealed = self.cipher is not None
        if self.cipher is not None:
            body = self.cipher.encrypt(body, f"dead:{peer}:{message_id}".encode())
        conn.execute("INSERT INTO inbox_dead_letters (id, peer, type, reason, at, body, sealed) VALUES (?,?,?,?,?,?,?)",
                     (message_id, peer, type_, reason[:500], time.time(), body, int(sealed)))
        conn.execute("DELETE FROM inbox_dead_letters WHERE n <= (SELECT MAX(n) FROM inbox_dead_letters) - ?",
                     (DEAD_LETTERS_KEEP,))

    def dead_letter_count(self, peer: str | None = None) -> int:
        if peer is None:
            return int(self.db.scalar("SELECT COUNT(*) FROM inbox_dead_letters") or 0)
        return int(self.db.scalar("SELECT COUNT(*) FROM inbox_dead_letters WHERE peer=?", (peer,)) or 0)

    def dead_letter_reasons(self, peer: str | None = None) -> dict[str, int]:
        """How many dead letters per kind of reason (the part before the first colon)."""
        where, params = ("WHERE peer=?", [peer]) if peer else ("", [])
        out: dict[str, int] = {}
        for r in self.db.query(f"SELECT reason, COUNT(*) AS n FROM inbox_dead_letters {where} GROUP BY reason", params):
            kind = str(r["reason"]).split(":")[0]
            out[kind] = out.get(kind, 0) + int(r["n"])  # type: ignore[call-overload]
        return dict(sorted(out.items()))

    def dead_letters(self, peer: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """The newest rejected messages with their reasons (bodies opened for the operator)."""
        where, params = ("WHERE peer=?", [peer]) if peer else ("", [])
        rows = self.db.query(f"SELECT id, peer, type, reason, at, body, sealed FROM inbox_dead_letters {where}"
                             " ORDER BY n DESC LIMIT ?", [*params, max(1, min(limit, 1000))])
        for r in rows:
            blob = r.pop("body")
            assert isinstance(blob, bytes)
            if r.pop("sealed") and self.cipher is not None:
                blob = self.cipher.decrypt(blob, f"dead:{r['peer']}:{r['id']}".encode())
            r["body"] = blob.decode(errors="replace")
        return rows

    def accept(self, batch: Iterable[tuple[str, Message]], apply: ApplyFn, *, now: float | None = None
               ) -> BatchResult:
        """Apply a batch in one transaction. Acks in the result must be sent only after this returns."""
        now = time.time() if now is None else now
        result = BatchResult()
        ordered = sorted(batch, key=lambda pm: (pm[0], pm[1].envelope.stream or "", pm[1].envelope.seq or 0))
        with self.db.transaction() as conn:
            expected: dict[tuple[str, str], int] = {}
            for peer, msg in ordered:
                self._accept_one(conn, peer, msg, apply, expected, result, now)
            for (peer, stream), nxt in expected.items():
                conn.execute(
                    "INSERT INTO inbox_streams (peer, stream, last_seq) VALUES (?,?,?)"
                    " ON CONFLICT (peer, stream) DO UPDATE SET last_seq=excluded.last_seq",
                    (peer, stream, nxt - 1),
                )
        return result

    def _accept_one(
        self,
        conn: sqlite3.Connection,
        peer: str,
        msg: Message,
        apply: ApplyFn,
        expected: dict[tuple[str, str], int],
        result: BatchResult,
        now: float,
    ) -> None:
        env = msg.envelope
        assert env.stream is not None and env.seq is not None
        key = (peer, env.stream)
        if key not in expected:
            row = conn.execute(
                "SELECT last_seq FROM inbox_streams WHERE peer=? AND stream=?", key
            ).fetchone()
            expected[key] = (row[0] if row else 0) + 1
        nxt = expected[key]
        ack = result._ack(peer)
        if env.seq < nxt:
            ack.ids.append(env.id)
            result.count(Outcome.DUPLICATE)
            return
        if env.seq > nxt:
            if not any(r.stream == env.stream for r in ack.resend):
                ack.resend.append(Resend(stream=env.stream, from_seq=nxt))
            result.count(Outcome.GAP)
            return
        outcome = self._apply(conn, peer, msg, apply, now)
        conn.execute(
            "INSERT INTO inbox_applied (id, peer, stream, seq, type, outcome, applied_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (env.id, peer, env.stream, env.seq, env.type, outcome[0].value, now),
        )
        expected[key] = nxt + 1
        result.count(outcome[0])
        if outcome[0] is Outcome.REJECTED:
            ack.rejected.append(Rejection(id=env.id, reason=outcome[1]))
            result.rejected.append((peer, msg, outcome[1]))
            self.dead_letter(conn, peer, env.id, env.type, outcome[1], encode(env))
        else:
            ack.ids.append(env.id)
            if outcome[0] is Outcome.APPLIED:
                result.applied.append((peer, msg))

    @staticmethod
    def _apply(conn: sqlite3.Connection, peer: str, msg: Message, apply: ApplyFn, now: float
               ) -> tuple[Outcome, str]:
        if msg.type == "skip":
            return Outcome.SKIPPED, ""
        if msg.envelope.expired(now):
            return Outcome.EXPIRED, ""
        conn.execute("SAVEPOINT apply_one")
        try:
            apply(conn, peer, msg)
        except ProtocolError as e:  # RejectedError included
            conn.execute("ROLLBACK TO apply_one")
            conn.execute("RELEASE apply_one")
            return Outcome.REJECTED, getattr(e, "reason", str(e))
        except Exception as e:  # the message broke its apply step (a reused id, a value the code cannot take)
            if _store_failure(e):
                raise  # the store failed, not the message: the batch stays unacknowledged and is retried
            conn.execute("ROLLBACK TO apply_one")
            conn.execute("RELEASE apply_one")
            log.warning("message %s from %s could not be applied: %s: %s", msg.envelope.id, peer,
                        type(e).__name__, str(e)[:200])
            return Outcome.REJECTED, f"apply failed: {type(e).__name__}: {str(e)[:200]}"
        conn.execute("RELEASE apply_one")
        return Outcome.APPLIED, ""

    def forget_peer(self, conn: sqlite3.Connection, peer: str) -> None:
        """A decommissioned peer: its stream positions go, so the same id enrolled again starts afresh."""
        conn.execute("DELETE FROM inbox_streams WHERE peer=?", (peer,))
        conn.execute("DELETE FROM inbox_applied WHERE peer=?", (peer,))

    def applied_count(self, peer: str | None = None) -> int:
        if peer is None:
            return int(self.db.scalar("SELECT COUNT(*) FROM inbox_applied") or 0)
        return int(self.db.scalar("SELECT COUNT(*) FROM inbox_applied WHERE peer=?", (peer,)) or 0)

    def prune(self, older_than: float) -> int:
        """Forget applied ids older than a horizon; per-stream sequences still stop duplicates."""
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM inbox_applied WHERE applied_at < ?", (older_than,)).rowcount


# ------------------------------------------------------------------------------------- retry schedule
@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter: delay in ``[base, min(cap, base * 2**attempt)]``."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rnd: Callable[[], float] = random.random) -> float:
        top = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return self.base_s + (top - self.base_s) * rnd()


@dataclass
class _Flight:
    attempt: int
    due: float
    stream: str
    seq: int


class RetrySchedule:
    """In-memory bookkeeping of published-but-unacknowledged messages (the rows stay on disk).

    After a restart nothing is in flight, so every pending row is published again; the receiver's
    sequence check turns that into duplicates acknowledged, not effects repeated.
    """

    def __init__(self, backoff: Backoff | None = None, *, ack_timeout_s: float = 5.0) -> None:
        self.backoff = backoff or Backoff()
        self.ack_timeout_s = ack_timeout_s
        self._flights: dict[str, _Flight] = {}

    def sent(self, p: Pending, now: float) -> None:
        prev = self._flights.get(p.id)
        attempt = 0 if prev is None else prev.attempt + 1
        wait = self.ack_timeout_s + (self.backoff.delay(attempt) if attempt else 0.0)
        self._flights[p.id] = _Flight(attempt, now + wait, p.stream, p.seq)

    def done(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._flights.pop(i, None)

    def due(self, now: float) -> list[str]:
        return [i for i, f in self._flights.items() if f.due <= now]

    def forget_stream_from(self, stream: str, from_seq: int) -> None:
        """A resend request: those messages go out again at once, counting as retries."""
        for f in self._flights.values():
            if f.stream == stream and f.seq >= from_seq:
                f.due = 0.0

    def in_flight(self) -> set[str]:
        return set(self._flights)

    def __len__(self) -> int:
        return len(self._flights)


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
