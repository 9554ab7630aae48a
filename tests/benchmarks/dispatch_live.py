"""Benchmark: the live dispatch on a 60-job, 12-technician day with crews, breaks, skills and certificates,
overtime, drive limits, a pair riding together, parts-ready starts and a pinned job (``tests/helpers/
dispatch_day.py``, one seed per run, several seeds).

For each day: plan it; at 10:30 insert an outage and re-plan with a disruption budget; at 12:00 a technician
drops out and the day is re-planned again. Reported per step: time to plan, jobs assigned and left out, jobs
moved (and how many of them were forced by the drop-out), the outage placed, and every hard rule checked by the
independent evaluator (``linecrew.server.planner.check``). Also the first plan three ways (``solvers``): OR-Tools
started from PyVRP's routes (live dispatch's default), OR-Tools alone, and PyVRP alone on the lighter day it can
express. The reference, in the same run: the former live
dispatch's model (no crews, breaks, overtime, drive limits, certificates, riding together or earliest starts)
on the same day, judged by the same evaluator against the day's real rules.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.server.planner.check import violations  # noqa: E402
from linecrew.server.planner.dispatch import DispatchPlan, Job, Technician, plan_dispatch  # noqa: E402
from linecrew.server.planner.errors import InfeasiblePlanError  # noqa: E402
from tests.helpers.dispatch_day import DAY, day, progress, without_rules  # noqa: E402

OUTAGE_AT, DROPOUT_AT = 10 * 60 + 30, 12 * 60


def run_day(seed: int, limit: float, budget: int, rules: bool = True) -> dict[str, object]:
    techs, jobs = day(seed)
    real_techs, real_jobs = techs, jobs
    if not rules:
        techs, jobs = without_rules(techs, jobs)
    steps: dict[str, object] = {}

    def step(name: str, ts: list[Technician], js: list[Job], real_ts: list[Technician], real_js: list[Job],
             **kw: object) -> DispatchPlan:
        t0 = time.perf_counter()
        try:
            plan = plan_dispatch(ts, js, time_limit_s=limit, day=DAY, **kw)  # type: ignore[arg-type]
        except InfeasiblePlanError as e:  # reported, never a crash: the next step re-plans without a budget
            steps[name] = {"error": str(e)}
            kw.pop("max_moves", None)
            plan = plan_dispatch(ts, js, time_limit_s=limit, day=DAY, **kw)  # type: ignore[arg-type]
        took = time.perf_counter() - t0
        broken = violations(plan, real_ts, real_js, day=DAY, now=kw.get("now"),  # type: ignore[arg-type]
                            previous=kw.get("previous"), max_moves=kw.get("max_moves"))  # type: ignore[arg-type]
        steps[name] = {**steps.get(name, {}), "plan_s": round(took, 2), "assigned": len(plan.technician_of()),
                       "left_out": len(plan.unassigned), "moved": sum(1 for m in plan.moved if not m.forced),
                       "moved_forced": sum(1 for m in plan.moved if m.forced), "violations": len(broken),
                       "violation_examples": broken[:3], "travel": plan.travel}
        return plan

    first = step("plan", techs, jobs, real_techs, real_jobs)
    outage = Job("OUTAGE", (20.0, 20.0), 90, (OUTAGE_AT, 16 * 60), frozenset({"lv"}), priority=1, title="outage")
    js2 = [*progress(jobs, first, OUTAGE_AT), outage]
    rjs2 = [*progress(real_jobs, first, OUTAGE_AT), outage]
    second = step("outage", techs, js2, real_techs, rjs2, previous=first, now=OUTAGE_AT, max_moves=budget)
    steps["outage"]["outage_assigned"] = "OUTAGE" in second.technician_of()  # type: ignore[index]
    pinned = {j.pinned_to for j in jobs}
    gone = next(t.id for t in techs if t.id in second.by_technician() and not t.rides_with and t.id != "T00"
                and t.id not in pinned)
    ts3 = [replace(t, available=t.id != gone) for t in techs]
    rts3 = [replace(t, available=t.id != gone) for t in real_techs]
    js3 = progress(js2, second, DROPOUT_AT)
    js3 = [replace(j, in_progress_by=None) if j.in_progress_by == gone else j for j in js3]
    rjs3 = progress(rjs2, second, DROPOUT_AT)
    rjs3 = [replace(j, in_progress_by=None) if j.in_progress_by == gone else j for j in rjs3]
    step("dropout", ts3, js3, rts3, rjs3, previous=second, now=DROPOUT_AT, max_moves=budget)
    steps["dropout"]["technician"] = gone  # type: ignore[index]
    return {"seed": seed, **steps}


def solvers_compared(seed: int, limit: float) -> dict[str, object]:
    """The first plan of the day three ways, same limit: OR-Tools started from PyVRP's routes (what live dispatch
    does), OR-Tools alone, and PyVRP alone on the rules it can express (no crews, breaks, riders, drive limits or
    pins — so it is judged against that lighter day)."""
    import linecrew.server.planner.dispatch as dispatch
    from linecrew.server.planner.vrptw_pyvrp import solve_day_pyvrp

    techs, jobs = day(seed)
    out: dict[str, object] = {"seed": seed}
    for name, share in (("combined", dispatch.PYVRP_SHARE), ("ortools_alone", 0.0)):
        saved, dispatch.PYVRP_SHARE = dispatch.PYVRP_SHARE, share
        try:
            plan = plan_dispatch(techs, jobs, time_limit_s=limit, day=DAY)
        finally:
            dispatch.PYVRP_SHARE = saved
        out[name] = {"assigned": len(plan.technician_of()), "travel": plan.travel,
                     "violations": len(violations(plan, techs, jobs, day=DAY))}
    light_t, light_j = without_rules(techs, jobs)
    light_j = [replace(j, pinned_to=None) for j in light_j]
    for name, solve in (("pyvrp_light_day", lambda: solve_day_pyvrp(light_t, light_j, day=DAY, time_limit_s=limit)),
                        ("dispatch_light_day", lambda: plan_dispatch(light_t, light_j, time_limit_s=limit, day=DAY))):
        plan = solve()
        out[name] = {"assigned": len(plan.technician_of()), "travel": plan.travel,
                     "violations_of_the_light_day": len(violations(plan, light_t, light_j, day=DAY))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--budget", type=int, default=5, help="disruption budget: jobs a re-plan may move")
    args = ap.parse_args()
    days, reference = [], []
    for seed in range(1, args.seeds + 1):
        days.append(run_day(seed, args.time_limit, args.budget))
        print(json.dumps(days[-1]), file=sys.stderr, flush=True)
        reference.append(run_day(seed, args.time_limit, args.budget, rules=False))
        print(json.dumps({"reference": reference[-1]}), file=sys.stderr, flush=True)

    compared = [solvers_compared(seed, args.time_limit) for seed in range(1, args.seeds + 1)]
    print(json.dumps({"solvers": compared}), file=sys.stderr, flush=True)

    def total(rows: list[dict[str, object]], key: str) -> int:
        return sum(int(r[s][key]) for r in rows for s in ("plan", "outage", "dropout"))  # type: ignore[index]

    def p50(rows: list[dict[str, object]], s: str) -> float:
        return round(statistics.median(float(r[s]["plan_s"]) for r in rows), 2)  # type: ignore[index]

    print(json.dumps({
        "benchmark": "dispatch_live", "cores": 2, "jobs": 60, "technicians": 12, "days": len(days),
        "time_limit_s": args.time_limit, "disruption_budget": args.budget,
        "violations": total(days, "violations"), "reference_violations": total(reference, "violations"),
        "plan_s_p50": p50(days, "plan"), "outage_replan_s_p50": p50(days, "outage"),
        "dropout_replan_s_p50": p50(days, "dropout"),
        "outage_assigned": all(d["outage"]["outage_assigned"] for d in days),  # type: ignore[index]
        "budget_errors": sum(1 for d in days for s in ("outage", "dropout") if "error" in d[s]),  # type: ignore[operator]
        "moved_max": max(int(d[s]["moved"]) for d in days for s in ("outage", "dropout")),  # type: ignore[index]
        "assigned_p50": statistics.median(int(d["plan"]["assigned"]) for d in days),  # type: ignore[index]
        "reference_assigned_p50": statistics.median(int(d["plan"]["assigned"]) for d in reference),  # type: ignore[index]
        "solvers": compared, "days_detail": days, "reference_detail": reference}))


if __name__ == "__main__":
    main()
