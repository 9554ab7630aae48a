"""Device side of model delivery: accept offers, fetch chunks, resume, verify, update, report.

An ``update_offer`` is recorded in the inbox transaction (exactly once). Chunks are asked for a window at
a time; each arriving chunk is checked against its sha256, written at its offset in a staging file,
fsynced, and only then recorded in SQLite, so after a disconnect or a restart only the missing chunks
are asked for again. A complete payload is hashed against the offer, then handed to the A/B updater,
which verifies the signed release on its own; progress and outcome go back as ``update_report``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path

from linecrew.agent.errors import UpdateError
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.agent.updates import Updater
from linecrew.shared.errors import ReleaseError
from linecrew.shared.loops import IterationGuard
from linecrew.shared.mqtt import MqttLink
from linecrew.shared.protocol import ChunkRequest, Stream, Topics, UpdateOffer, UpdateState, encode, make_envelope

log = logging.getLogger(__name__)

class UpdateAgent:
    def __init__(self, store: AgentStore, updater: Updater, link: MqttLink, *, window: int = 16,
                 retry_s: float = 5.0) -> None:
        self.store = store
        self.updater = updater
        self.link = link
        self.window = window
        self.retry_s = retry_s
        self.staging = store.folder / "downloads"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._chunks: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue(maxsize=256)
        self._asked: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)

    def on_chunk(self, data: bytes, props: dict[str, str]) -> None:
        """Network thread: hand over; the worker thread verifies and writes."""
        self._chunks.put((data, props))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ reports
    def report(self, state: str, *, offer_id: str | None = None, progress: float = 0.0,
               error: str | None = None) -> None:
        st = self.updater.status()
        self.store.outbox.put("update_report", {
            "offer_id": offer_id, "state": state, "version": st["active_version"], "sha256": st["active_sha256"],
            "progress": round(progress, 3), "error": error, "slots": st["slots"], "health": st["health"]},
            peer=SERVER_PEER, stream=Stream.UPDATES)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        guard = IterationGuard("update transfer", log, stop=self._stop)
        guard.run(self._resume, context="resume")
        while not self._stop.is_set():
            guard.run(self._step)

    def _resume(self) -> None:
        self.updater.resume()
        self.report(self.updater.status()["update_state"])

    def _step(self) -> None:
        """One turn of the loop: rollbacks asked for, one arriving chunk, progress of the active offer."""
        self._rollbacks()
        offer = self._active()
        try:
            data, props = self._chunks.get(timeout=0.2)
            if offer is not None:
                self._store_chunk(offer, data, props)
        except queue.Empty:
            pass
        if offer is not None and self.link.connected.is_set():
            self._progress(offer)

    def _rollbacks(self) -> None:
        """Carry out rollbacks the server asked for (a rollout failed its gate or was rolled back)."""
        for r in self.store.db.query("SELECT id, offer_id, version FROM rollback_requests WHERE done IS NULL"):
            error = None
            if self.updater.status()["active_version"] == r["version"]:
                try:
                    self.updater.rollback()
                except UpdateError as e:
                    error = str(e)
            self._partial(str(r["offer_id"])).unlink(missing_ok=True)
            with self.store.db.transaction() as conn:
                conn.execute("UPDATE rollback_requests SET done=? WHERE id=?", (time.time(), r["id"]))
                outcome = UpdateState.FAILED if error else UpdateState.ROLLED_BACK
                self.report(outcome, offer_id=str(r["offer_id"]), error=error)

    def _partial(self, offer_id: str) -> Path:
        for p in self.staging.glob(f"{offer_id}.*"):
            return p
        return self.staging / f"{offer_id}.none"

    def _active(self) -> UpdateOffer | None:
        rows = self.store.db.query("SELECT offer FROM xfer WHERE state='downloading' ORDER BY created LIMIT 1")
        return UpdateOffer.model_validate_json(str(rows[0]["offer"])) if rows else None

    def _path(self, offer: UpdateOffer) -> Path:
        return self.staging / f"{offer.offer_id}.{offer.kind}"

    def _have(self, offer: UpdateOffer) -> set[int]:
        return {int(r["idx"]) for r in self.store.db.query(  # type: ignore[call-overload]
            "SELECT idx FROM xfer_chunks WHERE offer_id=?", (offer.offer_id,))}

    def _store_chunk(self, offer: UpdateOffer, data: bytes, props: dict[str, str]) -> None:
        try:
            idx = int(props.get("index", "-1"))
        except ValueError:
            return
        if props.get("offer") != offer.offer_id or not 0 <= idx < offer.chunks:
            return
        expected = min(offer.chunk_size, offer.length - idx * offer.chunk_size)
        if len(data) != expected or hashlib.sha256(data).hexdigest() != props.get("sha256"):
            log.warning("chunk %d of offer %s failed its check; asking again", idx, offer.offer_id)
            self._asked.pop(idx, None)
            return
        path = self._path(offer)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, idx * offer.chunk_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        with self.store.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO xfer_chunks VALUES (?,?)", (offer.offer_id, idx))
        self._asked.pop(idx, None)

    def _progress(self, offer: UpdateOffer) -> None:
        have = self._have(offer)
        if len(have) >= offer.chunks:
            self._finish(offer)
            return
        now = time.monotonic()
        in_flight = {i for i, at in self._asked.items() if now - at < self.retry_s}
        room = self.window - len(in_flight)
        wanted = [i for i in range(offer.chunks) if i not in have and i not in in_flight][: max(0, room)]
        if wanted:
            req = ChunkRequest(offer_id=offer.offer_id, indexes=wanted)
            self.link.publish(Topics.xfer_request(self.store.device_id),
                              encode(make_envelope("chunk_request", req, device_id=self.store.device_id)))
            for i in wanted:
                self._asked[i] = now

    def _finish(self, offer: UpdateOffer) -> None:
        path = self._path(offer)
        try:  # apply() checks the payload's length and hash against the signed manifest itself
            self.report("installing", offer_id=offer.offer_id, progress=1.0)
            rec = self.updater.apply(offer.manifest, path)
            state, error = rec.state.value, rec.error
        except ReleaseError as e:
            state, error = "failed", f"{type(e).__name__}: {e}"
        with self.store.db.transaction() as conn:
            conn.execute("UPDATE xfer SET state=? WHERE offer_id=?", (state, offer.offer_id))
            conn.execute("DELETE FROM xfer_chunks WHERE offer_id=?", (offer.offer_id,))
        path.unlink(missing_ok=True)
        self._asked.clear()
        self.report(state, offer_id=offer.offer_id, progress=1.0, error=error)
