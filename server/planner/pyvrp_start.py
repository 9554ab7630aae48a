"""PyVRP's routes as the OR-Tools search's start: the two solvers combined for live dispatch.

PyVRP (hybrid genetic search) finds shorter routes than the OR-Tools local search in the same time — on the
Solomon instances and on the live day (``tests/benchmarks/dispatch_live.py``) — but cannot express every rule of
the day. So it solves what it can of a :class:`~linecrew.server.planner.routing.RoutingProblem`: windows,
service times, each vehicle's window (its breaks taken out of the end, so they still fit), overtime at a cost,
the vehicles each job allows (one routing profile per vehicle, other jobs out of reach), optional jobs at their
penalty and alternatives as mutually exclusive groups. OR-Tools then starts from those routes with every rule;
when it cannot take them (a break or drive limit they break), it starts on its own, as before. Used for a fresh
plan of the day; a re-plan starts OR-Tools on its own, which keeps close to the previous plan.
"""

from __future__ import annotations

from linecrew.server.planner.routing import RoutingProblem

FAR = 10**7


def pyvrp_routes(p: RoutingProblem, *, time_limit_s: float, seed: int = 1) -> list[list[int]] | None:
    """Per vehicle, the customer nodes in order; ``None`` when the problem has what this start cannot model
    (work that must come first on a vehicle, crews) or PyVRP found nothing feasible."""
    if p.first_node or p.synchronized or p.n_vehicles == 0:
        return None
    from pyvrp import Model
    from pyvrp.stop import MaxRuntime

    n = len(p.distance)
    depots = set(p.depot_starts) | set(p.depot_ends)
    customers = [i for i in range(n) if i not in depots]
    m = Model()
    locs = [m.add_location(x=0, y=0) for _ in range(n)]
    depot_of = {d: m.add_depot(locs[d], tw_early=p.windows[d][0], tw_late=p.windows[d][1]) for d in sorted(depots)}
    profiles = [m.add_profile(name=f"v{v}") for v in range(p.n_vehicles)]
    for v in range(p.n_vehicles):
        early, late = p.vehicle_windows[v] if p.vehicle_windows else p.windows[p.depot_starts[v]]
        resting = sum(d for _, _, d in p.breaks.get(v, []))
        soft, cost = p.soft_end.get(v, (late, 0))
        m.add_vehicle_type(1, start_depot=depot_of[p.depot_starts[v]], end_depot=depot_of[p.depot_ends[v]],
                           tw_early=early, tw_late=max(early, late - resting),
                           shift_duration=max(0, soft - early - resting), max_overtime=max(0, late - soft),
                           unit_overtime_cost=cost, profile=profiles[v])
    grouped = {node: g for g, group in enumerate(p.alternatives) for node in group}
    groups = [m.add_client_group(required=(p.drop_penalty or [None] * n)[group[0]] is None)
              for group in p.alternatives]
    for c in customers:
        pen = p.drop_penalty[c] if p.drop_penalty is not None else None
        if c in grouped:
            pen = (p.drop_penalty or [None] * n)[p.alternatives[grouped[c]][0]]
        m.add_client(locs[c], service_duration=p.service[c], tw_early=p.windows[c][0], tw_late=p.windows[c][1],
                     required=pen is None and c not in grouped, prize=min(pen or 0, FAR),
                     group=groups[grouped[c]] if c in grouped else None)
    for v, prof in enumerate(profiles):
        for a in range(n):
            for b in range(n):
                if a == b:
                    continue
                reach = b not in p.allowed_vehicles or v in p.allowed_vehicles[b]
                m.add_edge(locs[a], locs[b], distance=p.distance[a][b] if reach else FAR,
                           duration=p.travel[a][b] if reach else FAR, profile=prof)
    res = m.solve(stop=MaxRuntime(time_limit_s), seed=seed, display=False)
    if not res.best.is_feasible():
        return None
    routes: list[list[int]] = [[] for _ in range(p.n_vehicles)]
    for r in res.best.routes():
        routes[r.vehicle_type()] = [customers[int(a.idx)] for a in r.schedule() if a.is_client()]
    return routes
