"""Solomon-style VRPTW with PyVRP (hybrid genetic search), the benchmark's solver: same instance, same integer
distances (tenths, truncated), same time limit and same evaluator as the OR-Tools routing it is compared with."""

from __future__ import annotations

import datetime as dt
import time

from linecrew.server.planner.dispatch import Assignment, DispatchPlan, Job, Technician
from linecrew.server.planner.matrix import Euclidean, TravelMatrix
from linecrew.server.planner.vrptw import VrptwInstance, VrptwResult, evaluate_routes


def solve_vrptw_pyvrp(inst: VrptwInstance, *, time_limit_s: float = 10.0, seed: int = 1) -> VrptwResult:
    from pyvrp import Model
    from pyvrp.stop import MaxRuntime

    t0 = time.perf_counter()
    m = Model()
    locs = [m.add_location(x=round(10 * x), y=round(10 * y)) for x, y in inst.coords]
    a0, b0 = inst.windows[0]
    depot = m.add_depot(locs[0], tw_early=a0 * 10, tw_late=b0 * 10)
    m.add_vehicle_type(num_available=inst.vehicles, capacity=inst.capacity, start_depot=depot, end_depot=depot,
                       tw_early=a0 * 10, tw_late=b0 * 10)
    for i in range(1, len(inst.coords)):
        a, b = inst.windows[i]
        m.add_client(locs[i], delivery=inst.demand[i], service_duration=inst.service[i] * 10, tw_early=a * 10,
                     tw_late=b * 10)
    for i, frm in enumerate(locs):
        for j, to in enumerate(locs):
            if i != j:
                d = inst.dist10(i, j)
                m.add_edge(frm, to, distance=d, duration=d)
    res = m.solve(stop=MaxRuntime(time_limit_s), seed=seed, display=False)
    routes = [[int(a.idx) + 1 for a in r if a.is_client()] for r in res.best.routes()]  # clients after the depot
    objective, violations = evaluate_routes(inst, routes)
    found = res.best.is_feasible()
    served = {c for r in routes for c in r}
    return VrptwResult(inst.name, objective if found else None, len(routes), time.perf_counter() - t0, routes,
                       [c for c in range(1, len(inst.coords)) if c not in served], violations)


def solve_day_pyvrp(techs: list[Technician], jobs: list[Job], *, day: dt.date, time_limit_s: float = 10.0,
                    matrix: TravelMatrix | None = None, seed: int = 1) -> DispatchPlan:
    """A live day with PyVRP, for the rules it can express: skills on the day (a routing profile per skill set,
    with the jobs a set cannot do out of reach), job and shift windows, overtime up to a limit at a cost, optional
    jobs at their priority's penalty. Crews, breaks, riding together, drive limits, work in progress and the
    disruption budget it cannot express: the live dispatch keeps OR-Tools for those, and this solver is the
    measured comparison on the day without them (``tests/benchmarks/dispatch_live.py``)."""
    from pyvrp import Model
    from pyvrp.stop import MaxRuntime

    from linecrew.server.planner.dispatch import PRIORITY_PENALTY

    t0 = time.perf_counter()
    travel = matrix or Euclidean()
    crew = [t for t in techs if t.available]
    places = [t.depot for t in crew] + [j.location for j in jobs]
    minutes, tenths = travel.minutes(places), travel.distances(places)
    m = Model()
    locs = [m.add_location(x=round(10 * x), y=round(10 * y)) for x, y in places]
    skill_sets = sorted({t.skills_on(day) for t in crew}, key=sorted)
    profiles = {s: m.add_profile(name=",".join(sorted(s))) for s in skill_sets}
    for k, t in enumerate(crew):
        depot = m.add_depot(locs[k], tw_early=t.shift[0], tw_late=t.latest_end)
        m.add_vehicle_type(1, start_depot=depot, end_depot=depot, tw_early=t.shift[0], tw_late=t.latest_end,
                           shift_duration=t.shift[1] - t.shift[0], max_overtime=t.overtime_max,
                           unit_overtime_cost=t.overtime_cost, profile=profiles[t.skills_on(day)], name=t.id)
    n = len(crew)
    for i, j in enumerate(jobs):
        lo, hi = j.start_window
        m.add_client(locs[n + i], service_duration=j.duration, tw_early=lo, tw_late=hi, required=False,
                     prize=PRIORITY_PENALTY.get(j.priority, PRIORITY_PENALTY[5]), name=j.id)
    far = 10**6
    for skills, prof in profiles.items():
        for a in range(len(places)):
            for b in range(len(places)):
                if a == b:
                    continue
                out_of_reach = b >= n and not jobs[b - n].skills <= skills
                m.add_edge(locs[a], locs[b], distance=far if out_of_reach else tenths[a][b],
                           duration=far if out_of_reach else minutes[a][b], profile=prof)
    res = m.solve(stop=MaxRuntime(time_limit_s), seed=seed, display=False)
    assignments: list[Assignment] = []
    travel_sum = 0
    for r in res.best.routes():
        t = crew[r.vehicle_type()]
        order = 0
        for visit in r.schedule():
            if not visit.is_client():
                continue
            order += 1
            j = jobs[int(visit.idx)]  # clients are numbered from 0 in the order they were added
            start = int(visit.start_time)
            assignments.append(Assignment(j.id, t.id, order, start, start + j.duration))
        travel_sum += r.distance()
    served = {a.job_id for a in assignments}
    unassigned = {j.id: "left out by PyVRP" for j in jobs if j.id not in served}
    return DispatchPlan(assignments, unassigned, round(travel_sum / 10, 1), time.perf_counter() - t0,
                        objective=round(res.best.distance_cost() / 10, 1))
