"""The independent evaluator of a live dispatch plan: every hard rule, checked from the plan's own times.

It shares nothing with the solver but the data types and the travel matrix: a plan from any solver (or edited
by hand) is judged the same way, as the roster's ``evaluate`` judges rosters. ``violations`` lists each broken
rule in words; an empty list is a valid plan.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

from linecrew.server.planner.dispatch import Assignment, DispatchPlan, Job, Technician, hhmm
from linecrew.server.planner.matrix import Euclidean, TravelMatrix


def violations(plan: DispatchPlan, techs: list[Technician], jobs: list[Job], *, day: dt.date,
               matrix: TravelMatrix | None = None, now: int | None = None, previous: DispatchPlan | None = None,
               max_moves: int | None = None) -> list[str]:
    travel = matrix or Euclidean()
    tech = {t.id: t for t in techs}
    by_id = {j.id: j for j in jobs}
    out: list[str] = []
    people: dict[str, list[str]] = defaultdict(list)
    starts: dict[str, set[int]] = defaultdict(set)
    for a in plan.assignments:
        j, t = by_id.get(a.job_id), tech.get(a.technician_id)
        if j is None or t is None:
            out.append(f"{a.job_id} on {a.technician_id}: unknown job or technician")
            continue
        people[j.id].append(t.id)
        starts[j.id].add(a.start)
        if not t.available:
            out.append(f"{j.id}: {t.id} is not available (rostered off or out)")
        if a.role in ("lead", "crew") and not j.skills <= t.skills_on(day):
            out.append(f"{j.id}: {t.id} ({a.role}) lacks {sorted(j.skills - t.skills_on(day))} on {day}")
        lo, hi = j.start_window
        if j.in_progress_by is None and not (lo <= a.start <= hi):
            out.append(f"{j.id}: starts {hhmm(a.start)} outside {hhmm(lo)}-{hhmm(hi)}")
        if now is not None and j.in_progress_by is None and a.start < now:
            out.append(f"{j.id}: starts {hhmm(a.start)}, before now ({hhmm(now)})")
        if a.end - a.start != j.duration and not (j.in_progress_by and a.end - a.start <= j.duration):
            out.append(f"{j.id}: {a.end - a.start} min on site, needs {j.duration}")
    for jid, who in people.items():
        j = by_id[jid]
        if len(set(who)) != len(who):
            out.append(f"{jid}: a technician is listed twice")
        if len(set(who)) < j.crew:
            out.append(f"{jid}: {len(set(who))} person(s) on site, the job needs a crew of {j.crew}")
        qualified = [t for t in set(who) if j.skills <= tech[t].skills_on(day)]
        if len(qualified) < j.needs_qualified:
            out.append(f"{jid}: {len(qualified)} qualified person(s), needs {j.needs_qualified}")
        if len(starts[jid]) > 1 and not j.in_progress_by:
            out.append(f"{jid}: the crew does not start together ({sorted(starts[jid])})")
        if j.pinned_to and j.pinned_to not in who:
            out.append(f"{jid}: pinned to {j.pinned_to}, planned for {who}")
        if sum(1 for a in plan.assignments if a.job_id == jid and a.role == "lead") != 1:
            out.append(f"{jid}: needs exactly one lead")
    for jid in by_id:
        if jid not in people and jid not in plan.unassigned:
            out.append(f"{jid}: neither planned nor reported left out")
        if jid in people and jid in plan.unassigned:
            out.append(f"{jid}: both planned and reported left out")
    routes = plan.by_technician()
    for tid, route in routes.items():
        if tid in tech:
            out += _route(tech[tid], _depot(tech[tid], tech), sorted(route, key=lambda a: a.start), by_id, plan,
                          travel)
    for t in techs:
        mate = tech.get(t.rides_with or "")
        if mate and t.available and mate.available:
            mine = [(a.job_id, a.start) for a in routes.get(t.id, [])]
            theirs = [(a.job_id, a.start) for a in routes.get(mate.id, [])]
            if sorted(mine) != sorted(theirs):
                out.append(f"{t.id} rides with {mate.id} but their routes differ")
    for j in jobs:
        if j.in_progress_by and j.in_progress_by in routes:
            first = min(routes[j.in_progress_by], key=lambda a: a.start)
            if first.job_id != j.id:
                out.append(f"{j.id}: in progress by {j.in_progress_by} but not first on their route")
    if previous is not None and max_moves is not None:
        avail = {t.id for t in techs if t.available}
        before, after = previous.technician_of(), plan.technician_of()
        moved = [jid for jid, was in before.items() if jid in by_id and was in avail and after.get(jid) != was]
        if len(moved) > max_moves:
            out.append(f"{len(moved)} jobs moved, the disruption budget is {max_moves}: {sorted(moved)}")
        for jid in moved:
            j = by_id[jid]
            if j.pinned_to or j.in_progress_by:
                out.append(f"{jid}: pinned or in progress, yet moved")
    return out


def _depot(t: Technician, tech: dict[str, Technician]) -> tuple[float, float]:
    """Where the day starts: one's own depot, or that of the truck one rides in."""
    seen = {t.id}
    while t.rides_with in tech and tech[t.rides_with].available and t.rides_with not in seen:
        t = tech[t.rides_with]
        seen.add(t.id)
    return t.depot


def _route(t: Technician, depot: tuple[float, float], route: list[Assignment], by_id: dict[str, Job],
           plan: DispatchPlan, travel: TravelMatrix) -> list[str]:
    out: list[str] = []
    if not route:
        return out
    breaks = sorted(plan.breaks.get(t.id, []))
    for b in t.breaks:
        if not any(b.earliest <= s <= b.latest and e - s >= b.duration for s, e in breaks):
            out.append(f"{t.id}: no {b.duration}-min break starting {hhmm(b.earliest)}-{hhmm(b.latest)}")
    for s, e in breaks:
        if s < t.shift[0] or e > t.latest_end:
            out.append(f"{t.id}: break {hhmm(s)}-{hhmm(e)} outside the shift")
        for a in route:
            if s < a.end and a.start < e:
                out.append(f"{t.id}: break {hhmm(s)}-{hhmm(e)} during {a.job_id}")
    # time between stops must hold the drive and any break taken in between
    stops = [(t.shift[0], t.shift[0], depot, "leaving the depot")]
    stops += [(a.start, a.end, by_id[a.job_id].location, a.job_id) for a in route if a.job_id in by_id]
    driving = 0
    for (_, e0, p0, n0), (s1, _, p1, n1) in itertools.pairwise(stops):
        drive = travel.minutes([p0, p1])[0][1]
        driving += drive
        resting = sum(e - s for s, e in breaks if e0 <= s and e <= s1)
        if s1 < e0 + drive + resting:
            out.append(f"{t.id}: {n1} starts {hhmm(s1)}, but {n0} ends {hhmm(e0)} and the drive takes {drive} min"
                       + (f" (+{resting} min break)" if resting else ""))
    last_end, last_place = stops[-1][1], stops[-1][2]
    home = travel.minutes([last_place, depot])[0][1]
    driving += home
    after = sum(e - s for s, e in breaks if s >= last_end)
    back = last_end + home + after
    if back > t.latest_end:
        out.append(f"{t.id}: back at {hhmm(back)}, past the shift's end {hhmm(t.shift[1])} plus "
                   f"{t.overtime_max} min overtime")
    if t.max_drive is not None and driving > t.max_drive:
        out.append(f"{t.id}: {driving} min driving, the limit is {t.max_drive}")
    return out
