"""One narrow interface over the OR-Tools routing library, shared by the benchmark and live dispatch.

A ``RoutingProblem`` is plain integers: nodes (depots and jobs), per-vehicle start/end nodes, arc
distances and travel times, service times, time windows, optional capacity, optional per-node drop
penalties (a job may stay unassigned at that cost; ``None`` means it must be served), allowed
vehicles per node (skills, pins), nodes that must come first on a vehicle (work in progress), and a
penalty for moving a job away from the vehicle it had in the previous plan (plan stability).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortools.constraint_solver import pywrapcp, routing_enums_pb2


@dataclass
class RoutingProblem:
    n_vehicles: int
    depot_starts: list[int]
    depot_ends: list[int]
    distance: list[list[int]]
    travel: list[list[int]]
    service: list[int]
    windows: list[tuple[int, int]]
    demand: list[int] | None = None
    capacity: int | None = None
    drop_penalty: list[int | None] | None = None
    allowed_vehicles: dict[int, list[int]] = field(default_factory=dict)
    vehicle_windows: list[tuple[int, int]] | None = None
    first_node: dict[int, int] = field(default_factory=dict)  # vehicle → node it must visit first
    previous_vehicle: dict[int, int] = field(default_factory=dict)  # node → vehicle in the previous plan
    change_penalty: int = 0
    # vehicle → breaks (earliest start, latest start, duration), taken between visits, never during one
    breaks: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    soft_end: dict[int, tuple[int, int]] = field(default_factory=dict)  # vehicle → (end without cost, cost/unit)
    soft_start: dict[int, tuple[int, int]] = field(default_factory=dict)  # node → (start without cost, cost/unit)
    max_travel: dict[int, int] = field(default_factory=dict)  # vehicle → most travel time on its route
    # nodes served together: all or none, at the same start time (a crew on one job, each on their own vehicle)
    synchronized: list[list[int]] = field(default_factory=list)
    # nodes that are alternatives for one job: at most one is served, the first node's drop penalty if none
    alternatives: list[list[int]] = field(default_factory=list)
    # disruption budget: at most ``max_moves`` of these jobs (each: its alternative nodes, its previous vehicle)
    # may end on another vehicle or unserved
    moves: list[tuple[list[int], int]] = field(default_factory=list)
    max_moves: int | None = None


@dataclass
class RoutingSolution:
    found: bool
    routes: list[list[int]]  # per vehicle, customer nodes in order
    arrivals: dict[int, int]  # node → service start time
    unassigned: list[int]
    cost: int
    ends: list[int] = field(default_factory=list)  # per vehicle, time back at its end depot
    breaks: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # vehicle → (start, end) of each break


def solve_routing(p: RoutingProblem, *, time_limit_s: float, initial: list[list[int]] | None = None
                  ) -> RoutingSolution:
    n = len(p.distance)
    manager = pywrapcp.RoutingIndexManager(n, p.n_vehicles, p.depot_starts, p.depot_ends)
    routing = pywrapcp.RoutingModel(manager)
    depots = set(p.depot_starts) | set(p.depot_ends)
    customers = [i for i in range(n) if i not in depots]

    for v in range(p.n_vehicles):
        def arc(i: int, j: int, v: int = v) -> int:
            a, b = manager.IndexToNode(i), manager.IndexToNode(j)
            moved = p.change_penalty if p.previous_vehicle.get(b, v) != v else 0
            return p.distance[a][b] + moved

        routing.SetArcCostEvaluatorOfVehicle(routing.RegisterTransitCallback(arc), v)

    def transit(i: int, j: int) -> int:
        a, b = manager.IndexToNode(i), manager.IndexToNode(j)
        return p.service[a] + p.travel[a][b]

    t_cb = routing.RegisterTransitCallback(transit)
    horizon = max(b for _, b in p.windows)
    if p.vehicle_windows:
        horizon = max(horizon, max(b for _, b in p.vehicle_windows))
    routing.AddDimension(t_cb, horizon, horizon, False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    for node in customers:
        a, b = p.windows[node]
        time_dim.CumulVar(manager.NodeToIndex(node)).SetRange(a, b)
    for v in range(p.n_vehicles):
        a, b = p.vehicle_windows[v] if p.vehicle_windows else p.windows[p.depot_starts[v]]
        time_dim.CumulVar(routing.Start(v)).SetRange(a, b)
        time_dim.CumulVar(routing.End(v)).SetRange(a, b)
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.Start(v)))
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.End(v)))

    if p.demand is not None and p.capacity is not None:
        demand = p.demand

        def dem(i: int) -> int:
            return demand[manager.IndexToNode(i)]

        d_cb = routing.RegisterUnaryTransitCallback(dem)
        routing.AddDimensionWithVehicleCapacity(d_cb, 0, [p.capacity] * p.n_vehicles, True, "load")

    for node, vehicles in p.allowed_vehicles.items():
        droppable = p.drop_penalty is not None and p.drop_penalty[node] is not None
        routing.VehicleVar(manager.NodeToIndex(node)).SetValues([-1, *vehicles] if droppable else vehicles)
    for v, node in p.first_node.items():
        routing.NextVar(routing.Start(v)).SetValues([manager.NodeToIndex(node)])
    grouped = {n for group in p.alternatives for n in group}
    if p.drop_penalty is not None:
        for node in customers:
            pen = p.drop_penalty[node]
            if pen is not None and node not in grouped:
                routing.AddDisjunction([manager.NodeToIndex(node)], pen)
        for group in p.alternatives:
            pen = p.drop_penalty[group[0]]
            routing.AddDisjunction([manager.NodeToIndex(n) for n in group], pen if pen is not None else 10**12, 1)
    solver = routing.solver()
    for group in p.synchronized:
        lead = manager.NodeToIndex(group[0])
        for other in group[1:]:
            idx = manager.NodeToIndex(other)
            solver.Add(routing.ActiveVar(idx) == routing.ActiveVar(lead))
            solver.Add(time_dim.CumulVar(idx) == time_dim.CumulVar(lead))
    break_vars: dict[int, list[pywrapcp.IntervalVar]] = {}
    for v, spans in p.breaks.items():
        break_vars[v] = [solver.FixedDurationIntervalVar(a, b, d, False, f"break-{v}-{k}")
                         for k, (a, b, d) in enumerate(spans)]
        time_dim.SetBreakIntervalsOfVehicle(break_vars[v], v, p.service)
        for b in break_vars[v]:
            routing.AddIntervalToAssignment(b)
    for v, (end, cost) in p.soft_end.items():
        time_dim.SetCumulVarSoftUpperBound(routing.End(v), end, cost)
    for node, (target, cost) in p.soft_start.items():
        time_dim.SetCumulVarSoftUpperBound(manager.NodeToIndex(node), target, cost)
    if p.max_travel:
        def drive(i: int, j: int) -> int:
            return p.travel[manager.IndexToNode(i)][manager.IndexToNode(j)]

        limits = [p.max_travel.get(v, horizon * 4) for v in range(p.n_vehicles)]
        routing.AddDimensionWithVehicleCapacity(routing.RegisterTransitCallback(drive), 0, limits, True, "drive")
    if p.max_moves is not None and p.moves:
        moved = []
        for nodes, v in p.moves:
            kept = [solver.IsEqualCstVar(routing.VehicleVar(manager.NodeToIndex(n)), v) for n in nodes]
            moved.append(1 - solver.Max(kept) if len(kept) > 1 else 1 - kept[0])
        solver.Add(solver.Sum(moved) <= p.max_moves)

    params = pywrapcp.DefaultRoutingSearchParameters()
    # SAVINGS measured best on R101.100.20 (1660 vs 1676 path-cheapest-arc, 1686 parallel insertion, 60 s)
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.SAVINGS
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(int(time_limit_s * 1000))
    t0 = time.perf_counter()
    routing.CloseModelWithParameters(params)
    start = routing.ReadAssignmentFromRoutes(initial, True) if initial else None
    sol = routing.SolveFromAssignmentWithParameters(start, params) if start else routing.SolveWithParameters(params)
    optional = p.drop_penalty is not None and all(p.drop_penalty[c] is not None for c in customers)
    # The construction heuristic can fail on side constraints (crews, work in progress, budgets): then another,
    # and last everything left out, always a start when every job may be; the search goes on from there.
    fallbacks = ["LOCAL_CHEAPEST_INSERTION", *(["ALL_UNPERFORMED"] if optional else [])]
    for strategy in fallbacks:
        if sol is not None:
            break
        params.first_solution_strategy = getattr(routing_enums_pb2.FirstSolutionStrategy, strategy)
        params.time_limit.FromMilliseconds(max(100, int((time_limit_s - (time.perf_counter() - t0)) * 1000)))
        sol = routing.SolveWithParameters(params)
    if sol is None:
        return RoutingSolution(False, [[] for _ in range(p.n_vehicles)], {}, customers, 0)
    routes, arrivals, served, ends = [], {}, set(), []
    for v in range(p.n_vehicles):
        idx, route = sol.Value(routing.NextVar(routing.Start(v))), []
        while not routing.IsEnd(idx):
            node = manager.IndexToNode(idx)
            route.append(node)
            served.add(node)
            arrivals[node] = sol.Min(time_dim.CumulVar(idx))
            idx = sol.Value(routing.NextVar(idx))
        routes.append(route)
        ends.append(sol.Min(time_dim.CumulVar(routing.End(v))))
    breaks = {v: [(sol.StartValue(b), sol.StartValue(b) + sol.DurationValue(b)) for b in bs if sol.PerformedValue(b)]
              for v, bs in break_vars.items()}
    return RoutingSolution(True, routes, arrivals, [c for c in customers if c not in served], sol.ObjectiveValue(),
                           ends, breaks)
