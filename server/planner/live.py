"""The planner for the live fleet: technicians and jobs in the server store, plans pushed to devices.

``replan`` reads open and in-progress jobs and available technicians, solves with the previous plan as
the reference for stability, stores the new plan and, in the same transaction, queues each
technician's route to their device through the durable server outbox. Job status reported by devices
(on site, done, blocked) is already in the jobs table when the next plan is made.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Any

from linecrew.server.auth import audit
from linecrew.server.planner.dispatch import Assignment, DispatchPlan, Job, Technician, plan_dispatch
from linecrew.server.planner.errors import PlannerError
from linecrew.server.store import ServerStore
from linecrew.shared.protocol import Stream

# A technician added without a field gets these (a day shift at the origin depot, no skills yet).
NEW_TECHNICIAN = Technician("", frozenset(), (0.0, 0.0), (8 * 60, 17 * 60))


class LivePlanner:
    def __init__(self, store: ServerStore) -> None:
        self.store = store
        self.db = store.db

    # ------------------------------------------------------------------ registry
    def add_technician(self, t: Technician) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO technicians (id, device_id, skills, depot_x, depot_y, shift_start, shift_end,"
                " available) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET device_id=excluded.device_id,"
                " skills=excluded.skills, depot_x=excluded.depot_x, depot_y=excluded.depot_y,"
                " shift_start=excluded.shift_start, shift_end=excluded.shift_end, available=excluded.available",
                (t.id, t.device_id, json.dumps(sorted(t.skills)), t.depot[0], t.depot[1], t.shift[0], t.shift[1],
                 int(t.available)),
            )

    def update_technician(self, technician_id: str, **changes: Any) -> Technician:
        """Change only the fields given (``None`` values are left as they are); a new technician starts from
        ``NEW_TECHNICIAN`` defaults. So ``--unavailable`` never wipes skills or shift."""
        with self.db.transaction():
            current = next((t for t in self.technicians() if t.id == technician_id), None)
            t = replace(current or replace(NEW_TECHNICIAN, id=technician_id),
                        **{k: v for k, v in changes.items() if v is not None})
            self.add_technician(t)
        return t

    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Change only the fields given; a new job needs at least its ``location``."""
        with self.db.transaction():
            current = next((j for j in self.jobs(statuses=("open", "in_progress", "blocked", "done"))
                            if j.id == job_id), None)
            given = {k: v for k, v in changes.items() if v is not None}
            if current is None and "location" not in given:
                raise PlannerError(f"new job {job_id} needs a location (--at X,Y)")
            j = replace(current or Job(job_id, (0.0, 0.0), 60, (480, 1020)), **given)
            self.add_job(j)
        return j

    def set_available(self, technician_id: str, available: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE technicians SET available=? WHERE id=?", (int(available), technician_id))

    def add_job(self, j: Job) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, title, x, y, duration, window_start, window_end, skills, priority,"
                " status, pinned_to, in_progress_by, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET title=excluded.title, x=excluded.x, y=excluded.y,"
                " duration=excluded.duration, window_start=excluded.window_start, window_end=excluded.window_end,"
                " skills=excluded.skills, priority=excluded.priority, status=excluded.status,"
                " pinned_to=excluded.pinned_to, in_progress_by=excluded.in_progress_by, updated=excluded.updated",
                (j.id, j.title, j.location[0], j.location[1], j.duration, j.window[0], j.window[1],
                 json.dumps(sorted(j.skills)), j.priority, "in_progress" if j.in_progress_by else "open",
                 j.pinned_to, j.in_progress_by, time.time()),
            )

    def technicians(self) -> list[Technician]:
        rows: list[dict[str, Any]] = self.db.query("SELECT * FROM technicians ORDER BY id")
        return [Technician(r["id"], frozenset(json.loads(r["skills"])), (r["depot_x"], r["depot_y"]),
                           (r["shift_start"], r["shift_end"]), r["device_id"], bool(r["available"])) for r in rows]

    def jobs(self, *, statuses: tuple[str, ...] = ("open", "in_progress")) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        rows: list[dict[str, Any]] = self.db.query(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id",
                                                   list(statuses))
        return [Job(r["id"], (r["x"], r["y"]), r["duration"], (r["window_start"], r["window_end"]),
                    frozenset(json.loads(r["skills"])), r["priority"], r["title"], r["pinned_to"],
                    r["in_progress_by"]) for r in rows]

    def job_statuses(self) -> dict[str, str]:
        return {str(r["id"]): str(r["status"]) for r in self.db.query("SELECT id, status FROM jobs")}

    # ------------------------------------------------------------------ plans
    def latest(self) -> tuple[int, DispatchPlan] | None:
        rows: list[dict[str, Any]] = self.db.query("SELECT version, body FROM plans ORDER BY version DESC LIMIT 1")
        if not rows:
            return None
        body = json.loads(str(rows[0]["body"]))
        plan = DispatchPlan([Assignment(**a) for a in body["assignments"]], body["unassigned"], body["travel"],
                            body["runtime_s"], body["changed"])
        return int(rows[0]["version"]), plan

    def replan(self, *, time_limit_s: float = 3.0, now: int | None = None, push: bool = True,
               speed: float = 1.0, actor: str = "system", reason: str = "") -> tuple[int, DispatchPlan]:
        techs, jobs = self.technicians(), self.jobs()
        prev = self.latest()
        plan = plan_dispatch(techs, jobs, previous=prev[1] if prev else None, time_limit_s=time_limit_s, now=now,
                             speed=speed)
        body = {"assignments": [asdict(a) for a in plan.assignments], "unassigned": plan.unassigned,
                "travel": plan.travel, "runtime_s": plan.runtime_s, "changed": plan.changed}
        by_job = {j.id: j for j in jobs}
        with self.db.transaction() as conn:
            row = conn.execute("INSERT INTO plans (created, runtime_s, travel, changed, body) VALUES (?,?,?,?,?)"
                               " RETURNING version",
                               (time.time(), plan.runtime_s, plan.travel, plan.changed, json.dumps(body))).fetchone()
            version = int(row[0])
            audit(conn, actor, "plan.replan", f"plan:{version}", reason,
                  {"assigned": len(plan.assignments), "unassigned": len(plan.unassigned), "changed": plan.changed})
            if push:
                for t in techs:
                    if t.device_id and t.available:
                        self._push(t, plan.by_technician().get(t.id, []), by_job, version)
        return version, plan

    def _push(self, t: Technician, route: list[Assignment], by_job: dict[str, Job], version: int) -> None:
        jobs = [{"job_id": a.job_id, "title": by_job[a.job_id].title, "location": list(by_job[a.job_id].location),
                 "order": a.order, "start_min": a.start, "end_min": a.end, "window": list(by_job[a.job_id].window),
                 "priority": by_job[a.job_id].priority} for a in route]
        assert t.device_id
        self.store.outbox.put("assignment", {"plan_version": version, "technician_id": t.id, "jobs": jobs},
                              peer=t.device_id, stream=Stream.ASSIGNMENTS, device_id=t.device_id)

    # ------------------------------------------------------------------ the planner's view
    def view(self) -> dict[str, Any]:
        """The latest plan as planners see it: each technician's shift and timed route, unassigned jobs
        with the reason, and every job's status (what the dashboard's timeline draws)."""
        latest = self.latest()
        rows: list[dict[str, Any]] = self.db.query("SELECT * FROM jobs ORDER BY id")
        jobs = {r["id"]: {"job_id": r["id"], "title": r["title"], "status": r["status"], "priority": r["priority"],
                          "window": [r["window_start"], r["window_end"]], "duration": r["duration"],
                          "skills": json.loads(r["skills"])} for r in rows}
        routes = latest[1].by_technician() if latest else {}
        techs = [{"id": t.id, "device_id": t.device_id, "skills": sorted(t.skills), "shift": list(t.shift),
                  "available": t.available,
                  "route": [{**jobs.get(a.job_id, {"job_id": a.job_id}), "order": a.order, "start": a.start,
                             "end": a.end} for a in routes.get(t.id, [])]}
                 for t in self.technicians()]
        unassigned = [{**jobs.get(j, {"job_id": j}), "reason": why}
                      for j, why in (latest[1].unassigned.items() if latest else [])]
        planned = ({a.job_id for a in latest[1].assignments} | set(latest[1].unassigned)) if latest else set()
        waiting = [j for j in jobs.values() if j["status"] == "open" and j["job_id"] not in planned]
        created = self.db.scalar("SELECT created FROM plans WHERE version=?", (latest[0],)) if latest else None
        return {"version": latest[0] if latest else None, "created": created,
                "travel": latest[1].travel if latest else None, "technicians": techs, "unassigned": unassigned,
                "not_yet_planned": waiting}
