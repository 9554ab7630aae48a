"""The planner's tables — technicians, jobs and plans — and every query on them.

``LivePlanner`` decides; this module stores. Device job reports (``job_status``) are applied here inside the
ingest transaction, so what a device reports is in the jobs table when the next plan is made.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict
from typing import Any

from linecrew.server.planner.dispatch import Assignment, Break, DispatchPlan, Job, Move, Technician
from linecrew.shared.db import Database
from linecrew.shared.errors import NotOwnerError
from linecrew.shared.protocol import JobStatus

SCHEMA = """
CREATE TABLE technicians (
    id TEXT PRIMARY KEY,
    device_id TEXT,
    skills TEXT NOT NULL,
    depot_x REAL NOT NULL,
    depot_y REAL NOT NULL,
    shift_start INTEGER NOT NULL,
    shift_end INTEGER NOT NULL,
    available INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    x REAL NOT NULL,
    y REAL NOT NULL,
    duration INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    skills TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    pinned_to TEXT,
    in_progress_by TEXT,
    reason TEXT,
    updated REAL NOT NULL
);
CREATE TABLE plans (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    runtime_s REAL NOT NULL,
    travel REAL NOT NULL,
    changed INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""

# The rules of the day (crews, breaks, overtime, drive limits, certificates, earliest starts) and the roster.
SCHEMA_RULES = """
ALTER TABLE technicians ADD COLUMN rules TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN crew INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN qualified INTEGER;
ALTER TABLE jobs ADD COLUMN earliest_start INTEGER;
CREATE TABLE roster_shifts (
    day TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    shift_start INTEGER,
    shift_end INTEGER,
    PRIMARY KEY (day, technician_id)
);
"""

ALL_STATUSES = ("open", "in_progress", "blocked", "done")


def _rules(t: Technician) -> str:
    return json.dumps({"certificates": [list(c) for c in t.certificates],
                       "breaks": [[b.earliest, b.latest, b.duration] for b in t.breaks],
                       "overtime_max": t.overtime_max, "overtime_cost": t.overtime_cost, "max_drive": t.max_drive,
                       "rides_with": t.rides_with})


def _technician(r: dict[str, Any]) -> Technician:
    rules = json.loads(r.get("rules") or "{}")
    return Technician(r["id"], frozenset(json.loads(r["skills"])), (r["depot_x"], r["depot_y"]),
                      (r["shift_start"], r["shift_end"]), r["device_id"], bool(r["available"]),
                      certificates=tuple((str(s), str(d)) for s, d in rules.get("certificates", [])),
                      breaks=tuple(Break(int(a), int(b), int(c)) for a, b, c in rules.get("breaks", [])),
                      overtime_max=int(rules.get("overtime_max", 0)), overtime_cost=int(rules.get("overtime_cost", 0)),
                      max_drive=rules.get("max_drive"), rides_with=rules.get("rides_with"))


def plan_body(plan: DispatchPlan) -> dict[str, Any]:
    """What a stored plan keeps: routes, breaks, what was left out and how to place it, what moved and why."""
    return {"assignments": [asdict(a) for a in plan.assignments], "unassigned": plan.unassigned,
            "travel": plan.travel, "runtime_s": plan.runtime_s, "changed": plan.changed, "breaks": plan.breaks,
            "overtime": plan.overtime, "drive": plan.drive, "moved": [asdict(m) for m in plan.moved],
            "why": plan.why, "fixes": plan.fixes, "notes": plan.notes}


def _plan(body: dict[str, Any]) -> DispatchPlan:
    return DispatchPlan([Assignment(**a) for a in body["assignments"]], body["unassigned"], body["travel"],
                        body["runtime_s"], body["changed"], notes=body.get("notes", []),
                        breaks={k: [(int(s), int(e)) for s, e in v] for k, v in body.get("breaks", {}).items()},
                        overtime=body.get("overtime", {}), drive=body.get("drive", {}),
                        moved=[Move(**m) for m in body.get("moved", [])], why=body.get("why", {}),
                        fixes=body.get("fixes", {}))


class PlanState:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ technicians
    def put_technician(self, t: Technician) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO technicians (id, device_id, skills, depot_x, depot_y, shift_start, shift_end,"
                " available, rules) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET"
                " device_id=excluded.device_id, skills=excluded.skills, depot_x=excluded.depot_x,"
                " depot_y=excluded.depot_y, shift_start=excluded.shift_start, shift_end=excluded.shift_end,"
                " available=excluded.available, rules=excluded.rules",
                (t.id, t.device_id, json.dumps(sorted(t.skills)), t.depot[0], t.depot[1], t.shift[0], t.shift[1],
                 int(t.available), _rules(t)),
            )

    def set_available(self, technician_id: str, available: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE technicians SET available=? WHERE id=?", (int(available), technician_id))

    def technicians(self) -> list[Technician]:
        rows: list[dict[str, Any]] = self.db.query("SELECT * FROM technicians ORDER BY id")
        return [_technician(r) for r in rows]

    # ------------------------------------------------------------------ roster
    def set_shift(self, day: str, technician_id: str, shift: tuple[int, int] | None) -> None:
        """The roster for one day: a shift, or ``None`` for rostered off."""
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO roster_shifts (day, technician_id, shift_start, shift_end) VALUES (?,?,?,?)"
                         " ON CONFLICT (day, technician_id) DO UPDATE SET shift_start=excluded.shift_start,"
                         " shift_end=excluded.shift_end",
                         (day, technician_id, shift[0] if shift else None, shift[1] if shift else None))

    def roster(self, day: str) -> dict[str, tuple[int, int] | None]:
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT * FROM roster_shifts WHERE day=? ORDER BY technician_id", (day,))
        return {str(r["technician_id"]): (int(r["shift_start"]), int(r["shift_end"]))
                if r["shift_start"] is not None else None for r in rows}

    # ------------------------------------------------------------------ jobs
    def put_job(self, j: Job) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, title, x, y, duration, window_start, window_end, skills, priority,"
                " status, pinned_to, in_progress_by, updated, crew, qualified, earliest_start)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET title=excluded.title, x=excluded.x, y=excluded.y,"
                " duration=excluded.duration, window_start=excluded.window_start, window_end=excluded.window_end,"
                " skills=excluded.skills, priority=excluded.priority, status=excluded.status,"
                " pinned_to=excluded.pinned_to, in_progress_by=excluded.in_progress_by, updated=excluded.updated,"
                " crew=excluded.crew, qualified=excluded.qualified, earliest_start=excluded.earliest_start",
                (j.id, j.title, j.location[0], j.location[1], j.duration, j.window[0], j.window[1],
                 json.dumps(sorted(j.skills)), j.priority, "in_progress" if j.in_progress_by else "open",
                 j.pinned_to, j.in_progress_by, time.time(), j.crew, j.qualified, j.earliest_start),
            )

    def jobs(self, *, statuses: tuple[str, ...] = ("open", "in_progress")) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        rows: list[dict[str, Any]] = self.db.query(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id",
                                                   list(statuses))
        return [Job(r["id"], (r["x"], r["y"]), r["duration"], (r["window_start"], r["window_end"]),
                    frozenset(json.loads(r["skills"])), r["priority"], r["title"], r["pinned_to"],
                    r["in_progress_by"], r["crew"], r["qualified"], r["earliest_start"]) for r in rows]

    def job_rows(self) -> list[dict[str, Any]]:
        """Every job as the planner's page shows it (status included)."""
        rows: list[dict[str, Any]] = self.db.query("SELECT * FROM jobs ORDER BY id")
        return [{"job_id": r["id"], "title": r["title"], "status": r["status"], "priority": r["priority"],
                 "window": [r["window_start"], r["window_end"]], "duration": r["duration"],
                 "skills": json.loads(r["skills"]), "crew": r["crew"], "earliest_start": r["earliest_start"]}
                for r in rows]

    def job_statuses(self) -> dict[str, str]:
        return {str(r["id"]): str(r["status"]) for r in self.db.query("SELECT id, status FROM jobs")}

    def on_job_status(self, conn: sqlite3.Connection, device_id: str, p: JobStatus, now: float) -> None:
        """Device job status feeds the next plan: on site pins the job as work in progress. A device reports only
        on jobs its technician holds (assigned in the latest plan, pinned to them, or in progress by them)."""
        if not p.job_id:
            return
        tech = conn.execute("SELECT id FROM technicians WHERE device_id=?", (device_id,)).fetchone()
        if tech is None or not self._holds(conn, str(tech[0]), p.job_id):
            raise NotOwnerError(f"job {p.job_id} is not assigned to this device's technician")
        status = {"on_site": "in_progress", "done": "done", "blocked": "blocked"}[p.status]
        conn.execute("UPDATE jobs SET status=?, in_progress_by=?, reason=?, updated=? WHERE id=?",
                     (status, tech[0] if tech and status == "in_progress" else None, p.reason, now, p.job_id))

    @staticmethod
    def _holds(conn: sqlite3.Connection, technician_id: str, job_id: str) -> bool:
        job = conn.execute("SELECT pinned_to, in_progress_by FROM jobs WHERE id=?", (job_id,)).fetchone()
        if job is None:
            return False
        if technician_id in (job[0], job[1]):
            return True
        plan = conn.execute("SELECT body FROM plans ORDER BY version DESC LIMIT 1").fetchone()
        assignments = json.loads(plan[0])["assignments"] if plan else []
        return any(a["job_id"] == job_id and a["technician_id"] == technician_id for a in assignments)

    # ------------------------------------------------------------------ plans
    def latest(self) -> tuple[int, DispatchPlan, float] | None:
        """The newest plan: version, plan and when it was made."""
        rows: list[dict[str, Any]] = self.db.query(
            "SELECT version, created, body FROM plans ORDER BY version DESC LIMIT 1")
        if not rows:
            return None
        return int(rows[0]["version"]), _plan(json.loads(str(rows[0]["body"]))), float(rows[0]["created"])

    def add_plan(self, conn: sqlite3.Connection, plan: DispatchPlan, body: dict[str, Any]) -> int:
        """Store a plan inside the caller's transaction (its audit entry and pushes commit with it)."""
        row = conn.execute("INSERT INTO plans (created, runtime_s, travel, changed, body) VALUES (?,?,?,?,?)"
                           " RETURNING version",
                           (time.time(), plan.runtime_s, plan.travel, plan.changed, json.dumps(body))).fetchone()
        return int(row[0])
