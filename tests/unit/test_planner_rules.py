"""Planner rules on small hand-made cases: every hard rule broken on purpose is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from linecrew.server.planner.dispatch import Job, Technician, explain, plan_dispatch
from linecrew.server.planner.errors import InfeasiblePlanError, InstanceFormatError
from linecrew.server.planner.roster import evaluate, parse_curtois, solve_roster

ROSTER = """SECTION_HORIZON
14
SECTION_SHIFTS
E,480,
L,480,E
SECTION_STAFF
A,E=14|L=14,4800,960,3,2,2,1
B,E=14|L=1,4800,960,3,2,2,1
SECTION_DAYS_OFF
A,6
B,
SECTION_SHIFT_ON_REQUESTS
A,0,E,5
SECTION_SHIFT_OFF_REQUESTS
B,1,E,4
SECTION_COVER
0,E,1,100,1
1,E,1,100,1
2,L,1,100,1
"""


@pytest.fixture
def inst(tmp_path: Path) -> object:
    p = tmp_path / "tiny.txt"
    p.write_text(ROSTER)
    return parse_curtois(p)


def _row(days: str) -> list[str | None]:
    return [None if c == "." else c for c in days]


@pytest.mark.parametrize(("a", "b", "rule"), [
    ("EE..EE..EE....", "..EE..........", None),
    ("EE.EE.E.......", "..EE..........", "works on a day off"),
    ("LE............", "..EE..........", "may not follow"),
    ("..............", "LL.LL.........", "more than 1 L shifts"),
    ("EEEE..........", "..EE..........", "consecutive shifts > 3"),
    ("EE.E..........", "..EE..........", "consecutive shifts < 2"),
    ("EE.EE.........", ".EE.EE........", "consecutive days off < 2"),
    ("EE..EE..EE....", ".....EE.....EE", "weekends worked > 1"),
    ("..............", "..EE..........", "minutes outside"),
])
def test_each_roster_rule_is_checked(inst: object, a: str, b: str, rule: str | None) -> None:
    ev = evaluate(inst, {"A": _row(a), "B": _row(b)})  # type: ignore[arg-type]
    if rule is None:
        assert ev.feasible, ev.violations
    else:
        assert any(rule in v for v in ev.violations), ev.violations


@pytest.mark.parametrize("fixed", [
    {("A", 6): "E"},  # day off
    {("A", 0): "L", ("A", 1): "E"},  # succession
    {("B", 0): "L", ("B", 3): "L"},  # more than 1 L
    {("A", 0): "E", ("A", 1): "E", ("A", 2): "E", ("A", 3): "E"},  # max consecutive
    {("A", 3): None, ("A", 4): "E", ("A", 5): None},  # min consecutive (inner stretch of 1)
])
def test_solver_refuses_a_forced_violation(inst: object, fixed: dict[tuple[str, int], str | None]) -> None:
    assert solve_roster(inst, time_limit_s=5, fixed=fixed).status == "INFEASIBLE"  # type: ignore[arg-type]


def test_solver_roster_is_feasible_and_scored_by_the_benchmark_objective(inst: object) -> None:
    r = solve_roster(inst, time_limit_s=5)  # type: ignore[arg-type]
    assert r.status == "OPTIMAL" and r.violations == []
    assert r.objective == evaluate(inst, r.roster).objective  # type: ignore[arg-type]


def test_bad_instance_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.txt"
    p.write_text("SECTION_HORIZON\nfourteen\n")
    with pytest.raises(InstanceFormatError, match="not a Curtois"):
        parse_curtois(p)


# ----------------------------------------------------------------------------------------- dispatch
def _crew() -> list[Technician]:
    return [Technician("t1", frozenset({"lv"}), (0, 0), (480, 1020)),
            Technician("t2", frozenset({"lv", "hv"}), (50, 0), (480, 1020))]


def test_skills_windows_and_shifts_are_respected() -> None:
    jobs = [Job("hv-job", (40, 5), 60, (480, 900), frozenset({"hv"})),
            Job("late", (5, 5), 30, (900, 960)), Job("early", (3, 3), 30, (480, 520))]
    plan = plan_dispatch(_crew(), jobs, time_limit_s=1)
    by = plan.technician_of()
    assert by["hv-job"] == "t2" and not plan.unassigned
    for a in plan.assignments:
        j = next(j for j in jobs if j.id == a.job_id)
        assert j.window[0] <= a.start <= j.window[1]
        assert a.end <= 1020


def test_unreachable_and_unskilled_jobs_stay_unassigned_with_a_reason() -> None:
    jobs = [Job("gas", (1, 1), 30, (480, 600), frozenset({"gas"})), Job("past", (1, 1), 30, (100, 200)),
            Job("too-long", (1, 1), 700, (480, 600))]
    plan = plan_dispatch(_crew(), jobs, time_limit_s=1)
    assert "no available technician has skills ['gas']" in plan.unassigned["gas"]
    assert "window" in plan.unassigned["past"] and "shift" in plan.unassigned["too-long"]


def test_pins_to_missing_or_unskilled_technicians_are_infeasible_and_named() -> None:
    crew = _crew()
    crew[1] = Technician("t2", frozenset({"hv"}), (50, 0), (480, 1020), available=False)
    jobs = [Job("a", (1, 1), 30, (480, 600), pinned_to="t2"), Job("b", (1, 1), 30, (480, 600),
                                                                   frozenset({"hv"}), pinned_to="t1")]
    with pytest.raises(InfeasiblePlanError) as info:
        plan_dispatch(crew, jobs)
    assert any("pinned to t2, who is not available" in c for c in info.value.conflicts)
    assert any("pinned to t1, who lacks skills ['hv']" in c for c in info.value.conflicts)
    assert explain(crew, jobs)[0] == info.value.conflicts


def test_low_priority_work_is_dropped_first_when_time_runs_out() -> None:
    crew = [Technician("t1", frozenset(), (0, 0), (480, 600))]
    jobs = [Job("routine", (1, 0), 100, (480, 600), priority=5), Job("outage", (2, 0), 100, (480, 600), priority=1)]
    plan = plan_dispatch(crew, jobs, time_limit_s=1)
    assert plan.technician_of() == {"outage": "t1"} and "priority 5" in plan.unassigned["routine"]


def test_in_progress_work_stays_first_and_replanning_is_stable() -> None:
    crew = [Technician(f"t{i}", frozenset({"lv"}), (10 * i, 0), (480, 1020)) for i in range(4)]
    jobs = [Job(f"j{i}", ((i * 7) % 40, (i * 13) % 30), 45, (480, 1000)) for i in range(14)]
    first = plan_dispatch(crew, jobs, time_limit_s=2)
    tech, route = next(iter(first.by_technician().items()))
    busy = route[0].job_id
    jobs = [j if j.id != busy else Job(j.id, j.location, j.duration, j.window, in_progress_by=tech) for j in jobs]
    urgent = Job("outage", (20, 20), 60, (600, 700), priority=1)
    stable = plan_dispatch(crew, [*jobs, urgent], previous=first, time_limit_s=2, now=600)
    assert stable.by_technician()[tech][0].job_id == busy
    assert "outage" in stable.technician_of()
    assert stable.changed <= 3, f"{stable.changed} assignments moved"


def test_a_technician_dropping_out_moves_only_their_jobs() -> None:
    crew = [Technician(f"t{i}", frozenset(), (10 * i, 0), (480, 1020)) for i in range(3)]
    jobs = [Job(f"j{i}", (i * 3, 5), 40, (480, 1000)) for i in range(9)]
    first = plan_dispatch(crew, jobs, time_limit_s=2)
    gone = [Technician(t.id, t.skills, t.depot, t.shift, available=t.id != "t1") for t in crew]
    second = plan_dispatch(gone, jobs, previous=first, time_limit_s=2)
    moved = {j for j, t in first.technician_of().items() if t == "t1"}
    assert "t1" not in second.by_technician()
    assert second.changed == len(moved)
