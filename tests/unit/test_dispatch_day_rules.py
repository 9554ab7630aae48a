"""The rules of a utility's day in live dispatch — crews, riding together, breaks, overtime, drive limits,
certificate expiry, earliest starts, the disruption budget, explanations — each kept by the solver and each,
broken on purpose, caught by the independent evaluator."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from linecrew.server.planner.check import violations
from linecrew.server.planner.dispatch import Assignment, Break, DispatchPlan, Job, Technician, plan_dispatch
from linecrew.server.planner.errors import InfeasiblePlanError
from tests.helpers.dispatch_day import DAY, day, progress

LUNCH = Break(11 * 60 + 30, 13 * 60, 30)


def _tech(tid: str, x: float = 0, skills: str = "lv", **kw: object) -> Technician:
    return Technician(tid, frozenset(skills.split(",")), (x, 0), (8 * 60, 16 * 60), **kw)  # type: ignore[arg-type]


def _ok(plan: DispatchPlan, techs: list[Technician], jobs: list[Job], **kw: object) -> None:
    broken = violations(plan, techs, jobs, day=DAY, **kw)  # type: ignore[arg-type]
    assert not broken, broken


# ----------------------------------------------------------------------------------------- the solver keeps them
def test_a_crew_job_gets_its_people_at_the_same_minute_with_enough_of_them_qualified() -> None:
    techs = [_tech("a", 0, "lv,hv"), _tech("b", 5, "lv"), _tech("c", 10, "lv,hv")]
    jobs = [Job("crew2", (6, 6), 60, (8 * 60, 15 * 60), frozenset({"hv"}), crew=2, qualified=2),
            Job("helped", (3, 3), 45, (8 * 60, 15 * 60), frozenset({"hv"}), crew=2, qualified=1),
            Job("solo", (1, 1), 30, (8 * 60, 15 * 60))]
    plan = plan_dispatch(techs, jobs, time_limit_s=2, day=DAY)
    assert not plan.unassigned, plan.unassigned
    crews = plan.crew_of()
    assert sorted(crews["crew2"]) == ["a", "c"], "both must hold hv"
    assert len(set(crews["helped"])) == 2
    assert len({a.start for a in plan.assignments if a.job_id == "helped"}) == 1
    _ok(plan, techs, jobs)


def test_technicians_riding_together_share_one_route_and_can_crew_a_job_alone() -> None:
    techs = [_tech("lead", 0, "lv,hv"), _tech("apprentice", 30, "lv", rides_with="lead"), _tech("far", 50)]
    jobs = [Job("pair", (5, 5), 60, (8 * 60, 15 * 60), frozenset({"hv"}), crew=2, qualified=1),
            Job("j1", (8, 2), 30, (8 * 60, 15 * 60))]
    plan = plan_dispatch(techs, jobs, time_limit_s=2, day=DAY)
    routes = plan.by_technician()
    assert [a.job_id for a in routes["lead"]] == [a.job_id for a in routes["apprentice"]]
    assert sorted(plan.crew_of()["pair"]) == ["apprentice", "lead"]
    _ok(plan, techs, jobs)


def test_every_working_technician_takes_a_break_inside_its_window_never_during_a_job() -> None:
    techs = [_tech("a", 0, breaks=(LUNCH,)), _tech("b", 20, breaks=(LUNCH,))]
    jobs = [Job(f"j{i}", (i * 3, 4), 60, (8 * 60, 15 * 60)) for i in range(8)]
    plan = plan_dispatch(techs, jobs, time_limit_s=2, day=DAY)
    for tid, route in plan.by_technician().items():
        (start, end), = plan.breaks[tid]
        assert LUNCH.earliest <= start <= LUNCH.latest and end - start == 30
        assert all(end <= a.start or a.end <= start for a in route)
    _ok(plan, techs, jobs)


def test_overtime_is_used_up_to_its_limit_and_only_when_allowed() -> None:
    long = [Job("long", (1, 0), 8 * 60 + 10, (8 * 60, 9 * 60))]  # ends after 16:00 however early it starts
    without = plan_dispatch([_tech("a")], long, time_limit_s=1, day=DAY)
    assert "long" in without.unassigned and "overtime" in without.fixes["long"]
    techs = [_tech("a", overtime_max=30, overtime_cost=5)]
    plan = plan_dispatch(techs, long, time_limit_s=1, day=DAY)
    assert not plan.unassigned and 0 < plan.overtime["a"] <= 30
    _ok(plan, techs, long)


def test_driving_stays_under_the_technicians_daily_maximum() -> None:
    techs = [_tech("a", max_drive=60)]
    jobs = [Job("near", (10, 0), 30, (8 * 60, 15 * 60)), Job("far", (40, 0), 30, (8 * 60, 15 * 60), priority=5)]
    plan = plan_dispatch(techs, jobs, time_limit_s=1, day=DAY)
    assert plan.technician_of() == {"near": "a"} and plan.drive["a"] <= 60
    _ok(plan, techs, jobs)


def test_a_lapsed_certificate_removes_its_skill_and_the_fix_says_renew_it() -> None:
    techs = [_tech("a", 0, "lv,hv", certificates=(("hv", "2026-11-30"),))]
    jobs = [Job("hv-job", (1, 1), 30, (8 * 60, 15 * 60), frozenset({"hv"}))]
    plan = plan_dispatch(techs, jobs, time_limit_s=1, day=DAY)
    assert "certificates lapsed: a" in plan.unassigned["hv-job"]
    assert plan.fixes["hv-job"] == "renew a's hv certificate (lapsed 2026-11-30)"
    valid = plan_dispatch(techs, jobs, time_limit_s=1, day=dt.date(2026, 11, 30))  # the last valid day
    assert valid.technician_of() == {"hv-job": "a"}


def test_a_job_never_starts_before_its_parts_are_ready() -> None:
    techs = [_tech("a")]
    jobs = [Job("parts", (1, 1), 30, (8 * 60, 15 * 60), earliest_start=10 * 60)]
    plan = plan_dispatch(techs, jobs, time_limit_s=1, day=DAY)
    assert plan.assignments[0].start >= 10 * 60
    _ok(plan, techs, jobs)


def test_an_outage_replan_keeps_the_disruption_budget_and_says_what_moved_and_why() -> None:
    techs, jobs = day(4, jobs=18, technicians=5)
    first = plan_dispatch(techs, jobs, time_limit_s=3, day=DAY)
    now = 10 * 60 + 30
    later = [*progress(jobs, first, now),
             Job("OUTAGE", (20, 20), 90, (now, 16 * 60), frozenset({"lv"}), priority=1)]
    plan = plan_dispatch(techs, later, previous=first, now=now, time_limit_s=3, day=DAY, max_moves=3)
    assert "OUTAGE" in plan.technician_of()
    assert sum(1 for m in plan.moved if not m.forced) <= 3
    for m in plan.moved:
        assert m.reason and first.technician_of()[m.job_id] == m.from_technician
    _ok(plan, techs, later, now=now, previous=first, max_moves=3)
    # everyone's day cut short at 11:00: the planned afternoon cannot stay where it was, so no plan keeps a
    # budget of 0 — said so, rather than a plan that breaks it
    short = [replace(t, shift=(t.shift[0], now + 30), overtime_max=0) for t in techs]
    with pytest.raises(InfeasiblePlanError, match="no plan moves at most 0 job"):
        plan_dispatch(short, later, previous=first, now=now, time_limit_s=2, day=DAY, max_moves=0)


def test_every_assignment_says_why_and_every_left_out_job_the_cheapest_change() -> None:
    techs = [_tech("a", 0, "lv,hv")]
    jobs = [Job("hv", (2, 0), 60, (8 * 60, 15 * 60), frozenset({"hv"})), Job("gas", (1, 0), 30, (8 * 60, 9 * 60),
                                                                           frozenset({"gas"})),
            Job("pair", (3, 0), 30, (8 * 60, 15 * 60), frozenset({"hv"}), crew=2, qualified=2)]
    plan = plan_dispatch(techs, jobs, time_limit_s=1, day=DAY)
    assert plan.why["hv"].startswith("a: has hv") and "08:00-15:00" in plan.why["hv"]
    assert plan.fixes["gas"] == "a technician with skills gas on shift"
    assert plan.fixes["pair"] == "a second technician with skills hv"


# ----------------------------------------------------------------------------------------- the evaluator catches
def _valid() -> tuple[list[Technician], list[Job], DispatchPlan]:
    techs = [_tech("a", 0, "lv,hv", breaks=(LUNCH,), max_drive=200, certificates=(("hv", "2027-01-01"),)),
             _tech("b", 10, "lv", breaks=(LUNCH,)), _tech("c", 10, "lv", rides_with="b")]
    jobs = [Job("J1", (5, 0), 60, (8 * 60, 10 * 60), frozenset({"hv"})),
            Job("J2", (10, 5), 60, (8 * 60, 15 * 60), frozenset({"lv"}), crew=2, qualified=1),
            Job("J3", (12, 0), 30, (8 * 60, 15 * 60), earliest_start=10 * 60)]
    plan = DispatchPlan([
        Assignment("J1", "a", 1, 8 * 60 + 10, 9 * 60 + 10),
        Assignment("J2", "b", 1, 9 * 60, 10 * 60), Assignment("J2", "c", 1, 9 * 60, 10 * 60, "helper"),
        Assignment("J3", "b", 2, 10 * 60 + 10, 10 * 60 + 40), Assignment("J3", "c", 2, 10 * 60 + 10, 10 * 60 + 40,
                                                                          "helper")],
        {}, 0.0, 0.0, breaks={"a": [(12 * 60, 12 * 60 + 30)], "b": [(12 * 60, 12 * 60 + 30)],
                              "c": [(12 * 60, 12 * 60 + 30)]})
    return techs, jobs, plan


def test_the_hand_made_plan_is_valid() -> None:
    techs, jobs, plan = _valid()
    _ok(plan, techs, jobs)


def _set(plan: DispatchPlan, job: str, tech: str, **kw: object) -> DispatchPlan:
    return replace(plan, assignments=[replace(a, **kw) if (a.job_id, a.technician_id) == (job, tech) else a
                                      for a in plan.assignments])


BROKEN = {
    "lapsed certificate": (lambda t, j, p: ([replace(t[0], certificates=(("hv", "2026-12-01"),)), *t[1:]], j, p),
                           "lacks ['hv']"),
    "crew short": (lambda t, j, p: (t, j, replace(p, assignments=[a for a in p.assignments
                                                                   if (a.job_id, a.technician_id) != ("J2", "c")])),
                   "needs a crew of 2"),
    "crew not together": (lambda t, j, p: (t, j, _set(p, "J2", "c", start=9 * 60 + 5, end=10 * 60 + 5)),
                          "does not start together"),
    "break missing": (lambda t, j, p: (t, j, replace(p, breaks={**p.breaks, "a": []})), "no 30-min break"),
    "break during a job": (lambda t, j, p: (t, j, replace(p, breaks={**p.breaks, "a": [(9 * 60, 9 * 60 + 30)]})),
                           "during J1"),
    "overtime past its limit": (lambda t, j, p: ([replace(t[0], shift=(8 * 60, 9 * 60 + 15)), *t[1:]], j, p),
                                "past the shift's end"),
    "drive limit": (lambda t, j, p: ([replace(t[0], max_drive=5), *t[1:]], j, p), "min driving, the limit is 5"),
    "earliest start": (lambda t, j, p: (t, j, _set(_set(p, "J3", "b", start=10 * 60 - 5, end=10 * 60 + 25),
                                                   "J3", "c", start=10 * 60 - 5, end=10 * 60 + 25)), "outside 10:00"),
    "riders split": (lambda t, j, p: (t, j, replace(p, assignments=[a for a in p.assignments
                                                                     if (a.job_id, a.technician_id) != ("J3", "c")])),
                     "rides with b but their routes differ"),
    "travel impossible": (lambda t, j, p: (t, j, _set(p, "J1", "a", start=8 * 60 + 1, end=9 * 60 + 1)),
                          "the drive takes 5 min"),
    "pinned moved": (lambda t, j, p: (t, [replace(j[0], pinned_to="b"), *j[1:]], p), "pinned to b"),
    "rostered off": (lambda t, j, p: ([replace(t[0], available=False), *t[1:]], j, p), "a is not available"),
    "job lost": (lambda t, j, p: (t, [*j, Job("J4", (1, 1), 30, (8 * 60, 9 * 60))], p),
                 "J4: neither planned nor reported left out"),
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_rule_broken_on_purpose_is_caught(rule: str) -> None:
    techs, jobs, plan = _valid()
    mutate, expected = BROKEN[rule]
    t2, j2, p2 = mutate(techs, jobs, plan)
    found = violations(p2, t2, j2, day=DAY)
    assert any(expected in v for v in found), (rule, found)


def test_a_budget_broken_on_purpose_is_caught() -> None:
    techs, jobs, plan = _valid()
    moved = replace(plan, assignments=[replace(a, technician_id="a") if a.job_id == "J3" and a.role == "lead" else a
                                       for a in plan.assignments if not (a.job_id == "J3" and a.role == "helper")])
    found = violations(moved, techs, jobs, day=DAY, previous=plan, max_moves=0)
    assert any("the disruption budget is 0" in v for v in found), found


def test_in_progress_work_must_stay_first() -> None:
    techs, jobs, plan = _valid()
    jobs = [j if j.id != "J3" else replace(j, in_progress_by="b") for j in jobs]
    found = violations(plan, techs, jobs, day=DAY)
    assert any("in progress by b but not first" in v for v in found), found


def test_pyvrp_starts_the_search_with_routes_that_respect_who_may_do_what() -> None:
    import linecrew.server.planner.dispatch as dispatch
    from linecrew.server.planner.pyvrp_start import pyvrp_routes

    techs = [_tech("a", 0, "lv,hv", breaks=(LUNCH,)), _tech("b", 20, "lv")]
    jobs = [Job(f"j{i}", (i * 2.0, 3.0), 45, (8 * 60, 15 * 60), frozenset({"hv"}) if i % 3 == 0 else frozenset())
            for i in range(9)]
    model = dispatch._Model(dispatch.units_of(techs, DAY), jobs, None, dispatch.Euclidean(), 60, None)
    routes = pyvrp_routes(model.problem, time_limit_s=1)
    assert routes is not None and sorted(n for r in routes for n in r) == list(range(2, 11))
    for v, route in enumerate(routes):
        assert all(v in model.problem.allowed_vehicles[n] for n in route), "an hv job only on a's route"
    crews = replace(model.problem, synchronized=[[2, 3]])
    assert pyvrp_routes(crews, time_limit_s=1) is None, "crews are OR-Tools' to place"
    plan = plan_dispatch(techs, jobs, time_limit_s=2, day=DAY)
    _ok(plan, techs, jobs)
