"""Live dispatch: which technician does which job in which order, re-planned as the day changes.

Hard rules: a job goes only to people with the skills it needs on the day (a lapsed certificate removes its
skill), inside its time window and never before its earliest start (parts ready at 10:00); a crew job gets
``crew`` people on site at the same minute, ``qualified`` of them with the job's skills (the rest may be
helpers); technicians who ride together travel as one unit; each technician's breaks are taken inside their
windows, never during a job; a shift may run into overtime up to its limit, at a cost; driving per day stays
under the technician's maximum; pinned jobs stay with their technician; work in progress stays first. Jobs may
stay unassigned at a penalty that grows with priority (1 = outage, 5 = routine), each with the reason and the
cheapest change that would place it. A re-plan pays a penalty for every job moved to another technician and,
with ``max_moves``, moves at most that many (a job whose technician dropped out must move and is not counted);
``DispatchPlan.moved`` says what moved and why.

The solver is OR-Tools routing: it models synchronised crews, breaks, soft shift ends and a disruption budget,
which PyVRP (the benchmark's solver, better on plain VRPTW) cannot express. The two are combined: PyVRP solves
what it can of each search (windows, shifts, overtime, who may do what, optional jobs) and its routes start the
OR-Tools search (``pyvrp_start``); measured on the live day, shorter routes than OR-Tools alone in the same time
(``tests/benchmarks/dispatch_live.py``, ``solvers``). ``explain`` is pure: it finds the
constraints in conflict before the solver runs. :mod:`linecrew.server.planner.check` re-checks every rule of a
finished plan independently of this module.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace

from linecrew.server.planner.errors import InfeasiblePlanError
from linecrew.server.planner.matrix import Euclidean, Fallback, TravelMatrix
from linecrew.server.planner.routing import RoutingProblem, RoutingSolution, solve_routing

PRIORITY_PENALTY = {1: 5_000_000, 2: 500_000, 3: 50_000, 4: 5_000, 5: 1_000}
# Urgent work is planned first: each minute an outage waits costs as much as 10 units of driving (priority 2: 1).
WAIT_COST = {1: 100, 2: 10}


@dataclass(frozen=True)
class Break:
    earliest: int  # may start from (minutes since midnight)
    latest: int  # must start by
    duration: int


@dataclass(frozen=True)
class Technician:
    id: str
    skills: frozenset[str]
    depot: tuple[float, float]
    shift: tuple[int, int]  # minutes since midnight
    device_id: str | None = None
    available: bool = True
    certificates: tuple[tuple[str, str], ...] = ()  # (skill, ISO expiry date): the skill lapses after that day
    breaks: tuple[Break, ...] = ()
    overtime_max: int = 0  # minutes past the shift's end allowed
    overtime_cost: int = 0  # objective units per overtime minute (a tenth of a distance unit is 1)
    max_drive: int | None = None  # minutes of driving in the day
    rides_with: str | None = None  # travels in this technician's truck: one unit, one route

    def skills_on(self, day: dt.date) -> frozenset[str]:
        return self.skills - {s for s, _ in self.lapsed(day)}

    def lapsed(self, day: dt.date) -> list[tuple[str, str]]:
        return [(s, exp) for s, exp in self.certificates if s in self.skills and dt.date.fromisoformat(exp) < day]

    @property
    def latest_end(self) -> int:
        return self.shift[1] + self.overtime_max


@dataclass(frozen=True)
class Job:
    id: str
    location: tuple[float, float]
    duration: int  # minutes
    window: tuple[int, int]  # earliest start, latest start
    skills: frozenset[str] = frozenset()
    priority: int = 3
    title: str = ""
    pinned_to: str | None = None
    in_progress_by: str | None = None
    crew: int = 1  # people on site at once
    qualified: int | None = None  # how many of them need the skills (None: all of them)
    earliest_start: int | None = None  # not before (parts ready at 10:00)

    @property
    def needs_qualified(self) -> int:
        return self.crew if self.qualified is None else max(1, min(self.qualified, self.crew))

    @property
    def start_window(self) -> tuple[int, int]:
        return (max(self.window[0], self.earliest_start or 0), self.window[1])


@dataclass(frozen=True)
class Assignment:
    job_id: str
    technician_id: str
    order: int
    start: int
    end: int
    role: str = "lead"  # lead | crew (qualified) | helper


@dataclass(frozen=True)
class Move:
    job_id: str
    from_technician: str
    to_technician: str | None  # None: left out
    reason: str
    forced: bool = False  # its technician is gone: outside the disruption budget


@dataclass
class DispatchPlan:
    assignments: list[Assignment]
    unassigned: dict[str, str]  # job id → reason
    travel: float
    runtime_s: float
    changed: int = 0
    objective: float = 0.0
    notes: list[str] = field(default_factory=list)
    breaks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # technician → (start, end)
    overtime: dict[str, int] = field(default_factory=dict)  # technician → minutes past the shift's end
    drive: dict[str, int] = field(default_factory=dict)  # technician → minutes driving
    moved: list[Move] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # assigned job → why this technician
    fixes: dict[str, str] = field(default_factory=dict)  # left-out job → the cheapest change that would place it

    def by_technician(self) -> dict[str, list[Assignment]]:
        out: dict[str, list[Assignment]] = {}
        for a in sorted(self.assignments, key=lambda a: (a.technician_id, a.order)):
            out.setdefault(a.technician_id, []).append(a)
        return out

    def technician_of(self) -> dict[str, str]:
        """Each assigned job's lead technician."""
        return {a.job_id: a.technician_id for a in self.assignments if a.role == "lead"}

    def crew_of(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for a in sorted(self.assignments, key=lambda a: a.role != "lead"):
            out.setdefault(a.job_id, []).append(a.technician_id)
        return out


@dataclass
class Unit:
    """What the router sees as one vehicle: a technician, or technicians riding together."""

    members: list[Technician]
    skills: dict[str, frozenset[str]]  # member → skills on the day

    @property
    def lead(self) -> Technician:
        return self.members[0]

    @property
    def heads(self) -> int:
        return len(self.members)

    @property
    def shift(self) -> tuple[int, int]:
        return (max(t.shift[0] for t in self.members), min(t.shift[1] for t in self.members))

    @property
    def latest_end(self) -> int:
        return min(t.latest_end for t in self.members)

    def qualified(self, needs: frozenset[str]) -> list[Technician]:
        return [t for t in self.members if needs <= self.skills[t.id]]


def units_of(techs: list[Technician], day: dt.date) -> list[Unit]:
    """Available technicians grouped by who rides with whom (either side may name the other)."""
    avail = {t.id: t for t in techs if t.available}
    parent = {t: t for t in avail}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for t in avail.values():
        if t.rides_with in avail:
            parent[root(t.id)] = root(t.rides_with)
    groups: dict[str, list[Technician]] = {}
    for tid in sorted(avail):
        groups.setdefault(root(tid), []).append(avail[tid])
    # the truck's owner (who rides with nobody here) leads: the unit starts and ends at their depot
    return [Unit(sorted(m, key=lambda t: (t.rides_with in avail, t.id)), {t.id: t.skills_on(day) for t in m})
            for m in groups.values()]


def explain(techs: list[Technician], jobs: list[Job], *, speed: float = 1.0, day: dt.date | None = None,
            matrix: TravelMatrix | None = None) -> tuple[list[str], dict[str, str]]:
    """``(conflicts, unassignable)``: hard conflicts that make any plan infeasible, and jobs that no
    available technician could do, each with the reason."""
    day = day or dt.date.today()
    travel = matrix or Euclidean(speed)
    units = units_of(techs, day)
    unit_of = {t.id: u for u in units for t in u.members}
    everyone = {t.id: t for t in techs}
    conflicts: list[str] = []
    hopeless: dict[str, str] = {}
    for j in jobs:
        owner = j.pinned_to or j.in_progress_by
        if j.pinned_to:
            u = unit_of.get(j.pinned_to)
            if u is None:
                conflicts.append(f"job {j.id} is pinned to {j.pinned_to}, who is not available")
            elif not j.skills <= u.skills[j.pinned_to]:
                missing = sorted(j.skills - u.skills[j.pinned_to])
                lapsed = [s for s, _ in everyone[j.pinned_to].lapsed(day) if s in missing]
                conflicts.append(f"job {j.id} is pinned to {j.pinned_to}, who lacks skills {missing}"
                                 + (f" (certificate lapsed: {lapsed})" if lapsed else ""))
            elif not _reachable(u, j, travel):
                conflicts.append(f"job {j.id} is pinned to {j.pinned_to}, who cannot start it inside "
                                 f"{j.start_window} within shift {u.shift}")
            continue
        if owner and owner in unit_of:
            continue
        skilled = [u for u in units if u.qualified(j.skills)]
        heads = sum(len(u.qualified(j.skills)) for u in units)
        if not skilled:
            lapsed = sorted({t.id for t in techs if t.available and j.skills <= t.skills and j.skills & {
                s for s, _ in t.lapsed(day)}})
            hopeless[j.id] = f"no available technician has skills {sorted(j.skills)}" + (
                f" (certificates lapsed: {', '.join(lapsed)})" if lapsed else "")
        elif heads < j.needs_qualified:
            hopeless[j.id] = (f"needs {j.needs_qualified} people with skills {sorted(j.skills)} at once; "
                              f"{heads} available")
        elif sum(u.heads for u in units) < j.crew:
            hopeless[j.id] = f"needs a crew of {j.crew}; {sum(u.heads for u in units)} people available"
        elif not any(_reachable(u, j, travel) for u in skilled):
            hopeless[j.id] = (f"no skilled technician can start it inside its window {j.start_window} and finish "
                              "within their shift")
    return conflicts, hopeless


def _reachable(u: Unit, j: Job, travel: TravelMatrix) -> bool:
    depot = u.lead.depot
    there, back = travel.minutes([depot, j.location])[0][1], travel.minutes([j.location, depot])[0][1]
    start = max(u.shift[0] + there, j.start_window[0])
    return start <= j.start_window[1] and start + j.duration + back <= u.latest_end


def _from_now(t: Technician, now: int) -> Technician:
    return replace(t, shift=(max(t.shift[0], now), t.shift[1]), available=t.available and now < t.latest_end)


def plan_dispatch(techs: list[Technician], jobs: list[Job], *, previous: DispatchPlan | None = None,
                  time_limit_s: float = 3.0, speed: float = 1.0, change_penalty: int = 60,
                  now: int | None = None, day: dt.date | None = None, matrix: TravelMatrix | None = None,
                  max_moves: int | None = None) -> DispatchPlan:
    """Solve; raises :class:`InfeasiblePlanError` naming the conflicts when pins cannot be honoured.

    ``now`` (minutes since midnight) re-plans mid-shift: nobody starts new work before it. ``day`` decides which
    certificates have lapsed (default today). ``max_moves`` caps how many previously planned jobs may change
    technician (or be left out) — jobs in progress and pinned jobs never move.
    """
    from linecrew.server.planner.explain import describe, fixes, moves

    t0 = time.perf_counter()
    day = day or dt.date.today()
    travel = matrix or Euclidean(speed)
    if now is not None:
        techs = [_from_now(t, now) for t in techs]
        ends = {a.job_id: a.end for a in previous.assignments} if previous else {}
        # work in progress takes what its plan had left of it (at least 5 minutes), not its whole length again
        jobs = [replace(j, duration=max(5, min(j.duration, ends.get(j.id, now + j.duration) - now)))
                if j.in_progress_by else replace(j, window=(max(j.window[0], now), j.window[1])) for j in jobs]
    conflicts, hopeless = explain(techs, jobs, day=day, matrix=travel)
    if conflicts:
        raise InfeasiblePlanError("no feasible plan: " + "; ".join(conflicts), conflicts)
    units = units_of(techs, day)
    todo = [j for j in jobs if j.id not in hopeless]
    budget: int | None = max_moves
    if max_moves is not None and previous is not None:
        # a planned job nobody can do any more is a move too (its technician is still here)
        here = {t.id for t in techs if t.available}
        lost = [jid for jid, tid in previous.technician_of().items() if jid in hopeless and tid in here]
        if len(lost) > max_moves:
            raise InfeasiblePlanError(
                f"no plan moves at most {max_moves} job(s): {len(lost)} planned job(s) can no longer be done "
                f"({', '.join(sorted(lost))})", [f"the disruption budget of {max_moves} move(s) cannot be kept"])
        max_moves -= len(lost)
    if not units or not todo:
        plan = DispatchPlan([], dict(hopeless) | {j.id: "no technician available" for j in todo}, 0.0,
                            time.perf_counter() - t0)
    else:
        model = _Model(units, todo, previous, travel, change_penalty, max_moves)
        sol = model.solve(time_limit_s)
        if not sol.found and max_moves is not None:
            raise InfeasiblePlanError(
                f"no plan moves at most {budget} job(s): more planned jobs than that no longer fit their "
                "technician's day", [f"the disruption budget of {budget} move(s) cannot be kept"])
        plan = model.plan(sol, hopeless)
        plan.runtime_s = time.perf_counter() - t0
    if isinstance(travel, Fallback):
        plan.notes += travel.notes
    plan.why = describe(plan, techs, jobs, travel, day)
    plan.fixes = fixes(plan, techs, jobs, travel, day)
    if previous is not None:
        plan.moved = moves(previous, plan, techs, jobs)
        plan.changed = len(plan.moved)
    return plan


# Share of a search's time PyVRP gets to build the start; 0 turns the combination off (OR-Tools alone).
PYVRP_SHARE = 0.4


def _search(p: RoutingProblem, time_limit_s: float, previous: list[list[int]] | None = None) -> RoutingSolution:
    """OR-Tools with every rule. A fresh plan starts from PyVRP's routes for what PyVRP can model; a re-plan
    starts from the previous plan's routes (what still fits), which keeps it close to that plan."""
    if previous is not None:
        return solve_routing(p, time_limit_s=time_limit_s, initial=previous)  # falls back when they do not fit
    if PYVRP_SHARE > 0:
        from linecrew.server.planner.pyvrp_start import pyvrp_routes

        t0 = time.perf_counter()
        start = pyvrp_routes(p, time_limit_s=time_limit_s * PYVRP_SHARE)
        if start is not None:
            rest = max(0.2, time_limit_s - (time.perf_counter() - t0))
            return solve_routing(p, time_limit_s=rest, initial=start)
    return solve_routing(p, time_limit_s=time_limit_s)


class _Model:
    """The routing problem for one day: one vehicle per unit, one node per job (a crew job: one node per person,
    synchronised, plus one node a unit riding together can take alone)."""

    def __init__(self, units: list[Unit], jobs: list[Job], previous: DispatchPlan | None, travel: TravelMatrix,
                 change_penalty: int, max_moves: int | None) -> None:
        self.units, self.jobs = units, jobs
        k = len(units)
        self.unit_of = {t.id: v for v, u in enumerate(units) for t in u.members}
        before = previous.crew_of() if previous else {}
        roles = {(a.job_id, a.technician_id): a.role for a in previous.assignments} if previous else {}
        self.nodes: list[tuple[Job, str]] = []  # node - k → (job, role: lead | crew | helper | team)
        allowed: dict[int, list[int]] = {}
        penalties: list[int | None] = [None] * k
        first: dict[int, int] = {}
        sync: list[list[int]] = []
        alternatives: list[list[int]] = []
        job_nodes: dict[str, list[int]] = {}

        def add(j: Job, role: str, vehicles: list[int], penalty: int | None) -> int:
            node = k + len(self.nodes)
            self.nodes.append((j, role))
            allowed[node] = vehicles
            penalties.append(penalty)
            job_nodes.setdefault(j.id, []).append(node)
            return node

        for j in jobs:
            penalty = PRIORITY_PENALTY.get(j.priority, PRIORITY_PENALTY[5])
            if j.in_progress_by in self.unit_of:
                holders = [t for t in before.get(j.id, []) if t in self.unit_of] or [j.in_progress_by]
                vehicles = list(dict.fromkeys(self.unit_of[t] for t in [j.in_progress_by, *holders]))
                # already on site: each holder goes on with it first, in the role it had; nothing to synchronise
                for n, v in enumerate(vehicles):
                    mine = [t.id for t in units[v].members]
                    had = roles.get((j.id, next((t for t in holders if t in mine), mine[0])), "helper")
                    first[v] = add(j, "lead" if n == 0 else "crew" if had == "crew" else "helper", [v], None)
                continue
            pin = [self.unit_of[j.pinned_to]] if j.pinned_to in self.unit_of else None
            skilled = [v for v, u in enumerate(units) if u.qualified(j.skills)]
            lead_units = pin or skilled
            if j.crew == 1:
                add(j, "lead", lead_units, None if pin else penalty)
                continue
            group = [add(j, "lead", lead_units, None if pin else penalty)]
            for n in range(1, j.crew):
                role = "crew" if n < j.needs_qualified else "helper"
                group.append(add(j, role, skilled if role == "crew" else list(range(k)), 0))
            sync.append(group)
            teams = [v for v in (pin or range(k)) if units[v].heads >= j.crew
                     and len(units[v].qualified(j.skills)) >= j.needs_qualified]
            if teams:
                team = add(j, "team", teams, None if pin else penalty)
                alternatives.append([group[0], team])
                if pin:  # pinned: the lead node or the team node, never neither
                    penalties[group[0]] = penalties[team] = 10**12
        self.first_node = first
        places = [u.lead.depot for u in units] + [j.location for j, _ in self.nodes]
        minutes, tenths = travel.minutes(places), travel.distances(places)
        previous_vehicle: dict[int, int] = {}
        moves_: list[tuple[list[int], int]] = []
        if previous is not None:
            leads = previous.technician_of()
            for j in jobs:
                was = leads.get(j.id)
                if was in self.unit_of and j.id in job_nodes and not j.in_progress_by and not j.pinned_to:
                    v = self.unit_of[was]
                    held = [n for n in job_nodes[j.id] if self.nodes[n - k][1] in ("lead", "team")]
                    for n in held:
                        previous_vehicle[n] = v
                    moves_.append((held, v))
        soft_start = {n: (j.start_window[0], WAIT_COST[j.priority]) for n, (j, role) in enumerate(self.nodes, k)
                      if j.priority in WAIT_COST and role in ("lead", "team") and not j.in_progress_by}
        horizon_end = max(u.latest_end for u in units)
        windows = [u.shift for u in units]
        for j, _ in self.nodes:
            if j.in_progress_by in self.unit_of:  # already started: it goes on from the unit's start
                windows.append((units[self.unit_of[j.in_progress_by]].shift[0], horizon_end))
            else:
                windows.append((j.start_window[0], min(j.start_window[1], horizon_end)))
        breaks = {v: sorted({(b.earliest, b.latest, b.duration) for t in u.members for b in t.breaks})
                  for v, u in enumerate(units) if any(t.breaks for t in u.members)}
        soft_end = {v: (u.shift[1], sum(t.overtime_cost for t in u.members))
                    for v, u in enumerate(units) if u.latest_end > u.shift[1]}
        max_travel = {v: min(t.max_drive for t in u.members if t.max_drive is not None)
                      for v, u in enumerate(units) if any(t.max_drive is not None for t in u.members)}
        self.problem = RoutingProblem(
            n_vehicles=k, depot_starts=list(range(k)), depot_ends=list(range(k)), distance=tenths,
            travel=minutes, service=[0] * k + [j.duration for j, _ in self.nodes], windows=windows,
            drop_penalty=penalties, allowed_vehicles=allowed,
            vehicle_windows=[(u.shift[0], u.latest_end) for u in units], first_node=first, soft_start=soft_start,
            previous_vehicle=previous_vehicle, change_penalty=change_penalty * 10, breaks=breaks, soft_end=soft_end,
            max_travel=max_travel, synchronized=sync, alternatives=alternatives, moves=moves_,
            max_moves=max_moves)
        self.previous_routes = self._previous_routes(previous, job_nodes, allowed, first) if previous else None

    def solve(self, time_limit_s: float) -> RoutingSolution:
        """With a disruption budget, first the day with every planned job kept on its technician (only new work
        is placed, and a job that no longer fits is left out — each such job is a move): when that keeps the
        budget, it starts the search that may move up to the budget; when it does not, the budget cannot be kept
        and no plan is returned."""
        p = self.problem
        if p.max_moves is None or not p.moves:
            return self._solve(p, time_limit_s)
        allowed, penalties = dict(p.allowed_vehicles), list(p.drop_penalty or [])
        for nodes, v in p.moves:
            for n in nodes:  # kept where it was, and left out only when it cannot be kept at all
                allowed[n] = [v] if v in allowed[n] else []
                penalties[n] = 10**9 if penalties[n] is not None else None
        kept = self._solve(replace(p, allowed_vehicles=allowed, drop_penalty=penalties, max_moves=None, moves=[]),
                           time_limit_s * 0.5)
        if not kept.found:
            return kept
        routes = {n for r in kept.routes for n in r}
        dropped = sum(1 for nodes, _ in p.moves if not routes & set(nodes))
        if dropped > p.max_moves:
            return RoutingSolution(False, kept.routes, {}, kept.unassigned, 0)
        return solve_routing(p, time_limit_s=time_limit_s * 0.5, initial=kept.routes)

    def _previous_routes(self, previous: DispatchPlan, job_nodes: dict[str, list[int]],
                         allowed: dict[int, list[int]], first: dict[int, int]) -> list[list[int]]:
        """The previous plan as routes of this model's lead (or team) nodes, work in progress first."""
        k = len(self.units)
        by_tech = previous.by_technician()
        seen: set[int] = set(first.values())
        routes = []
        for v, u in enumerate(self.units):
            route = [first[v]] if v in first else []
            for a in by_tech.get(u.lead.id, []):
                if a.role != "lead":
                    continue
                node = next((n for n in job_nodes.get(a.job_id, []) if self.nodes[n - k][1] in ("lead", "team")
                             and v in allowed[n] and n not in seen), None)
                if node is not None:
                    route.append(node)
                    seen.add(node)
            routes.append(self._what_fits(v, route))
        return routes

    def _what_fits(self, v: int, route: list[int]) -> list[int]:
        """The stops of ``route`` that still fit in order — windows, the shift's end — dropping the rest (an
        estimate: breaks and crews are the search's to fit)."""
        p = self.problem
        now, here, kept = p.vehicle_windows[v][0] if p.vehicle_windows else 0, v, []
        end = p.vehicle_windows[v][1] if p.vehicle_windows else 10**9
        for node in route:
            start = max(now + p.travel[here][node], p.windows[node][0])
            if node not in self.first_node.values() and (
                    start > p.windows[node][1] or start + p.service[node] + p.travel[node][v] > end):
                continue
            kept.append(node)
            now, here = start + p.service[node], node
        return kept

    def _solve(self, p: RoutingProblem, time_limit_s: float) -> RoutingSolution:
        """Without crews: one search. With crews, in three stages, because the router's moves shift one node at a
        time and a crew's nodes must move together: (1) each crew job as its lead alone, which times it; (2) every
        crew member's node pinned to that minute, each on its own; (3) the full model with synchronised crews,
        started from stage 2's routes less any crew left incomplete."""
        if not p.synchronized:
            return _search(p, time_limit_s, self.previous_routes)
        others = {n for group in p.synchronized for n in group[1:]}
        leads_only = replace(p, synchronized=[], allowed_vehicles={
            n: ([] if n in others else vs) for n, vs in p.allowed_vehicles.items()},
            drop_penalty=[0 if n in others else pen for n, pen in enumerate(p.drop_penalty or [])])
        first = _search(leads_only, time_limit_s * 0.35, self.previous_routes)
        windows, allowed = list(p.windows), dict(p.allowed_vehicles)
        penalties = list(p.drop_penalty or [])
        for group in p.synchronized:
            at = first.arrivals.get(group[0])
            for n in group:
                if at is None:  # the lead found no time: no crew can be timed here
                    allowed[n] = [] if penalties[n] is not None else allowed[n]
                    continue
                windows[n] = (at, at)
                if n != group[0] and penalties[group[0]] is not None:
                    penalties[n] = penalties[group[0]]
        pinned = replace(p, synchronized=[], windows=windows, drop_penalty=penalties, allowed_vehicles=allowed)
        second = solve_routing(pinned, time_limit_s=time_limit_s * 0.3)
        broken = {n for group in p.synchronized for n in group
                  if len({second.arrivals.get(m) for m in group}) != 1 or group[0] not in second.arrivals}
        start = [[n for n in r if n not in broken] for r in second.routes]
        return solve_routing(p, time_limit_s=time_limit_s * 0.35, initial=start)

    def plan(self, sol: RoutingSolution, hopeless: dict[str, str]) -> DispatchPlan:
        k = len(self.units)
        p = self.problem
        assignments: list[Assignment] = []
        travel = 0.0
        breaks: dict[str, list[tuple[int, int]]] = {}
        overtime: dict[str, int] = {}
        drive: dict[str, int] = {}
        served: set[str] = set()
        for v, route in enumerate(sol.routes):
            u = self.units[v]
            prev, minutes = v, 0
            for order, node in enumerate(route, 1):
                j, role = self.nodes[node - k]
                start = sol.arrivals[node]
                served.add(j.id)
                for t, r in self._roles(u, j, role):
                    assignments.append(Assignment(j.id, t.id, order, start, start + j.duration, r))
                travel += p.distance[prev][node] / 10
                minutes += p.travel[prev][node]
                prev = node
            if route:
                travel += p.distance[prev][v] / 10
                minutes += p.travel[prev][v]
                end = sol.ends[v]
                for t in u.members:
                    drive[t.id] = minutes
                    if end > t.shift[1]:
                        overtime[t.id] = end - t.shift[1]
                    if sol.breaks.get(v):
                        breaks[t.id] = sol.breaks[v]
        unassigned = dict(hopeless)
        for j in self.jobs:
            if j.id not in served:
                lo, hi = j.start_window
                unassigned[j.id] = (f"not enough technician time inside its window {hhmm(lo)}-{hhmm(hi)}; "
                                    f"higher-priority work came first (priority {j.priority})")
        return DispatchPlan(assignments, unassigned, round(travel, 1), 0.0, objective=round(sol.cost / 10, 1),
                            breaks=breaks, overtime=overtime, drive=drive)

    @staticmethod
    def _roles(u: Unit, j: Job, role: str) -> list[tuple[Technician, str]]:
        """Who in the unit does what on this node: the qualified first (lead/crew), the others help."""
        qualified = u.qualified(j.skills)
        others = [t for t in u.members if t not in qualified]
        ordered = qualified + others
        if role == "team":
            return [(t, "lead" if n == 0 else "crew" if n < j.needs_qualified and t in qualified else "helper")
                    for n, t in enumerate(ordered)]
        if role == "helper":
            return [(t, "helper") for t in ordered]
        return [(ordered[0], role)] + [(t, "helper") for t in ordered[1:]]


def hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"
