"""Fail-safe A/B model updates: an explicit, persisted state machine (after mender's ``app/state.go``).

Layout of ``<device>/models``: ``slot-a/`` and ``slot-b/`` each hold ``model.gguf`` plus ``release.json``
(the signed manifest it was verified against); ``active`` is a symlink to one slot, switched atomically
(new link + ``os.replace`` + fsync of the folder); ``update.json`` is the state record, written
atomically *before* each side effect, so a kill at any point resumes or rolls back on restart.

Verification (signatures, threshold, rollback, freeze, device class, delta base, length, hash) happens
before anything is persisted or the inactive slot touched; then the states are ``installing`` →
``activating`` → ``health`` → ``committed``, and any failure after activation → ``rolling_back`` →
``rolled_back``. The active model is never written. A slot's model always matches the sha256 in its
``release.json`` (written only after the verified rename), so the installed hash is read from there
rather than by hashing the model again; a delta applied to a damaged base fails its output hash. A
health check that keeps failing across restarts (loop detection: ``max_health_attempts``) rolls back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linecrew.agent.errors import HealthCheckError, UpdateError
from linecrew.agent.update_machine import Event, is_resting, next_state
from linecrew.shared.delta import apply_delta, read_header
from linecrew.shared.errors import DeltaFormatError, ReleaseError
from linecrew.shared.fsutil import atomic_write_text, fsync_dir
from linecrew.shared.protocol import UpdateState
from linecrew.shared.release import BoundedHasher, ReleaseSigned, RootSigned, check_delta_base, verify_release

log = logging.getLogger(__name__)

HealthCheck = Callable[[Path], None]  # raises on an unhealthy model


@dataclass
class Record:
    state: UpdateState
    release: dict[str, Any]  # the signed manifest document
    payload: str  # path of the full model or the delta
    payload_kind: str  # "full" or "delta"
    target: str  # slot being installed
    previous: str  # slot that was active
    health_attempts: int = 0
    error: str | None = None
    history: list[str] = field(default_factory=list)


class Slots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def model(self, slot: str) -> Path:
        return self.folder / f"slot-{slot}" / "model.gguf"

    def active(self) -> str:
        link = self.folder / "active"
        return os.readlink(link).removeprefix("slot-") if link.is_symlink() else "a"

    @staticmethod
    def other(slot: str) -> str:
        return "b" if slot == "a" else "a"

    def switch(self, slot: str) -> None:
        tmp = self.folder / ".active.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"slot-{slot}", tmp)
        os.replace(tmp, self.folder / "active")
        fsync_dir(self.folder)

    def manifest(self, slot: str) -> dict[str, Any] | None:
        p = self.folder / f"slot-{slot}" / "release.json"
        return json.loads(p.read_text()) if p.exists() else None

    def installed_sha256(self, slot: str) -> str | None:
        m = self.manifest(slot)
        return str(m["signed"]["sha256"]) if m else None

    def installed_version(self) -> int:
        m = self.manifest(self.active())
        return int(m["signed"]["version"]) if m else 0

    def active_model(self) -> Path:
        return self.model(self.active())


class Updater:
    def __init__(self, folder: Path, *, root: RootSigned, device_class: str, health: HealthCheck,
                 clock: Callable[[], float] = time.time, max_health_attempts: int = 3,
                 step_hook: Callable[[str], None] | None = None) -> None:
        self.slots = Slots(folder)
        self.root = root
        self.device_class = device_class
        self.health = health
        self.clock = clock
        self.max_health_attempts = max_health_attempts
        self._hook = step_hook or (lambda _s: None)
        self.record_path = folder / "update.json"

    # ------------------------------------------------------------------ first install (provisioning)
    def install_factory(self, model: Path, manifest: dict[str, Any]) -> None:
        """Put a verified model into slot a and activate it (fresh device from its image)."""
        rel = verify_release(manifest, self.root, now=self.clock(), installed_version=0,
                             device_class=self.device_class)
        self._write_slot("a", model, None, rel, manifest)
        self.slots.switch("a")

    # ------------------------------------------------------------------ the state machine
    def apply(self, manifest: dict[str, Any], payload: Path) -> Record:
        """Verify, then run the update to ``committed`` or ``rolled_back``. Raises ``ReleaseError`` for a
        refused release (nothing touched) and ``UpdateError`` if another update is in progress."""
        current = self.load()
        if current is not None and not is_resting(current.state):
            raise UpdateError(f"an update is already {current.state}; resume or roll it back first")
        rel = verify_release(manifest, self.root, now=self.clock(), installed_version=self.slots.installed_version(),
                             device_class=self.device_class)
        kind = "delta" if _is_delta(payload) else "full"
        if kind == "delta":
            header, _ = read_header(payload)
            delta = next((d for d in rel.deltas if d.base_sha256 == header["old_sha256"]), None)
            if delta is None or header["new_sha256"] != rel.sha256:
                raise ReleaseError("this delta is not listed in the signed release")
            check_delta_base(delta, self.slots.installed_sha256(self.slots.active()) or "")
            _check_file(payload, delta.length, delta.sha256)
        else:
            _check_file(payload, rel.length, rel.sha256)
        active = self.slots.active()
        rec = Record(current.state if current else UpdateState.IDLE, manifest, str(payload), kind, Slots.other(active),
                     active)
        self._advance(rec, Event.START)
        return self.run(rec)

    def resume(self) -> Record | None:
        """After a restart: carry an interrupted update to its end (forward or back)."""
        rec = self.load()
        if rec is None or is_resting(rec.state):
            return rec
        log.warning("resuming update interrupted in state %s", rec.state)
        return self.run(rec)

    def run(self, rec: Record) -> Record:
        while not is_resting(rec.state):
            step = {UpdateState.INSTALLING: self._install, UpdateState.ACTIVATING: self._activate,
                    UpdateState.HEALTH: self._check, UpdateState.ROLLING_BACK: self._roll_back}[rec.state]
            self._hook(rec.state.value)
            step(rec)
        return rec

    def _install(self, rec: Record) -> None:
        rel = ReleaseSigned.model_validate(rec.release["signed"])
        try:
            self._write_slot(rec.target, Path(rec.payload) if rec.payload_kind == "full" else None,
                             Path(rec.payload) if rec.payload_kind == "delta" else None, rel, rec.release,
                             base=self.slots.model(rec.previous),
                             base_sha256=self.slots.installed_sha256(rec.previous))
        except (ReleaseError, OSError) as e:
            rec.error = f"install failed: {e}"
            self._advance(rec, Event.INSTALL_FAILED)  # nothing was activated: the old model is still active
            return
        self._advance(rec, Event.INSTALLED)

    def _activate(self, rec: Record) -> None:
        self.slots.switch(rec.target)
        self._advance(rec, Event.ACTIVATED)

    def _check(self, rec: Record) -> None:
        rec.health_attempts += 1
        if rec.health_attempts > self.max_health_attempts:
            rec.error = f"health check did not pass in {self.max_health_attempts} attempts"
            self._advance(rec, Event.UNHEALTHY)
            return
        self._advance(rec, Event.ATTEMPT)  # count the attempt before running it (loop detection)
        try:
            self.health(self.slots.model(rec.target))
        except Exception as e:
            rec.error = f"health check failed: {e}"
            self._advance(rec, Event.UNHEALTHY)
            return
        self._advance(rec, Event.HEALTHY)

    def _roll_back(self, rec: Record) -> None:
        self.slots.switch(rec.previous)
        self._advance(rec, Event.SWITCHED_BACK)

    def rollback(self) -> Record:
        """Manual rollback to the other slot (it must hold a verified model)."""
        active = self.slots.active()
        other = Slots.other(active)
        if self.slots.manifest(other) is None or not self.slots.model(other).exists():
            raise UpdateError("the other slot holds no verified model to roll back to")
        rec = self.load() or Record(UpdateState.COMMITTED, self.slots.manifest(active) or {}, "", "full", active, other)
        rec.target, rec.previous = active, other
        if not is_resting(rec.state):
            raise UpdateError(f"an update is {rec.state}; let it finish (resume) before rolling back")
        self._advance(rec, Event.ROLLBACK)
        return self.run(rec)

    # ------------------------------------------------------------------ persistence
    def _write_slot(self, slot: str, full: Path | None, delta: Path | None, rel: ReleaseSigned,
                    manifest: dict[str, Any], base: Path | None = None, base_sha256: str | None = None) -> None:
        """Stream the new model into the inactive slot, verify its sha256, then rename into place."""
        folder = self.slots.folder / f"slot-{slot}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "release.json").unlink(missing_ok=True)
        tmp = folder / "model.gguf.partial"
        with open(tmp, "wb") as out:
            if delta is not None:
                assert base is not None
                try:
                    apply_delta(base, delta, out, installed_sha256=base_sha256)
                except DeltaFormatError as e:
                    raise UpdateError(f"damaged delta: {e}") from e
            else:
                assert full is not None
                hasher = BoundedHasher(rel.length, rel.sha256)
                with open(full, "rb") as src:
                    while chunk := src.read(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                        self._hook("installing-chunk")
                hasher.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / "model.gguf")
        atomic_write_text(folder / "release.json", json.dumps(manifest))
        fsync_dir(folder)

    def _advance(self, rec: Record, event: Event) -> None:
        self._save(rec, next_state(rec.state, event))

    def _save(self, rec: Record, state: UpdateState) -> None:
        rec.state = state
        rec.history.append(state.value)
        atomic_write_text(self.record_path, json.dumps(asdict(rec)))

    def load(self) -> Record | None:
        if not self.record_path.exists():
            return None
        d = json.loads(self.record_path.read_text())
        d["state"] = UpdateState(d["state"])
        return Record(**d)

    def status(self) -> dict[str, Any]:
        rec = self.load()
        active = self.slots.active()
        m = self.slots.manifest(active)
        slots = {s: (x["signed"]["version"] if (x := self.slots.manifest(s)) else None) for s in ("a", "b")}
        health = None
        ended = rec is not None and rec.state in (UpdateState.COMMITTED, UpdateState.ROLLED_BACK)
        if rec is not None and ended and UpdateState.HEALTH in rec.history:
            health = "ok" if rec.state == UpdateState.COMMITTED else "failed"
        return {"active_slot": active, "active_version": m["signed"]["version"] if m else None,
                "active_sha256": m["signed"]["sha256"] if m else None, "slots": slots, "health": health,
                "update_state": rec.state.value if rec else "idle", "error": rec.error if rec else None}


def _is_delta(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"LCDELTA1"


def _check_file(path: Path, length: int, sha256: str) -> None:
    """Hash a downloaded payload without reading past the signed length (endless data)."""
    hasher = BoundedHasher(length, sha256)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    hasher.finish()


def llm_health_check(budget_s: float = 20.0) -> HealthCheck:
    """The model loads and answers a smoke prompt within its latency budget."""

    def check(model: Path) -> None:
        from linecrew.shared.llm import LlmConfig, LocalLLM, chat_prompt

        t0 = time.perf_counter()
        llm = LocalLLM(LlmConfig(model_path=model, max_tokens=8))
        try:
            c = llm.complete(chat_prompt("Say OK."))
        finally:
            llm.close()
        took = time.perf_counter() - t0
        if not c.text.strip():
            raise HealthCheckError("smoke prompt produced no text")
        if took > budget_s:
            raise HealthCheckError(f"smoke prompt took {took:.1f} s, budget {budget_s:.1f} s")

    return check
