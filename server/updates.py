"""Model delivery: release registry, per-device offers (delta or full, whichever is smaller), chunks.

Devices report what they run (``update_report``); the server offers the newest release for their
class with the smallest payload that applies to what they have. Chunks of at most 128 KB travel as raw
MQTT payloads with offer id, index and sha256 as MQTT 5 user properties, only when the device asks for
them (so a transfer resumes from whatever the device already holds), through a per-device token
bucket (bytes per second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linecrew.server.auth import audit
from linecrew.shared.db import Database
from linecrew.shared.mqtt import MqttLink
from linecrew.shared.protocol import ChunkRequest, Stream, Topics, UpdateReport, new_id
from linecrew.shared.sync import Outbox

log = logging.getLogger(__name__)

CHUNK_BYTES = 128 * 1024

SCHEMA = """
CREATE TABLE releases (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    device_classes TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE release_payloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    base_sha256 TEXT,
    path TEXT NOT NULL,
    length INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE offers (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    payload_id INTEGER NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE device_models (
    device_id TEXT PRIMARY KEY,
    version INTEGER,
    sha256 TEXT,
    state TEXT,
    updated REAL NOT NULL
);
"""

SCHEMA_SLOTS = """
ALTER TABLE offers ADD COLUMN rollout_id TEXT;
CREATE INDEX offers_by_rollout ON offers (rollout_id);
ALTER TABLE device_models ADD COLUMN slots TEXT NOT NULL DEFAULT '{}';
ALTER TABLE device_models ADD COLUMN health TEXT;
"""


@dataclass(frozen=True)
class Payload:
    id: int
    kind: str
    path: Path
    length: int
    sha256: str


class ReleaseRegistry:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    def add(self, manifest: dict[str, Any], model: Path, deltas: Sequence[Path] = (), *,
            actor: str = "system") -> None:
        """Register a signed release with its model and delta files (verified by their hashes)."""
        from linecrew.shared.delta import read_header, sha256_file

        s = manifest["signed"]
        if sha256_file(model) != s["sha256"]:
            raise ValueError(f"{model} does not match the manifest's sha256")
        rows = [("full", None, model, s["length"], s["sha256"])]
        for d in deltas:
            header, _ = read_header(d)
            rows.append(("delta", header["old_sha256"], d, d.stat().st_size, sha256_file(d)))
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO releases (name, version, manifest, device_classes) VALUES (?,?,?,?)"
                         " ON CONFLICT (name, version) DO UPDATE SET manifest=excluded.manifest,"
                         " device_classes=excluded.device_classes",
                         (s["name"], s["version"], json.dumps(manifest), json.dumps(s["device_classes"])))
            conn.execute("DELETE FROM release_payloads WHERE name=? AND version=?", (s["name"], s["version"]))
            for kind, base, path, length, sha in rows:
                conn.execute("INSERT INTO release_payloads (name, version, kind, base_sha256, path, length, sha256)"
                             " VALUES (?,?,?,?,?,?,?)", (s["name"], s["version"], kind, base, str(path), length, sha))
            audit(conn, actor, "release.add", f"release:{s['name']}@{s['version']}", "",
                  {"sha256": s["sha256"], "deltas": len(rows) - 1})

    def release(self, name: str, version: int) -> dict[str, Any] | None:
        rows = self.db.query("SELECT manifest FROM releases WHERE name=? AND version=?", (name, version))
        return json.loads(str(rows[0]["manifest"])) if rows else None

    def all(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT name, version, device_classes, manifest FROM releases ORDER BY name, version")
        out = []
        for r in rows:
            s = json.loads(str(r["manifest"]))["signed"]
            out.append({"name": r["name"], "version": r["version"],
                        "device_classes": json.loads(str(r["device_classes"])),
                        "length": s["length"], "sha256": s["sha256"], "deltas": len(s.get("deltas", []))})
        return out

    def choose(self, name: str, version: int, installed_sha256: str | None) -> Payload:
        """The smallest payload that applies to what the device has: a matching delta, or the full file."""
        rows = self.db.query("SELECT id, kind, base_sha256, path, length, sha256 FROM release_payloads"
                             " WHERE name=? AND version=?", (name, version))
        usable = [r for r in rows if r["kind"] == "full" or r["base_sha256"] == installed_sha256]
        best = min(usable, key=lambda r: int(r["length"]))  # type: ignore[call-overload]
        return Payload(int(best["id"]), str(best["kind"]), Path(str(best["path"])), int(best["length"]),  # type: ignore[call-overload]
                       str(best["sha256"]))

    def on_report(self, conn: Any, device_id: str, r: UpdateReport, now: float) -> None:
        """Inside the inbox transaction: record what the device runs and how its offer is going.

        Offers are made only by a rollout (``server.rollouts``): registering a release ships nothing.
        """
        conn.execute("INSERT INTO device_models (device_id, version, sha256, state, updated, slots, health)"
                     " VALUES (?,?,?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET version=excluded.version,"
                     " sha256=excluded.sha256, state=excluded.state, updated=excluded.updated,"
                     " slots=excluded.slots, health=excluded.health",
                     (device_id, r.version, r.sha256, r.state, now, json.dumps(r.slots), r.health))
        if r.offer_id:
            conn.execute("UPDATE offers SET state=?, progress=?, error=? WHERE id=? AND device_id=?",
                         (r.state, r.progress, r.error, r.offer_id, device_id))

    def models(self, conn: Any = None) -> dict[str, dict[str, Any]]:
        """What each device last reported it runs: version, sha256, update state, slots, health."""
        sql = "SELECT device_id, version, sha256, state, slots, health FROM device_models"
        rows = conn.execute(sql).fetchall() if conn is not None else [tuple(r.values()) for r in self.db.query(sql)]
        return {str(d): {"version": v, "sha256": h, "state": st, "slots": json.loads(str(sl)) if sl else {},
                         "health": he} for d, v, h, st, sl, he in rows}

    def offer(self, conn: Any, device_id: str, manifest: dict[str, Any], *, installed_sha256: str | None,
              rollout_id: str | None, now: float) -> tuple[str, Payload]:
        """Queue an offer of ``manifest``'s release to one device, inside the caller's transaction."""
        s = manifest["signed"]
        payload = self.choose(s["name"], s["version"], installed_sha256)
        offer_id = new_id()
        conn.execute("INSERT INTO offers (id, device_id, payload_id, created, state, rollout_id)"
                     " VALUES (?,?,?,?,?,?)", (offer_id, device_id, payload.id, now, "offered", rollout_id))
        chunks = -(-payload.length // CHUNK_BYTES)
        self.outbox.put("update_offer", {"offer_id": offer_id, "manifest": manifest, "kind": payload.kind,
                                         "length": payload.length, "sha256": payload.sha256,
                                         "chunk_size": CHUNK_BYTES, "chunks": chunks},
                        peer=device_id, stream=Stream.UPDATES, device_id=device_id)
        return offer_id, payload

    def payload_for_offer(self, offer_id: str, device_id: str) -> tuple[Payload, str | None] | None:
        """The payload of one of this device's offers, and the rollout it belongs to."""
        rows = self.db.query("SELECT p.id, p.kind, p.path, p.length, p.sha256, o.rollout_id FROM offers o"
                             " JOIN release_payloads p ON p.id = o.payload_id WHERE o.id=? AND o.device_id=?",
                             (offer_id, device_id))
        if not rows:
            return None
        r = rows[0]
        return (Payload(int(r["id"]), str(r["kind"]), Path(str(r["path"])), int(r["length"]), str(r["sha256"])),  # type: ignore[call-overload]
                None if r["rollout_id"] is None else str(r["rollout_id"]))

    def forget_device(self, conn: Any, device_id: str) -> None:
        conn.execute("DELETE FROM device_models WHERE device_id=?", (device_id,))

    def bytes_sent(self, rollout_id: str) -> int:
        """Payload bytes published for one rollout's offers."""
        return int(self.db.scalar("SELECT COALESCE(SUM(bytes_sent), 0) FROM offers WHERE rollout_id=?",
                                  (rollout_id,)) or 0)

    def add_bytes_sent(self, offer_id: str, n: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE offers SET bytes_sent = bytes_sent + ? WHERE id=?", (n, offer_id))

    def offers(self) -> list[dict[str, object]]:
        return self.db.query("SELECT * FROM offers ORDER BY created")


class TokenBucket:
    """``rate`` bytes per second, bursts up to ``burst`` bytes (pure; the caller passes the clock)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, 0.0

    def wait_time(self, n: int, now: float) -> float:
        if self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        need = (n - self.tokens) / self.rate
        self.tokens -= n
        return need


class ChunkServer:
    """Serves chunk requests on its own thread, within a per-device rate and each rollout's bandwidth budget."""

    def __init__(self, registry: ReleaseRegistry, link: MqttLink, *, rate_bytes_s: float = 2_000_000,
                 rollout_budget: Callable[[str], float | None] | None = None) -> None:
        self.registry = registry
        self.link = link
        self.rate = rate_bytes_s
        self.rollout_budget = rollout_budget or (lambda _r: None)
        self.bytes_sent: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._queue: queue.Queue[tuple[str, ChunkRequest] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="chunks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def request(self, device_id: str, req: ChunkRequest) -> None:
        self._queue.put((device_id, req))

    def _bucket(self, key: str, rate: float) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None or b.rate != rate:
            b = self._buckets[key] = TokenBucket(rate, max(CHUNK_BYTES * 4, rate / 10))
        return b

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            device_id, req = item
            try:
                self._serve(device_id, req)
            except Exception:  # one bad request (a payload file gone) must not stop every transfer
                log.exception("serving chunks of offer %s to %s failed", req.offer_id, device_id)

    def _serve(self, device_id: str, req: ChunkRequest) -> None:
        found = self.registry.payload_for_offer(req.offer_id, device_id)
        if found is None:
            log.warning("device %s asked for chunks of unknown offer %s", device_id, req.offer_id)
            return
        payload, rollout_id = found
        buckets = [self._bucket("device:" + device_id, self.rate)]
        budget = self.rollout_budget(rollout_id) if rollout_id else None
        if budget:
            buckets.append(self._bucket("rollout:" + str(rollout_id), budget))
        sent = 0
        with open(payload.path, "rb") as f:
            for idx in req.indexes:
                if idx < 0 or idx * CHUNK_BYTES >= payload.length:
                    continue
                f.seek(idx * CHUNK_BYTES)
                data = f.read(CHUNK_BYTES)
                now = time.monotonic()
                time.sleep(max(b.wait_time(len(data), now) for b in buckets))
                self.link.publish(Topics.xfer_data(device_id), data, user={
                    "offer": req.offer_id, "index": str(idx), "sha256": hashlib.sha256(data).hexdigest()})
                sent += len(data)
        self.bytes_sent[device_id] = self.bytes_sent.get(device_id, 0) + sent
        if sent:
            self.registry.add_bytes_sent(req.offer_id, sent)
