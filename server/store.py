"""The server's state: one database (SQLite file or PostgreSQL by URL) and the aggregates that own its tables.

``ServerStore`` only composes: it opens the database, runs the one migration list, builds each aggregate
(devices, message log, escalations, tasks, the planner's state, releases, rollouts, tokens) and routes each
applied device message to its owner, inside the inbox's transaction, so recording the message id and its
effect commit together. No table is queried here.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linecrew.server import auth
from linecrew.server.devices import DeviceRegistry
from linecrew.server.errors import UnknownDeviceError
from linecrew.server.escalations import Escalations, Tasks
from linecrew.server.messages import MessageLog
from linecrew.server.migrations import MIGRATIONS
from linecrew.server.planner.state import PlanState
from linecrew.server.rollouts import RolloutManager
from linecrew.server.updates import ReleaseRegistry
from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import open_database
from linecrew.shared.e2e import Sealer, load_or_create_seal_key, opener_for
from linecrew.shared.protocol import DeferredTask, Escalation, JobStatus, Message, Stream, Telemetry, UpdateReport
from linecrew.shared.sync import Inbox, Outbox


class ServerStore:
    """Server state in one database: a SQLite file in ``folder`` or PostgreSQL at ``database_url``.

    Keys (the field key sealing sensitive columns) stay in ``folder`` either way; processes sharing a
    PostgreSQL database must share that key file too.
    """

    def __init__(self, folder: Path, *, database_url: str | None = None, synchronous: str = "FULL",
                 clock: Callable[[], float] = time.time) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db = open_database(database_url or folder / "server.db", synchronous=synchronous)
        self.db.migrate(MIGRATIONS)
        self.cipher = FieldCipher.from_key_file(folder / "field.key")
        self.seal_key = load_or_create_seal_key(folder / "seal.key")  # end to end with devices (X25519)
        self.registry = DeviceRegistry(self.db)
        self.outbox = Outbox(self.db, sender_id="server", cipher=self.cipher, sealer=Sealer(self.registry.seal_key))
        self.inbox = Inbox(self.db, cipher=self.cipher)
        self.opener = opener_for(self.seal_key)
        self.log = MessageLog(self.db, self.cipher)
        self.escalations = Escalations(self.db, self.outbox, self.cipher)
        self.tasks = Tasks(self.db, self.outbox, self.cipher, self.log)
        self.plans = PlanState(self.db)
        self.releases = ReleaseRegistry(self.db, self.outbox)
        self.rollouts = RolloutManager(self.db, self.outbox, self.releases, self.registry, clock=clock)
        self.tokens = auth.Tokens(self.db)
        self.clock = clock

    # ------------------------------------------------------------------ messages
    def apply_device_message(self, conn: sqlite3.Connection, device_id: str, msg: Message) -> None:
        """The effect of one device message, by its owner; runs inside the inbox transaction."""
        now = time.time()
        self.log.record(conn, device_id, msg, now)
        p = msg.payload
        if isinstance(p, Telemetry):
            self.registry.on_telemetry(conn, device_id, p, now)
        elif isinstance(p, Escalation):
            self.escalations.on_escalation(conn, device_id, p, now)
        elif isinstance(p, UpdateReport):
            self.releases.on_report(conn, device_id, p, now)
            self.rollouts.on_report(conn, device_id, p, self.clock())
        elif isinstance(p, JobStatus):
            self.plans.on_job_status(conn, device_id, p, now)
        elif isinstance(p, DeferredTask):
            self.tasks.on_task(conn, device_id, p, now)

    # ------------------------------------------------------------------ views across aggregates
    def fleet(self) -> list[dict[str, Any]]:
        """The device registry as operators see it: class, tags, versions per slot, health, link, backlog."""
        models = self.releases.models()
        depth = self.outbox.depth_by_peer()
        rows = self.registry.rows()
        for r in rows:
            m = models.get(str(r["id"]), {})
            r.update({"version": m.get("version"), "sha256": m.get("sha256"), "update_state": m.get("state"),
                      "slots": m.get("slots") or {}, "health": m.get("health"),
                      "server_outbox": depth.get(str(r["id"]), 0)})
        return rows

    def send_command(self, device_id: str, name: str, args: dict[str, Any], *, ttl_s: float | None,
                     actor: str) -> str:
        """Queue a command to a device through the durable outbox, audited in the same transaction."""
        if self.registry.device(device_id) is None:
            raise UnknownDeviceError(f"unknown device {device_id}")
        with self.db.transaction() as conn:
            env = self.outbox.put("command", {"name": name, "args": args}, peer=device_id, stream=Stream.COMMANDS,
                                  ttl_s=ttl_s, device_id=device_id)
            auth.audit(conn, actor, "command.send", f"device:{device_id}", "", {"command": name, "message": env.id})
        return env.id

    def decommission(self, device_id: str, *, actor: str, reason: str) -> int:
        """Retire a device: its registration, what it last ran, what was queued for it and its stream positions go
        in one transaction with the audit entry; its messages stay in the log. Returns the messages dropped.
        The caller revokes its broker credentials; the same id may enroll again with a new token."""
        with self.db.transaction() as conn:
            self.registry.decommission(conn, device_id, actor=actor, reason=reason)
            self.releases.forget_device(conn, device_id)
            dropped = self.outbox.forget_peer(conn, device_id)
            self.inbox.forget_peer(conn, device_id)
        return dropped

    def audit_refusals(self, rejected: list[tuple[str, Message, str]]) -> None:
        """Audit what devices tried to change without owning it (other rejections are dead letters only)."""
        refused = [(peer, msg, why) for peer, msg, why in rejected if why.startswith("not_owner")]
        if not refused:
            return
        with self.db.transaction() as conn:
            for peer, msg, why in refused:
                target = f"job:{getattr(msg.payload, 'job_id', '')}"
                auth.audit(conn, f"device:{peer}", f"{msg.type}.refused", target, why, {"message": msg.envelope.id})

    def database_answers(self) -> bool:
        return bool(self.db.scalar("SELECT 1") == 1)

    def close(self) -> None:
        self.db.close()

