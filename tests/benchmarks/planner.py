"""Benchmark: planner quality against published best-known values, every sample instance.

Rostering: Curtois & Qu instances (``../shared/data/rostering``), CP-SAT, 60 s each on this machine.
Dispatch: Solomon VRPTW instances (``../shared/data/dispatch``), OR-Tools routing, 10 s for 25/50
customers and 60 s for 100. Each solution is re-scored by our independent evaluator (benchmark
objective; every hard rule checked) before it is reported. Also a live re-planning case: an urgent
job into a 40-job, 6-technician day — time to re-plan and assignments changed, with and without the
stability penalty.

Last stdout line: one JSON object, ``instances`` → name, objective, best_known, gap_pct, runtime_s.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.server.planner.dispatch import Job, Technician, plan_dispatch  # noqa: E402
from linecrew.server.planner.roster import parse_curtois, solve_roster  # noqa: E402
from linecrew.server.planner.vrptw import parse_vrplib, solve_vrptw  # noqa: E402

DATA = REPO.parent / "shared" / "data"
ROSTER_BEST = {"Instance1": 607, "Instance2": 828, "Instance4": 1716, "Instance5": 1143, "Instance7": 1056}
DISPATCH_BEST = {"C101.25.3": 191.3, "R105.25.6": 530.5, "RC105.25.4": 411.3, "C101.50.5": 362.4,
                 "C101.100.10": 827.3, "R101.100.20": 1637.7}


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
    instances = []
    for name, best in ROSTER_BEST.items():
        r = solve_roster(parse_curtois(DATA / "rostering" / f"{name}.txt"), time_limit_s=60)
        assert not r.violations, r.violations
        instances.append({"name": name, "kind": "roster", "objective": r.objective, "best_known": best,
                          "gap_pct": round(100 * (r.objective - best) / best, 2) if r.objective is not None else None,
                          "runtime_s": round(r.runtime_s, 1), "bound": r.bound, "status": r.status})
        print(json.dumps(instances[-1]), file=sys.stderr, flush=True)
    for name, best in DISPATCH_BEST.items():
        limit = 60 if ".100." in name else 10
        v = solve_vrptw(parse_vrplib(DATA / "dispatch" / f"{name}.vrptw"), time_limit_s=limit)
        assert not v.violations, v.violations
        instances.append({"name": name, "kind": "dispatch", "objective": v.objective, "best_known": best,
                          "gap_pct": round(100 * (v.objective - best) / best, 2) if v.objective is not None else None,
                          "runtime_s": round(v.runtime_s, 1), "time_limit_s": limit, "vehicles": v.vehicles_used})
        print(json.dumps(instances[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "planner", "cores": 2, "instances": instances, "replanning": replanning_case()}))


if __name__ == "__main__":
    main()
