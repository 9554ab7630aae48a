"""Solomon-style VRPTW with PyVRP (hybrid genetic search), the benchmark's solver: same instance, same integer
distances (tenths, truncated), same time limit and same evaluator as the OR-Tools routing it is compared with."""

from __future__ import annotations

import time

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
