"""SQLite helpers: one way to open a database, explicit transactions and versioned migrations.

Every database is opened in WAL mode with a busy timeout. ``synchronous=FULL`` is the default so a
committed transaction survives power loss, not only a process crash: an acknowledgement is a promise.
Migrations are plain functions, each applied in its own transaction together with its row in
``schema_version``; a failing migration leaves the database at the previous version. Processes that open the
same file at once each apply a migration only if it is still missing once they hold the write lock.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linecrew.shared.errors import MigrationError, StorageError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _private_file(path: Path) -> None:
    """State is for this service's user alone: its folder 0700, the database 0600 (SQLite gives its -wal and -shm
    files the database's mode), also when an older version left them readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if side.exists():
            os.chmod(side, 0o600)


class Database:
    """A SQLite connection (rows as dicts) plus a lock, so one connection can be shared by a few threads."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            _private_file(self.path)
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open database {path}: {e}") from e
        self.conn = conn
        self.lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolls back on any exception and converts driver errors.

        A transaction opened inside another on the same thread joins the outer one, so library calls
        (an outbox put, say) compose with the caller's own writes into one atomic commit.
        """
        errors = self._driver_errors()
        with self.lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            try:
                self._begin()
            except errors as e:
                self._rollback()
                raise StorageError(f"cannot begin transaction: {e}") from e
            try:
                yield self.conn
            except errors as e:
                self._rollback()
                raise StorageError(_explain(e)) from e
            except BaseException:
                self._rollback()
                raise
            try:
                self.conn.execute("COMMIT")
            except errors as e:
                self._rollback()
                raise StorageError(f"commit failed: {_explain(e)}") from e

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _driver_errors(self) -> type[Exception]:
        return sqlite3.Error

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            self.conn.execute("ROLLBACK")

    def query(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[dict[str, object]]:
        with self.lock:
            try:
                cur = self.conn.execute(sql, params)
                names = [d[0] for d in cur.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except sqlite3.Error as e:
                raise StorageError(f"query failed: {e}") from e

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        with self.lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply the migrations newer than the stored version; returns the resulting version."""
        with self.lock:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = self.version()
            for m in sorted(migrations, key=lambda m: m.version):
                if m.version <= current:
                    continue
                try:
                    with self.transaction() as conn:
                        # read again under the write lock: another process opening the same file (the agent and
                        # a CLI command started beside it) may have applied it while this one waited
                        current = self.version()
                        if m.version <= current:
                            continue
                        m.apply(conn)
                        conn.execute(
                            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                            (m.version, m.name, time.time()),
                        )
                except (sqlite3.Error, StorageError) as e:
                    raise MigrationError(f"migration {m.version} ({m.name}) failed: {e}") from e
                current = m.version
            return current

    def version(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class PostgresDatabase(Database):
    """The same interface over PostgreSQL (psycopg 3), for server state shared by several processes.

    Statements are written once in the SQL that SQLite and PostgreSQL share (``ON CONFLICT`` upserts,
    ``RETURNING``); ``?`` placeholders and SQLite column types are translated here. Every write
    transaction takes one advisory lock, so writers serialize across processes exactly as they do on
    SQLite and the read-modify-write code above needs no second design.
    """

    LOCK_KEY = 0x4C43  # "LC"

    def __init__(self, url: str) -> None:  # no sqlite connection here: not calling super()
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - declared dependency
            raise StorageError("PostgreSQL support needs psycopg: pip install 'psycopg[binary]'") from e
        self._psycopg = psycopg
        self.path = Path("postgresql")
        self.url = url
        try:
            raw = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise StorageError(f"cannot connect to PostgreSQL: {_redact(url)}: {e}") from e
        self.pg = _PgConnection(raw)
        self.conn = self.pg  # type: ignore[assignment]
        self.lock = threading.RLock()

    def _begin(self) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute(f"SELECT pg_advisory_xact_lock({self.LOCK_KEY})")

    def _driver_errors(self) -> type[Exception]:
        return self._psycopg.Error

    def query(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[dict[str, object]]:
        from psycopg.rows import dict_row

        with self.lock:
            try:
                cur = self.pg.raw.cursor(row_factory=dict_row)
                cur.execute(_to_pg(sql), params)
                return list(cur.fetchall())
            except self._psycopg.Error as e:
                if not self.conn.in_transaction:
                    raise StorageError(f"query failed: {e}") from e
                raise

    def migrate(self, migrations: Sequence[Migration]) -> int:
        """As on SQLite, but the whole run holds the database lock, so concurrent starters wait."""
        with self.lock:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            with self.transaction():
                current = self.version()
                for m in sorted(migrations, key=lambda m: m.version):
                    if m.version <= current:
                        continue
                    try:
                        self.conn.execute("SAVEPOINT migration")
                        m.apply(self.conn)
                        self.conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                                          (m.version, m.name, time.time()))
                        self.conn.execute("RELEASE migration")
                    except self._psycopg.Error as e:
                        raise MigrationError(f"migration {m.version} ({m.name}) failed: {e}") from e
                    current = m.version
            return current

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        with self.lock:
            self.pg.raw.close()


class _PgConnection:
    """Enough of ``sqlite3.Connection`` for our code: execute/executemany with ``?`` placeholders."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self.raw.execute(_to_pg(sql), params or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(_to_pg(sql), rows)
        return cur


_PG_TYPES = [(re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
             (re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
             (re.compile(r"\bBLOB\b"), "BYTEA")]


@functools.lru_cache(maxsize=1024)
def _to_pg(sql: str) -> str:
    """SQLite spelling → PostgreSQL: types in DDL, ``?`` placeholders (``%`` escaped)."""
    if re.match(r"\s*(CREATE|ALTER) TABLE", sql, re.I):
        for pattern, repl in _PG_TYPES:
            sql = pattern.sub(repl, sql)
    return sql.replace("%", "%%").replace("?", "%s")


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_database(target: Path | str, *, synchronous: str = "FULL") -> Database:
    """A SQLite file for a path, PostgreSQL for a ``postgresql://`` URL."""
    if str(target).startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(str(target))
    return Database(target, synchronous=synchronous)


def executescript(conn: sqlite3.Connection, script: str) -> None:
    """Run several ``;``-separated statements inside the current transaction (unlike executescript)."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _explain(e: Exception) -> str:
    if "full" in str(e).lower():
        return f"disk full: {e}; nothing was written, everything committed before is intact"
    return f"database error: {e}"
