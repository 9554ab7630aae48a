"""Rostering: who works which shift over a horizon, with OR-Tools CP-SAT.

The model and its objective follow the Curtois & Qu shift scheduling benchmark
(schedulingbenchmarks.org), so plan quality compares with published results:

hard rules — at most one shift a day; forbidden successions (shift B may not follow shift A on the
next day); per-employee maximum of each shift type; minimum and maximum total minutes; maximum
consecutive shifts; minimum consecutive shifts and minimum consecutive days off (stretches touching
the horizon's ends are exempt, as in the benchmark); maximum working weekends; days off.
soft — shift-on requests not met, shift-off requests not met, cover below or above requirement, each
with its weight.

``evaluate`` scores any roster with that objective and lists every hard-rule violation, independently
of the solver; the solver's result is checked with it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortools.sat.python import cp_model

from linecrew.server.planner.errors import InstanceFormatError


@dataclass(frozen=True)
class ShiftType:
    id: str
    minutes: int
    cannot_follow: frozenset[str]  # shifts that may not be worked the day after this one


@dataclass(frozen=True)
class Staff:
    id: str
    max_shifts: dict[str, int]
    max_minutes: int
    min_minutes: int
    max_consecutive: int
    min_consecutive: int
    min_days_off: int
    max_weekends: int


@dataclass(frozen=True)
class Request:
    staff: str
    day: int
    shift: str
    weight: int


@dataclass(frozen=True)
class Cover:
    day: int
    shift: str
    requirement: int
    under_weight: int
    over_weight: int


@dataclass
class RosterInstance:
    name: str
    days: int
    shifts: dict[str, ShiftType]
    staff: dict[str, Staff]
    days_off: dict[str, set[int]]
    on_requests: list[Request]
    off_requests: list[Request]
    cover: list[Cover]


Roster = dict[str, list[str | None]]  # staff id → shift id (or None) per day


# ------------------------------------------------------------------------------------------ parsing
def parse_curtois(path: Path | str) -> RosterInstance:
    path = Path(path)
    sections: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("SECTION_"):
            current = line
            sections[current] = []
        elif current is None:
            raise InstanceFormatError(f"{path}: data before any SECTION_ header: {line!r}")
        else:
            sections[current].append(line)
    try:
        days = int(sections["SECTION_HORIZON"][0])
        shifts = {}
        for line in sections["SECTION_SHIFTS"]:
            sid, minutes, *rest = line.split(",")
            shifts[sid] = ShiftType(sid, int(minutes), frozenset(x for x in (rest[0] if rest else "").split("|") if x))
        staff = {}
        for line in sections["SECTION_STAFF"]:
            sid, maxs, maxm, minm, maxc, minc, mindo, maxw = line.split(",")
            caps = {k: int(v) for k, v in (p.split("=") for p in maxs.split("|") if p)}
            staff[sid] = Staff(sid, caps, int(maxm), int(minm), int(maxc), int(minc), int(mindo), int(maxw))
        days_off: dict[str, set[int]] = {s: set() for s in staff}
        for line in sections.get("SECTION_DAYS_OFF", []):
            sid, *ds = line.split(",")
            days_off[sid].update(int(d) for d in ds if d)
        on = [_request(line) for line in sections.get("SECTION_SHIFT_ON_REQUESTS", [])]
        off = [_request(line) for line in sections.get("SECTION_SHIFT_OFF_REQUESTS", [])]
        cover = []
        for line in sections["SECTION_COVER"]:
            d, s, req, under, over = line.split(",")
            cover.append(Cover(int(d), s, int(req), int(under), int(over)))
    except (KeyError, ValueError, IndexError) as e:
        raise InstanceFormatError(f"{path}: not a Curtois & Qu instance ({type(e).__name__}: {e})") from e
    return RosterInstance(re.sub(r"\.txt$", "", path.name), days, shifts, staff, days_off, on, off, cover)


def _request(line: str) -> Request:
    sid, day, shift, weight = line.split(",")
    return Request(sid, int(day), shift, int(weight))


# ---------------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    objective: int
    violations: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.violations


def evaluate(inst: RosterInstance, roster: Roster) -> Evaluation:
    """The benchmark's objective, plus every hard rule the roster breaks (empty list: feasible)."""
    v: list[str] = []
    for sid, st in inst.staff.items():
        row = roster.get(sid, [None] * inst.days)
        work = [s is not None for s in row]
        for d, s in enumerate(row):
            if s is not None and s not in inst.shifts:
                v.append(f"{sid} day {d}: unknown shift {s}")
            if s is not None and d in inst.days_off[sid]:
                v.append(f"{sid} day {d}: works on a day off")
            if d + 1 < inst.days and s is not None and row[d + 1] in inst.shifts[s].cannot_follow:
                v.append(f"{sid} day {d + 1}: shift {row[d + 1]} may not follow {s}")
        for t, cap in st.max_shifts.items():
            if sum(1 for s in row if s == t) > cap:
                v.append(f"{sid}: more than {cap} {t} shifts")
        minutes = sum(inst.shifts[s].minutes for s in row if s in inst.shifts)
        if not st.min_minutes <= minutes <= st.max_minutes:
            v.append(f"{sid}: {minutes} minutes outside [{st.min_minutes}, {st.max_minutes}]")
        for start, length, worked in _stretches(work):
            if worked and length > st.max_consecutive:
                v.append(f"{sid} day {start}: {length} consecutive shifts > {st.max_consecutive}")
            inner = start > 0 and start + length < inst.days
            if inner and worked and length < st.min_consecutive:
                v.append(f"{sid} day {start}: {length} consecutive shifts < {st.min_consecutive}")
            if inner and not worked and length < st.min_days_off:
                v.append(f"{sid} day {start}: {length} consecutive days off < {st.min_days_off}")
        weekends = sum(1 for w in range(inst.days // 7) if work[7 * w + 5] or work[7 * w + 6])
        if weekends > st.max_weekends:
            v.append(f"{sid}: {weekends} weekends worked > {st.max_weekends}")
    obj = 0
    for r in inst.on_requests:
        if roster.get(r.staff, [None] * inst.days)[r.day] != r.shift:
            obj += r.weight
    for r in inst.off_requests:
        if roster.get(r.staff, [None] * inst.days)[r.day] == r.shift:
            obj += r.weight
    for c in inst.cover:
        n = sum(1 for row in roster.values() if row[c.day] == c.shift)
        obj += c.under_weight * max(0, c.requirement - n) + c.over_weight * max(0, n - c.requirement)
    return Evaluation(obj, v)


def _stretches(work: list[bool]) -> list[tuple[int, int, bool]]:
    out, start = [], 0
    for d in range(1, len(work) + 1):
        if d == len(work) or work[d] != work[start]:
            out.append((start, d - start, work[start]))
            start = d
    return out


# ------------------------------------------------------------------------------------------- solving
@dataclass
class RosterResult:
    name: str
    objective: int | None
    bound: float | None  # a proven lower bound, when one is known
    status: str
    runtime_s: float
    roster: Roster
    violations: list[str]


def solve_roster(inst: RosterInstance, *, time_limit_s: float = 60.0, workers: int = 8,
                 fixed: dict[tuple[str, int], str | None] | None = None, seed: int = 0) -> RosterResult:
    """CP-SAT over x[e, d, s]; ``fixed`` pins cells (staff, day) → shift or None (re-planning).

    The LP relaxation runs at full strength (``linearization_level=2``). A tenth of the time goes to
    the full objective, which proves small instances optimal (or infeasible) outright. Otherwise the
    search turns lexicographic: a third of what is left minimises the under-cover penalty alone (the
    heavy weights), then the full objective with under-cover held at that level, the phase-one roster
    as a hint. A single long solve got stuck one under-covered shift away on Instance5 (1235 in some
    60 s runs); the phases reached 1143-1151 (``tests/benchmarks/planner.py``). Only the first phase
    can prove a bound: the later ones solve a restricted problem.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    m, x, under, total = _build(inst, fixed or {})
    m.minimize(total)
    quick = _solve(m, x, min(time_limit_s, max(5.0, time_limit_s / 10)), workers, seed)
    if quick is None or quick[0] in (cp_model.OPTIMAL, cp_model.INFEASIBLE) or time.perf_counter() >= deadline:
        return _result(inst, quick, t0, proven=True)
    m.minimize(under)
    first = _solve(m, x, (deadline - time.perf_counter()) / 3, workers, seed)
    if first is not None and first[0] in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        m.add(under <= first[1])
        for key, var in x.items():
            m.add_hint(var, first[3][key])
    m.minimize(total)
    final = _solve(m, x, deadline - time.perf_counter(), workers, seed)
    found = [r for r in (quick, final) if r is not None and r[0] in (cp_model.OPTIMAL, cp_model.FEASIBLE)]
    best = min(found, key=lambda r: r[1]) if found else final
    return _result(inst, best, t0, proven=False, bound=quick[2] if quick[0] == cp_model.FEASIBLE else None)


def _result(inst: RosterInstance, res: tuple[Any, int, float, dict[tuple[str, int, str], int]] | None,
            t0: float, *, proven: bool, bound: float | None = None) -> RosterResult:
    """``proven``: ``res`` solved the unrestricted problem, so its bound and status hold; otherwise the
    bound is the one the unrestricted first phase proved (``bound``)."""
    runtime = time.perf_counter() - t0
    if res is None or res[0] not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        name = "INFEASIBLE" if res is not None and res[0] == cp_model.INFEASIBLE else "UNKNOWN"
        return RosterResult(inst.name, None, None, name, runtime, {}, [])
    status, _, res_bound, values = res
    S, D, E = list(inst.shifts), range(inst.days), list(inst.staff)
    roster: Roster = {e: [next((s_ for s_ in S if values[e, d, s_]), None) for d in D] for e in E}
    ev = evaluate(inst, roster)
    optimal = proven and status == cp_model.OPTIMAL
    return RosterResult(inst.name, ev.objective, res_bound if proven else bound, "OPTIMAL" if optimal else "FEASIBLE",
                        runtime, roster, ev.violations)


def _solve(m: cp_model.CpModel, x: dict[tuple[str, int, str], cp_model.IntVar], limit: float, workers: int,
           seed: int) -> tuple[Any, int, float, dict[tuple[str, int, str], int]] | None:
    """Solve; values are read by variable index, valid for clones of the model ``x`` was made in."""
    if limit <= 0:
        return None
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = limit
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.linearization_level = 2  # the LP relaxation guides the search much better here
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, 0, 0.0, {}
    values = {key: int(solver.value(var)) for key, var in x.items()}
    return status, int(solver.objective_value), solver.best_objective_bound, values


def _build(inst: RosterInstance, fixed: dict[tuple[str, int], str | None]
           ) -> tuple[cp_model.CpModel, dict[tuple[str, int, str], cp_model.IntVar], Any, Any]:
    """The model without an objective; returns it, the cell variables, the under-cover penalty and the
    benchmark objective as expressions."""
    m = cp_model.CpModel()
    S, D, E = list(inst.shifts), range(inst.days), list(inst.staff)
    x = {(e, d, s): m.new_bool_var(f"x_{e}_{d}_{s}") for e in E for d in D for s in S}
    work = {(e, d): m.new_bool_var(f"w_{e}_{d}") for e in E for d in D}
    for e in E:
        st = inst.staff[e]
        for d in D:
            m.add(sum(x[e, d, s] for s in S) == work[e, d])
            if d in inst.days_off[e]:
                m.add(work[e, d] == 0)
            if d + 1 < inst.days:
                for s in S:
                    for t in inst.shifts[s].cannot_follow:
                        if t in inst.shifts:
                            m.add_bool_or([x[e, d, s].Not(), x[e, d + 1, t].Not()])
        for s in S:
            m.add(sum(x[e, d, s] for d in D) <= st.max_shifts.get(s, inst.days))
        minutes = sum(inst.shifts[s].minutes * x[e, d, s] for d in D for s in S)
        m.add(minutes <= st.max_minutes)
        m.add(minutes >= st.min_minutes)
        w = [work[e, d] for d in D]
        for d in range(inst.days - st.max_consecutive):
            m.add(sum(w[d : d + st.max_consecutive + 1]) <= st.max_consecutive)
        _forbid_short_inner_stretches(m, w, st.min_consecutive, worked=True)
        _forbid_short_inner_stretches(m, w, st.min_days_off, worked=False)
        weekends = []
        for k in range(inst.days // 7):
            we = m.new_bool_var(f"we_{e}_{k}")
            m.add(we >= w[7 * k + 5])
            m.add(we >= w[7 * k + 6])
            weekends.append(we)
        m.add(sum(weekends) <= st.max_weekends)
    terms = []
    for r in inst.on_requests:
        terms.append(r.weight * (1 - x[r.staff, r.day, r.shift]))
    for r in inst.off_requests:
        terms.append(r.weight * x[r.staff, r.day, r.shift])
    under_terms = []
    for c in inst.cover:
        n = sum(x[e, c.day, c.shift] for e in E)
        under = m.new_int_var(0, c.requirement, f"u_{c.day}_{c.shift}")
        over = m.new_int_var(0, len(E), f"o_{c.day}_{c.shift}")
        m.add(n + under - over == c.requirement)
        terms += [c.under_weight * under, c.over_weight * over]
        under_terms.append(c.under_weight * under)
    for (e, d), cell in fixed.items():
        if cell is None:
            m.add(work[e, d] == 0)
        else:
            m.add(x[e, d, cell] == 1)
    return m, x, sum(under_terms), sum(terms)


def _forbid_short_inner_stretches(m: cp_model.CpModel, w: list[cp_model.IntVar], minimum: int, *,
                                  worked: bool) -> None:
    """No stretch of ``worked`` days shorter than ``minimum`` with the opposite on both sides."""
    n = len(w)
    for length in range(1, minimum):
        for start in range(1, n - length):
            inside = [w[d] if worked else w[d].Not() for d in range(start, start + length)]
            edge_before = w[start - 1] if worked else w[start - 1].Not()
            edge_after = w[start + length] if worked else w[start + length].Not()
            m.add_bool_or([edge_before, edge_after, *[v.Not() for v in inside]])
