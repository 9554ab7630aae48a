"""The server database's one ordered list of migrations.

Each table's DDL lives in the module that owns the table (``devices``, ``messages``, ``escalations``,
``planner.state``, ``updates``, ``auth``, ``rollouts``, and ``shared.sync`` for the outbox/inbox); this list
only numbers and orders them. Each migration runs in its own transaction; a new one goes at the end.
"""

from __future__ import annotations

from linecrew.server import auth, devices, escalations, messages, rollouts, updates
from linecrew.server.planner import state as planner_state
from linecrew.shared.db import Migration, executescript
from linecrew.shared.sync import dead_letter_migration, sync_migration


def _ddl(version: int, name: str, *scripts: str) -> Migration:
    return Migration(version, name, lambda c: executescript(c, "\n".join(scripts)))


MIGRATIONS: list[Migration] = [
    _ddl(1, "registry and message log", devices.SCHEMA, messages.SCHEMA),
    sync_migration(2),
    _ddl(3, "escalations and deferred tasks", escalations.SCHEMA),
    _ddl(4, "planner: technicians, jobs, plans", planner_state.SCHEMA),
    _ddl(5, "releases, payloads, offers", updates.SCHEMA),
    _ddl(6, "offers by rollout; slots and health per device; device tags", updates.SCHEMA_SLOTS,
         devices.SCHEMA_TAGS),
    _ddl(7, "api tokens and audit log", auth.SCHEMA),
    _ddl(8, "rollouts, waves, devices", rollouts.SCHEMA),
    _ddl(9, "per-model request stats per device", devices.SCHEMA_REQUEST_STATS),
    _ddl(10, "api token expiry", auth.SCHEMA_EXPIRY),
    dead_letter_migration(11),
    _ddl(12, "end-to-end sealing key per device", devices.SCHEMA_SEAL_KEY),
    _ddl(13, "planner: the rules of the day and the roster", planner_state.SCHEMA_RULES),
]
