"""Why the plan is what it is — pure functions over a finished plan, no solver.

``describe``: for every assigned job, why this technician (skills, distance from the previous stop, the window,
the technician's load). ``fixes``: for every job left out, the cheapest change that would place it — a
technician with a skill (or a certificate renewed), another person for a crew, overtime, a wider window —
estimated by trying the job at every place in every able technician's route. ``moves``: what a re-plan moved
away from its previous technician, and why.
"""

from __future__ import annotations

import datetime as dt

from linecrew.server.planner.dispatch import Assignment, DispatchPlan, Job, Move, Technician, hhmm
from linecrew.server.planner.matrix import TravelMatrix


def describe(plan: DispatchPlan, techs: list[Technician], jobs: list[Job], travel: TravelMatrix,
             day: dt.date) -> dict[str, str]:
    by_id = {j.id: j for j in jobs}
    tech = {t.id: t for t in techs}
    able_count = {j.id: sum(1 for t in techs if t.available and j.skills <= t.skills_on(day)) for j in jobs}
    crews = plan.crew_of()
    out: dict[str, str] = {}
    for tid, route in plan.by_technician().items():
        t = tech[tid]
        work = sum(a.end - a.start for a in route)
        prev = t.depot
        for a in route:
            j = by_id.get(a.job_id)
            if j is None:
                continue
            km = travel.distances([prev, j.location])[0][1] / 10
            prev = j.location
            if a.role != "lead":
                continue
            skills = (f"has {', '.join(sorted(j.skills))} ({able_count[j.id]} able technician(s))" if j.skills
                      else "no special skill needed")
            with_ = [x for x in crews.get(j.id, []) if x != tid]
            out[j.id] = (f"{tid}: {skills}; {km:g} from the previous stop; starts {hhmm(a.start)} inside "
                         f"{hhmm(j.start_window[0])}-{hhmm(j.start_window[1])}; {len(route)} job(s), {work} min of "
                         f"work in a {hhmm(t.shift[0])}-{hhmm(t.shift[1])} shift"
                         + (f"; with {', '.join(with_)}" if with_ else ""))
    return out


def fixes(plan: DispatchPlan, techs: list[Technician], jobs: list[Job], travel: TravelMatrix,
          day: dt.date) -> dict[str, str]:
    by_id = {j.id: j for j in jobs}
    routes = plan.by_technician()
    out: dict[str, str] = {}
    for jid in plan.unassigned:
        j = by_id.get(jid)
        if j is None:
            continue
        out[jid] = _cheapest(j, techs, routes, by_id, travel, day)
    return out


def _cheapest(j: Job, techs: list[Technician], routes: dict[str, list[Assignment]], by_id: dict[str, Job],
              travel: TravelMatrix, day: dt.date) -> str:
    avail = [t for t in techs if t.available]
    able = [t for t in avail if j.skills <= t.skills_on(day)]
    if not able:
        lapsed = [(t, exp) for t in avail for s, exp in t.lapsed(day) if s in j.skills and j.skills <= t.skills]
        if lapsed:
            t, exp = lapsed[0]
            return f"renew {t.id}'s {', '.join(sorted(j.skills & {s for s, _ in t.lapsed(day)}))} certificate " \
                   f"(lapsed {exp})"
        return f"a technician with skills {', '.join(sorted(j.skills))} on shift"
    if len(able) < j.needs_qualified:
        return f"a {_nth(len(able) + 1)} technician with skills {', '.join(sorted(j.skills))}"
    if len(avail) < j.crew:
        return f"{j.crew - len(avail)} more person(s) on shift to make a crew of {j.crew}"
    best: tuple[int, str] | None = None
    for t in able:
        for cost, change in _insertions(j, t, routes.get(t.id, []), by_id, travel):
            if best is None or cost < best[0]:
                best = (cost, change)
    if best is None:
        return "a technician free during its window (every able route is full)"
    extra = f"; and {j.crew - 1} more person(s) free at the same time" if j.crew > 1 else ""
    return best[1] + extra


def _insertions(j: Job, t: Technician, route: list[Assignment], by_id: dict[str, Job], travel: TravelMatrix
                ) -> list[tuple[int, str]]:
    """Try ``j`` at every place in ``t``'s route: the overtime or the later window it would need (an estimate:
    breaks are added at the end of the day, other crews' timings are not moved)."""
    stops = [by_id[a.job_id] for a in route if a.job_id in by_id]
    planned = {a.job_id: a.start for a in route}
    brk = sum(b.duration for b in t.breaks)
    out: list[tuple[int, str]] = []
    for pos in range(len(stops) + 1):
        seq = [*stops[:pos], j, *stops[pos:]]
        now, here, late, ok = t.shift[0], t.depot, 0, True
        delayed: list[tuple[str, int]] = []
        for s in seq:
            now += travel.minutes([here, s.location])[0][1]
            now = max(now, s.start_window[0])
            if s is not j and s.priority <= 2 and now > planned.get(s.id, now):
                delayed.append((s.id, now - planned[s.id]))
            if now > s.start_window[1]:
                if s is not j:
                    ok = False
                    break
                late = now - s.start_window[1]
            now += s.duration
            here = s.location
        if not ok:
            continue
        back = now + travel.minutes([here, t.depot])[0][1] + brk
        over = max(0, back - t.latest_end)
        if delayed and late == 0 and over == 0:
            wait = max(d for _, d in delayed)
            out.append((wait, f"{t.id} could take it at stop {pos + 1} by delaying "
                              f"{', '.join(f'{i} ({d} min)' for i, d in delayed)}, urgent work"))
        elif late == 0 and over == 0:
            out.append((0, f"it fits on {t.id}'s route at stop {pos + 1}: re-plan with a longer time limit"))
        elif late == 0:
            out.append((over, f"give {t.id} {over} min of overtime"))
        elif over == 0:
            out.append((late, f"widen its window to start by {hhmm(j.start_window[1] + late)} (+{late} min) for "
                              f"{t.id}"))
        else:
            out.append((late + over, f"widen its window by {late} min and give {t.id} {over} min of overtime"))
    return out


def moves(previous: DispatchPlan, plan: DispatchPlan, techs: list[Technician], jobs: list[Job]) -> list[Move]:
    before, after = previous.technician_of(), plan.technician_of()
    avail = {t.id for t in techs if t.available}
    current = {j.id: j for j in jobs}
    known = set(before) | set(previous.unassigned)
    urgent = sorted(j.id for j in jobs if j.priority == 1 and j.id not in known and j.id in after)
    out: list[Move] = []
    for jid, was in sorted(before.items()):
        now = after.get(jid)
        if jid not in current or now == was:
            continue
        if was not in avail:
            why, forced = f"{was} is not available", True
        elif now is None:
            why, forced = "left out: " + plan.unassigned.get(jid, "no room"), False
        elif urgent:
            why, forced = f"made room for {', '.join(urgent)}", False
        else:
            why, forced = "re-planned with the day's changes", False
        out.append(Move(jid, was, now, why, forced))
    return out


def _nth(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")
