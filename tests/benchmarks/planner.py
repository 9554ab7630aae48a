"""Benchmark: planner quality against published best-known values, every sample instance.

Rostering: Curtois & Qu instances (``../shared/data/rostering``), CP-SAT, 60 s each on this machine.
Dispatch: Solomon VRPTW instances (``../shared/data/dispatch``, plus the 25/50-customer instances inside each
100-customer file and generated ones with tight/wide windows, clustered/random customers), PyVRP (adopted:
hybrid genetic search) against the OR-Tools routing it replaced (the reference, same run, same limit, same
evaluator), 10 s for 25/50 customers and 60 s for 100;
``feasible`` says every customer was served within the vehicle limit. Each solution is re-scored by our
independent evaluator (benchmark objective; every hard rule checked) before it is reported. Also a live
re-planning case: an urgent job into a 40-job, 6-technician day — time to re-plan and assignments changed,
with and without the stability penalty.

Last stdout line: one JSON object, ``instances`` → name, objective, feasible, best_known, gap_pct, runtime_s,
and for dispatch reference_solver, reference_objective, vs_reference_pct.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.server.planner.dispatch import Job, Technician, plan_dispatch  # noqa: E402
from linecrew.server.planner.roster import parse_curtois, solve_roster  # noqa: E402
from linecrew.server.planner.vrptw import VrptwInstance, parse_vrplib, solve_vrptw  # noqa: E402

DATA = REPO.parent / "shared" / "data"
ROSTER_BEST = {"Instance1": 607, "Instance2": 828, "Instance4": 1716, "Instance5": 1143, "Instance7": 1056}
DISPATCH_BEST = {"C101.25.3": 191.3, "R105.25.6": 530.5, "RC105.25.4": 411.3, "C101.50.5": 362.4,
                 "C101.100.10": 827.3, "R101.100.20": 1637.7}
DERIVED_BEST = {"R101.25": 617.1, "R101.50": 1044.0}  # Solomon's published best for the first 25/50 customers


def dispatch_instances() -> list[tuple[VrptwInstance, float | None]]:
    """The sample files, the 25/50-customer instances inside each 100-customer one, and generated ones (tight
    and wide windows, clustered and random customers) that no solver was tuned on."""
    out: list[tuple[VrptwInstance, float | None]] = []
    seen = set()
    for name, best in DISPATCH_BEST.items():
        inst = parse_vrplib(DATA / "dispatch" / f"{name}.vrptw")
        out.append((inst, best))
        seen.add((name.split(".")[0], len(inst.coords) - 1))
        if len(inst.coords) - 1 == 100:
            for n in (25, 50):
                if (name.split(".")[0], n) not in seen:
                    sub = inst.first(n)
                    out.append((sub, DERIVED_BEST.get(sub.name)))
                    seen.add((name.split(".")[0], n))
    out += [(generated(seed, clustered, tight), None) for seed, clustered, tight in
            ((11, True, True), (12, False, True), (13, True, False), (14, False, False))]
    return out


def generated(seed: int, clustered: bool, tight: bool, n: int = 50) -> VrptwInstance:
    rnd = random.Random(seed)
    centres = [(rnd.uniform(10, 90), rnd.uniform(10, 90)) for _ in range(5)]
    coords = [(50.0, 50.0)]
    for _ in range(n):
        if clustered:
            cx, cy = rnd.choice(centres)
            coords.append((min(100, max(0, rnd.gauss(cx, 6))), min(100, max(0, rnd.gauss(cy, 6)))))
        else:
            coords.append((rnd.uniform(0, 100), rnd.uniform(0, 100)))
    horizon = 1000
    windows = [(0, horizon)]
    for x, y in coords[1:]:
        reach = math.hypot(x - 50, y - 50)
        width = rnd.uniform(30, 60) if tight else rnd.uniform(200, 500)
        start = rnd.uniform(reach, horizon - reach - width - 10)
        windows.append((int(start), int(start + width)))
    name = f"GEN-{'C' if clustered else 'R'}-{'tight' if tight else 'wide'}-{seed}.{n}"
    return VrptwInstance(name, 25, 200, coords, [0] + [rnd.randint(5, 30) for _ in range(n)], windows,
                         [0] + [10] * n)


def compare(inst: VrptwInstance, best: float | None, limit: float) -> dict[str, object]:
    """PyVRP (adopted) and OR-Tools routing (the former solver, the reference) on the same instance, limit and
    evaluator."""
    ours = solve_vrptw(inst, time_limit_s=limit, solver="pyvrp")
    ref = solve_vrptw(inst, time_limit_s=limit, solver="ortools")

    def ok(r: object) -> bool:
        return r.objective is not None and not r.violations  # type: ignore[attr-defined]

    def gap(v: float | None) -> float | None:
        return round(100 * (v - best) / best, 2) if best and v is not None else None

    return {"name": inst.name, "kind": "dispatch", "customers": len(inst.coords) - 1,
            "objective": ours.objective if ok(ours) else None, "feasible": ok(ours), "best_known": best,
            "gap_pct": gap(ours.objective) if ok(ours) else None, "runtime_s": round(ours.runtime_s, 1),
            "time_limit_s": limit, "vehicles": ours.vehicles_used, "violations": ours.violations[:3],
            "solver": "pyvrp " + _version("pyvrp"), "reference_solver": "ortools " + _version("ortools"),
            "reference_objective": ref.objective if ok(ref) else None, "reference_feasible": ok(ref),
            "reference_gap_pct": gap(ref.objective) if ok(ref) else None,
            "vs_reference_pct": round(100 * (ours.objective - ref.objective) / ref.objective, 2)
            if ok(ours) and ok(ref) else None}


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


def replanning_case() -> dict[str, object]:
    rnd = random.Random(7)
    crew = [Technician(f"t{i}", frozenset({"lv", "hv"} if i % 2 else {"lv"}), (rnd.uniform(0, 60), rnd.uniform(0, 60)),
                       (480, 1020)) for i in range(6)]
    jobs = [Job(f"j{i}", (rnd.uniform(0, 60), rnd.uniform(0, 60)), rnd.choice([30, 45, 60]), (480, 960),
                frozenset({"hv"}) if i % 5 == 0 else frozenset(), priority=rnd.randint(2, 5)) for i in range(40)]
    first = plan_dispatch(crew, jobs, time_limit_s=5)
    urgent = Job("outage", (30, 30), 90, (600, 720), priority=1)
    t0 = time.perf_counter()
    stable = plan_dispatch(crew, [*jobs, urgent], previous=first, time_limit_s=2, now=600)
    replan_s = time.perf_counter() - t0
    free = plan_dispatch(crew, [*jobs, urgent], previous=first, time_limit_s=2, now=600, change_penalty=0)
    return {"jobs": 41, "technicians": 6, "replan_s": round(replan_s, 2), "changed": stable.changed,
            "changed_without_stability": free.changed, "urgent_assigned": "outage" in stable.technician_of()}


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} missing")
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None  # roster | dispatch
    instances = []
    for name, best in ROSTER_BEST.items() if only in (None, "roster") else ():
        r = solve_roster(parse_curtois(DATA / "rostering" / f"{name}.txt"), time_limit_s=60)
        assert not r.violations, r.violations
        instances.append({"name": name, "kind": "roster", "objective": r.objective, "best_known": best,
                          "gap_pct": round(100 * (r.objective - best) / best, 2) if r.objective is not None else None,
                          "runtime_s": round(r.runtime_s, 1), "bound": r.bound, "status": r.status})
        print(json.dumps(instances[-1]), file=sys.stderr, flush=True)
    for inst, best in dispatch_instances() if only in (None, "dispatch") else ():
        limit = 60 if len(inst.coords) > 60 else 10
        instances.append(compare(inst, best, limit))
        print(json.dumps(instances[-1]), file=sys.stderr, flush=True)
    summary = [i for i in instances if i["kind"] == "dispatch"]
    print(json.dumps({"benchmark": "planner", "cores": 2, "only": only, "instances": instances,
                      "dispatch_infeasible": [i["name"] for i in summary if not i["feasible"]],
                      "dispatch_worse_than_reference_by_0_5_pct": [
                          i["name"] for i in summary if (i["vs_reference_pct"] or 0.0) > 0.5],
                      "replanning": replanning_case()}))


if __name__ == "__main__":
    main()
