"""The planner for the live fleet: technicians and jobs in the server store, plans pushed to devices.

``replan`` reads open and in-progress jobs and available technicians, solves with the previous plan as
the reference for stability, stores the new plan and, in the same transaction, queues each
technician's route to their device through the durable server outbox. Job status reported by devices
(on site, done, blocked) is already in the jobs table when the next plan is made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, replace
from typing import Any

from linecrew.server.auth import audit
from linecrew.server.planner.dispatch import Assignment, DispatchPlan, Job, Technician, plan_dispatch
from linecrew.server.planner.errors import PlannerError
from linecrew.server.planner.matrix import provider
from linecrew.server.planner.state import ALL_STATUSES, plan_body
from linecrew.server.store import ServerStore
from linecrew.shared.protocol import Stream

# A technician added without a field gets these (a day shift at the origin depot, no skills yet).
NEW_TECHNICIAN = Technician("", frozenset(), (0.0, 0.0), (8 * 60, 17 * 60))


class LivePlanner:
    def __init__(self, store: ServerStore) -> None:
        self.store = store
        self.db = store.db
        self.plans = store.plans

    # ------------------------------------------------------------------ registry
    def add_technician(self, t: Technician) -> None:
        self.plans.put_technician(t)

    def update_technician(self, technician_id: str, **changes: Any) -> Technician:
        """Change only the fields given (``None`` values are left as they are); a new technician starts from
        ``NEW_TECHNICIAN`` defaults. So ``--unavailable`` never wipes skills or shift."""
        with self.db.transaction():
            current = next((t for t in self.technicians() if t.id == technician_id), None)
            t = replace(current or replace(NEW_TECHNICIAN, id=technician_id),
                        **{k: v for k, v in changes.items() if v is not None})
            if t.rides_with == "":  # "" stops riding with anyone
                t = replace(t, rides_with=None)
            self.add_technician(t)
        return t

    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Change only the fields given; a new job needs at least its ``location``."""
        with self.db.transaction():
            current = next((j for j in self.jobs(statuses=ALL_STATUSES)
                            if j.id == job_id), None)
            given = {k: v for k, v in changes.items() if v is not None}
            if current is None and "location" not in given:
                raise PlannerError(f"new job {job_id} needs a location (--at X,Y)")
            j = replace(current or Job(job_id, (0.0, 0.0), 60, (480, 1020)), **given)
            self.add_job(j)
        return j

    def set_available(self, technician_id: str, available: bool) -> None:
        self.plans.set_available(technician_id, available)

    def add_job(self, j: Job) -> None:
        self.plans.put_job(j)

    def technicians(self) -> list[Technician]:
        return self.plans.technicians()

    def jobs(self, *, statuses: tuple[str, ...] = ("open", "in_progress")) -> list[Job]:
        return self.plans.jobs(statuses=statuses)

    def job_statuses(self) -> dict[str, str]:
        return self.plans.job_statuses()

    # ------------------------------------------------------------------ plans
    def latest(self) -> tuple[int, DispatchPlan] | None:
        latest = self.plans.latest()
        return (latest[0], latest[1]) if latest else None

    # ------------------------------------------------------------------ roster
    def set_roster(self, day: dt.date, shifts: dict[str, tuple[int, int] | None], *, replan: bool = True,
                   actor: str = "system", **replan_args: Any) -> tuple[int, DispatchPlan] | None:
        """Store the day's roster (a shift, or ``None`` for off) and, for today, re-plan the day with it."""
        known = {t.id for t in self.technicians()}
        unknown = sorted(set(shifts) - known)
        if unknown:
            raise PlannerError(f"roster names unknown technicians: {', '.join(unknown)}")
        with self.db.transaction() as conn:
            for tid, shift in shifts.items():
                self.plans.set_shift(day.isoformat(), tid, shift)
            audit(conn, actor, "roster.set", f"roster:{day.isoformat()}", "", {"entries": len(shifts)})
        if replan and day == dt.date.today():
            return self.replan(actor=actor, reason="roster changed", day=day, **replan_args)
        return None

    def apply_roster(self, roster: dict[str, list[str | None]], first_day: dt.date,
                     times: dict[str, tuple[int, int]], *, actor: str = "system", **replan_args: Any
                     ) -> tuple[int, DispatchPlan] | None:
        """A rostering solution (staff id → shift id or ``None`` per day, as ``solve_roster`` returns it) becomes
        each technician's availability from ``first_day`` on; ``times`` gives each shift id its hours. Staff
        who are not technicians here are refused by name."""
        missing = sorted({s for row in roster.values() for s in row if s and s not in times})
        if missing:
            raise PlannerError(f"no hours given for shift(s) {', '.join(missing)} (e.g. D=08:00-16:00)")
        out = None
        days = max((len(r) for r in roster.values()), default=0)
        for d in range(days):
            shifts: dict[str, tuple[int, int] | None] = {}
            for tid, row in roster.items():
                if d < len(row):
                    shift = row[d]
                    shifts[tid] = times[shift] if shift else None
            done = self.set_roster(first_day + dt.timedelta(days=d), shifts, actor=actor, **replan_args)
            out = done or out
        return out

    def technicians_on(self, day: dt.date) -> list[Technician]:
        """Technicians as the day's roster has them: a rostered shift replaces the default one, rostered off is
        not dispatched; a technician the day's roster does not mention keeps the registry's shift."""
        roster = self.plans.roster(day.isoformat())
        out = []
        for t in self.technicians():
            if t.id not in roster:
                out.append(t)
                continue
            shift = roster[t.id]
            out.append(replace(t, shift=shift) if shift else replace(t, available=False))
        return out

    def replan(self, *, time_limit_s: float = 3.0, now: int | None = None, push: bool = True,
               speed: float = 1.0, actor: str = "system", reason: str = "", day: dt.date | None = None,
               max_moves: int | None = None, matrix: str | None = None) -> tuple[int, DispatchPlan]:
        """Plan the day again. ``max_moves`` is the disruption budget; ``matrix`` the travel-time provider
        (see :func:`linecrew.server.planner.matrix.provider`)."""
        day = day or dt.date.today()
        techs, jobs = self.technicians_on(day), self.jobs()
        prev = self.latest()
        plan = plan_dispatch(techs, jobs, previous=prev[1] if prev else None, time_limit_s=time_limit_s, now=now,
                             speed=speed, day=day, max_moves=max_moves, matrix=provider(matrix, speed=speed))
        body = plan_body(plan)
        by_job = {j.id: j for j in jobs}
        with self.db.transaction() as conn:
            version = self.plans.add_plan(conn, plan, body)
            audit(conn, actor, "plan.replan", f"plan:{version}", reason,
                  {"assigned": len(plan.technician_of()), "unassigned": len(plan.unassigned),
                   "changed": plan.changed})
            if push:
                crews = plan.crew_of()
                for t in techs:
                    if t.device_id and t.available:
                        self._push(t, plan.by_technician().get(t.id, []), by_job, version, crews)
        return version, plan

    def _push(self, t: Technician, route: list[Assignment], by_job: dict[str, Job], version: int,
              crews: dict[str, list[str]]) -> None:
        jobs = [{"job_id": a.job_id, "title": by_job[a.job_id].title, "location": list(by_job[a.job_id].location),
                 "order": a.order, "start_min": a.start, "end_min": a.end, "window": list(by_job[a.job_id].window),
                 "priority": by_job[a.job_id].priority, "role": a.role,
                 "crew_with": [x for x in crews.get(a.job_id, []) if x != t.id]} for a in route]
        assert t.device_id
        self.store.outbox.put("assignment", {"plan_version": version, "technician_id": t.id, "jobs": jobs},
                              peer=t.device_id, stream=Stream.ASSIGNMENTS, device_id=t.device_id)

    # ------------------------------------------------------------------ the planner's view
    def view(self) -> dict[str, Any]:
        """The latest plan as planners see it: each technician's shift and timed route, unassigned jobs
        with the reason, and every job's status (what the dashboard's timeline draws)."""
        latest = self.plans.latest()
        jobs = {j["job_id"]: j for j in self.plans.job_rows()}
        routes = latest[1].by_technician() if latest else {}
        plan = latest[1] if latest else None
        techs = [{"id": t.id, "device_id": t.device_id, "skills": sorted(t.skills), "shift": list(t.shift),
                  "available": t.available, "breaks": plan.breaks.get(t.id, []) if plan else [],
                  "overtime": plan.overtime.get(t.id, 0) if plan else 0,
                  "route": [{**jobs.get(a.job_id, {"job_id": a.job_id}), "order": a.order, "start": a.start,
                             "end": a.end, "role": a.role,
                             "why": plan.why.get(a.job_id, "") if plan and a.role == "lead" else ""}
                            for a in routes.get(t.id, [])]}
                 for t in self.technicians_on(dt.date.today())]
        unassigned = [{**jobs.get(j, {"job_id": j}), "reason": why, "fix": plan.fixes.get(j, "") if plan else ""}
                      for j, why in (plan.unassigned.items() if plan else [])]
        planned = ({a.job_id for a in latest[1].assignments} | set(latest[1].unassigned)) if latest else set()
        waiting = [j for j in jobs.values() if j["status"] == "open" and j["job_id"] not in planned]
        created = latest[2] if latest else None
        return {"version": latest[0] if latest else None, "created": created,
                "travel": latest[1].travel if latest else None, "technicians": techs, "unassigned": unassigned,
                "not_yet_planned": waiting, "moved": [asdict(m) for m in plan.moved] if plan else [],
                "notes": plan.notes if plan else []}
