"""Live dispatch: which technician does which job in which order, re-planned as the day changes.

Hard rules: a job goes only to a technician with every skill it needs, inside its time window and the
technician's shift; pinned jobs stay with their technician; work in progress stays first on its
technician's route. Jobs may stay unassigned at a penalty that grows with priority (1 = outage, 5 =
routine), and each unassigned job gets a reason. A re-plan keeps pins and work in progress and pays a
penalty for every job moved to another technician, so only what must change changes.

``explain`` is pure: it finds the constraints in conflict before the solver runs (a pin to a missing or
unskilled technician is infeasible; an unreachable window just leaves that job unassigned).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from linecrew.server.planner.errors import InfeasiblePlanError
from linecrew.server.planner.routing import RoutingProblem, solve_routing

PRIORITY_PENALTY = {1: 5_000_000, 2: 500_000, 3: 50_000, 4: 5_000, 5: 1_000}


@dataclass(frozen=True)
class Technician:
    id: str
    skills: frozenset[str]
    depot: tuple[float, float]
    shift: tuple[int, int]  # minutes since midnight
    device_id: str | None = None
    available: bool = True


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


@dataclass(frozen=True)
class Assignment:
    job_id: str
    technician_id: str
    order: int
    start: int
    end: int


@dataclass
class DispatchPlan:
    assignments: list[Assignment]
    unassigned: dict[str, str]  # job id → reason
    travel: float
    runtime_s: float
    changed: int = 0
    objective: float = 0.0
    notes: list[str] = field(default_factory=list)

    def by_technician(self) -> dict[str, list[Assignment]]:
        out: dict[str, list[Assignment]] = {}
        for a in sorted(self.assignments, key=lambda a: (a.technician_id, a.order)):
            out.setdefault(a.technician_id, []).append(a)
        return out

    def technician_of(self) -> dict[str, str]:
        return {a.job_id: a.technician_id for a in self.assignments}


def travel_minutes(a: tuple[float, float], b: tuple[float, float], speed: float) -> int:
    return math.ceil(math.hypot(a[0] - b[0], a[1] - b[1]) / speed)


def explain(techs: list[Technician], jobs: list[Job], *, speed: float = 1.0) -> tuple[list[str], dict[str, str]]:
    """``(conflicts, unassignable)``: hard conflicts that make any plan infeasible, and jobs that no
    available technician could do, each with the reason."""
    avail = {t.id: t for t in techs if t.available}
    conflicts: list[str] = []
    hopeless: dict[str, str] = {}
    for j in jobs:
        owner = j.pinned_to or j.in_progress_by
        if j.pinned_to:
            t = avail.get(j.pinned_to)
            if t is None:
                conflicts.append(f"job {j.id} is pinned to {j.pinned_to}, who is not available")
            elif not j.skills <= t.skills:
                conflicts.append(f"job {j.id} is pinned to {t.id}, who lacks skills {sorted(j.skills - t.skills)}")
            elif not _reachable(t, j, speed):
                conflicts.append(f"job {j.id} is pinned to {t.id}, who cannot start it inside {j.window} "
                                 f"within shift {t.shift}")
            continue
        if owner and owner in avail:
            continue
        skilled = [t for t in avail.values() if j.skills <= t.skills]
        if not skilled:
            hopeless[j.id] = f"no available technician has skills {sorted(j.skills)}"
        elif not any(_reachable(t, j, speed) for t in skilled):
            hopeless[j.id] = (f"no skilled technician can start it inside its window {j.window} and finish "
                              "within their shift")
    return conflicts, hopeless


def _from_now(t: Technician, now: int) -> Technician:
    return Technician(t.id, t.skills, t.depot, (max(t.shift[0], now), t.shift[1]), t.device_id,
                      t.available and now < t.shift[1])


def _job_from_now(j: Job, now: int) -> Job:
    return Job(j.id, j.location, j.duration, (max(j.window[0], now), j.window[1]), j.skills, j.priority, j.title,
               j.pinned_to, j.in_progress_by)


def _reachable(t: Technician, j: Job, speed: float) -> bool:
    arrive = t.shift[0] + travel_minutes(t.depot, j.location, speed)
    start = max(arrive, j.window[0])
    back = start + j.duration + travel_minutes(j.location, t.depot, speed)
    return start <= j.window[1] and back <= t.shift[1]


def plan_dispatch(techs: list[Technician], jobs: list[Job], *, previous: DispatchPlan | None = None,
                  time_limit_s: float = 3.0, speed: float = 1.0, change_penalty: int = 60,
                  now: int | None = None) -> DispatchPlan:
    """Solve; raises :class:`InfeasiblePlanError` naming the conflicts when pins cannot be honoured.

    ``now`` (minutes since midnight) re-plans mid-shift: nobody starts new work before it.
    """
    t0 = time.perf_counter()
    if now is not None:
        techs = [_from_now(t, now) for t in techs]
        jobs = [j if j.in_progress_by else _job_from_now(j, now) for j in jobs]
    conflicts, hopeless = explain(techs, jobs, speed=speed)
    if conflicts:
        raise InfeasiblePlanError("no feasible plan: " + "; ".join(conflicts), conflicts)
    crew = [t for t in techs if t.available]
    todo = [j for j in jobs if j.id not in hopeless]
    if not crew or not todo:
        return DispatchPlan([], dict(hopeless) | {j.id: "no technician available" for j in todo}, 0.0,
                        time.perf_counter() - t0)
    problem, job_at = _problem(crew, todo, previous, speed, change_penalty)
    sol = solve_routing(problem, time_limit_s=time_limit_s)
    assignments, travel = [], 0.0
    for v, route in enumerate(sol.routes):
        prev = v
        for k, node in enumerate(route):
            j = job_at[node]
            start = sol.arrivals[node]
            assignments.append(Assignment(j.id, crew[v].id, k + 1, start, start + j.duration))
            travel += problem.distance[prev][node] / 10
            prev = node
        if route:
            travel += problem.distance[prev][problem.depot_ends[v]] / 10
    unassigned = dict(hopeless)
    for node in sol.unassigned:
        j = job_at[node]
        unassigned[j.id] = (f"not enough technician time inside its window {j.window}; higher-priority work "
                            f"came first (priority {j.priority})")
    plan = DispatchPlan(assignments, unassigned, round(travel, 1), time.perf_counter() - t0,
                        objective=round(sol.cost / 10, 1))
    if previous is not None:
        before = previous.technician_of()
        plan.changed = sum(1 for jid, tid in plan.technician_of().items() if jid in before and before[jid] != tid)
        plan.changed += sum(1 for jid in before if jid in {j.id for j in jobs} and jid in plan.unassigned)
    return plan


def tech_shift_start(crew: list[Technician], j: Job) -> int:
    return next(t.shift[0] for t in crew if t.id == j.in_progress_by)


def _problem(crew: list[Technician], jobs: list[Job], previous: DispatchPlan | None, speed: float,
             change_penalty: int) -> tuple[RoutingProblem, dict[int, Job]]:
    """Nodes: one depot per technician (0..k-1), then the jobs. Times in minutes, distances in tenths."""
    places = [t.depot for t in crew] + [j.location for j in jobs]
    k = len(crew)
    dist = [[math.floor(10 * math.hypot(a[0] - b[0], a[1] - b[1])) for b in places] for a in places]
    trav = [[travel_minutes(a, b, speed) for b in places] for a in places]
    job_at = {k + i: j for i, j in enumerate(jobs)}
    tech_index = {t.id: v for v, t in enumerate(crew)}
    horizon_end = max(t.shift[1] for t in crew)
    windows = [(t.shift[0], t.shift[1]) for t in crew] + [
        (tech_shift_start(crew, j), horizon_end) if j.in_progress_by in tech_index
        else (j.window[0], min(j.window[1], horizon_end)) for j in jobs]
    allowed: dict[int, list[int]] = {}
    first: dict[int, int] = {}
    penalties: list[int | None] = [None] * k
    for node, j in job_at.items():
        owner = j.pinned_to or j.in_progress_by
        if owner in tech_index:
            allowed[node] = [tech_index[owner]]
            penalties.append(None)
            if j.in_progress_by in tech_index:
                first[tech_index[j.in_progress_by]] = node
        else:
            allowed[node] = [v for v, t in enumerate(crew) if j.skills <= t.skills]
            penalties.append(PRIORITY_PENALTY.get(j.priority, PRIORITY_PENALTY[5]))
    previous_vehicle = {}
    if previous is not None:
        before = previous.technician_of()
        for node, j in job_at.items():
            if before.get(j.id) in tech_index:
                previous_vehicle[node] = tech_index[before[j.id]]
    problem = RoutingProblem(
        n_vehicles=k, depot_starts=list(range(k)), depot_ends=list(range(k)), distance=dist, travel=trav,
        service=[0] * k + [j.duration for j in jobs], windows=windows, drop_penalty=penalties,
        allowed_vehicles=allowed, vehicle_windows=[t.shift for t in crew], first_node=first,
        previous_vehicle=previous_vehicle, change_penalty=change_penalty * 10,
    )
    return problem, job_at
