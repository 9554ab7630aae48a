"""A realistic live-dispatch day, generated from a seed: technicians with skills, certificates (one lapsed),
lunch breaks, overtime allowances, drive limits and a pair who ride together; jobs with windows, priorities,
crews (two people at once, one or both qualified), parts-ready earliest starts and a pinned job.

Used by the live-dispatch benchmark and the planner tests; any seed gives a different day of the same kind.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace

from linecrew.server.planner.dispatch import Assignment, Break, DispatchPlan, Job, Technician

DAY = dt.date(2026, 12, 2)


def day(seed: int = 1, *, jobs: int = 60, technicians: int = 12, area: float = 40.0
        ) -> tuple[list[Technician], list[Job]]:
    rnd = random.Random(seed)
    techs: list[Technician] = []
    for i in range(technicians):
        skills = {"lv"} | ({"hv"} if i % 5 in (0, 2) else set()) | ({"climb"} if i % 3 == 0 else set())
        certs = (("hv", "2027-03-31"),) if "hv" in skills else ()
        if i == 2:
            certs = (("hv", (DAY - dt.timedelta(days=3)).isoformat()),)  # lapsed three days ago
        start = rnd.choice([7 * 60, 7 * 60 + 30, 8 * 60])
        techs.append(Technician(
            f"T{i:02d}", frozenset(skills), (rnd.uniform(0, area), rnd.uniform(0, area)), (start, start + 510),
            certificates=certs, breaks=(Break(11 * 60 + 30, 13 * 60, 30),),
            overtime_max=60 if i % 4 == 0 else 0, overtime_cost=20, max_drive=rnd.choice([180, 240, 300]),
            rides_with="T00" if i == technicians - 1 else None))  # an apprentice riding with T00
    out: list[Job] = []
    for i in range(jobs):
        kind = rnd.random()
        window = ((8 * 60, 16 * 60) if kind < 0.5 else (8 * 60, 12 * 60) if kind < 0.75 else (12 * 60, 16 * 60))
        crew = 2 if i % 10 == 3 else 1
        out.append(Job(
            f"J{i:02d}", (rnd.uniform(0, area), rnd.uniform(0, area)), rnd.choice([30, 45, 45, 60, 60, 90]), window,
            frozenset({"hv"}) if i % 6 == 0 else frozenset({"climb"}) if i % 9 == 4 else frozenset({"lv"}),
            priority=rnd.choice([2, 3, 3, 4, 4, 5]), title=f"job {i}", crew=crew,
            qualified=(2 if i % 20 == 3 else 1) if crew > 1 else None,
            earliest_start=10 * 60 if i % 15 == 7 else None))
    out[5] = replace(out[5], pinned_to=techs[1].id, skills=frozenset({"lv"}), crew=1, qualified=None)
    return techs, out


def progress(jobs: list[Job], plan: DispatchPlan, now: int) -> list[Job]:
    """The day at ``now``: jobs finished by then are gone, jobs started are in progress by their lead."""
    started = {a.job_id: a for a in plan.assignments if a.role == "lead" and a.start <= now}
    out = []
    for j in jobs:
        a: Assignment | None = started.get(j.id)
        if a is None:
            out.append(j)
        elif a.end > now:
            out.append(replace(j, in_progress_by=a.technician_id, pinned_to=None))
    return out


def without_rules(techs: list[Technician], jobs: list[Job]) -> tuple[list[Technician], list[Job]]:
    """The same day as the former live dispatch saw it: no crews, breaks, overtime, drive limits, certificates,
    riding together or earliest starts."""
    return ([replace(t, certificates=(), breaks=(), overtime_max=0, max_drive=None, rides_with=None) for t in techs],
            [replace(j, crew=1, qualified=None, earliest_start=None) for j in jobs])
