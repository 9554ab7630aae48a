"""Every server table has one owning module, and no SQL about it stands anywhere else (the rule of
docs/architecture.md): a query that reaches into another aggregate's table fails here."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

OWNERS = {
    "devices": "server/devices.py", "enroll_tokens": "server/devices.py",
    "device_messages": "server/messages.py",
    "escalations": "server/escalations.py", "tasks": "server/escalations.py",
    "technicians": "server/planner/state.py", "jobs": "server/planner/state.py", "plans": "server/planner/state.py",
    "roster_shifts": "server/planner/state.py",
    "releases": "server/updates.py", "release_payloads": "server/updates.py", "offers": "server/updates.py",
    "device_models": "server/updates.py",
    "rollouts": "server/rollouts.py", "rollout_waves": "server/rollouts.py", "rollout_devices": "server/rollouts.py",
    "api_tokens": "server/auth.py", "audit": "server/auth.py",
}
SQL = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(\w+)", re.IGNORECASE)
CODE = [*sorted((REPO / "server").rglob("*.py")), *sorted((REPO / "linecrew" / "cli").rglob("*.py")),
        *sorted((REPO / "linecrew" / "tools").rglob("*.py"))]


def _sql_strings(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"\"[^\"\n]*\"|'[^'\n]*'", text) if SQL.search(m.group(0))]


def test_every_server_table_is_queried_only_by_its_owner() -> None:
    strays = []
    for path in CODE:
        rel = str(path.relative_to(REPO))
        for literal in _sql_strings(path.read_text()):
            for table in SQL.findall(literal):
                owner = OWNERS.get(table)
                if owner is not None and owner != rel and rel != "server/migrations.py":
                    strays.append(f"{rel}: {table} (owned by {owner}): {literal[:80]}")
    assert not strays, "\n".join(strays)


def test_the_owner_map_covers_every_table_the_migrations_create() -> None:
    created = set()
    for path in CODE:
        created |= set(re.findall(r"CREATE TABLE (\w+)", path.read_text()))
    assert created == set(OWNERS), created ^ set(OWNERS)
