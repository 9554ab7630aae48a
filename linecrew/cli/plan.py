"""``linecrew plan ...``: rosters, dispatch and the live plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from linecrew.cli._common import (
    _friendly,
    _open_store,
    _server_config,
    config_option,
    json_option,
    server_dir_option,
)


@click.group()
def plan() -> None:
    """Central planner: rostering (CP-SAT), dispatch (OR-Tools routing), live re-planning."""


def _hhmm(value: str) -> int:
    try:
        h, m = value.split(":")
        return int(h) * 60 + int(m)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not HH:MM") from e


def _xy(value: str) -> tuple[float, float]:
    try:
        x, y = value.split(",")
        return float(x), float(y)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not X,Y") from e


@plan.command("roster")
@click.option("--curtois", "path", type=click.Path(exists=True, path_type=Path), required=True,
              help="Curtois & Qu shift scheduling instance")
@click.option("--time-limit", "time_limit", type=float, default=60.0, show_default=True, help="solver seconds")
@click.option("--workers", type=int, default=8, show_default=True, help="CP-SAT search workers")
@click.option("--apply-from", "apply_from", default=None, metavar="YYYY-MM-DD",
              help="make the roster the live fleet's availability from this day (staff ids are technician ids)")
@click.option("--hours", default=None, metavar="ID=HH:MM-HH:MM,...", help="each shift's hours, with --apply-from")
@config_option
@server_dir_option
@json_option
@_friendly
def plan_roster(path: Path, time_limit: float, workers: int, apply_from: str | None, hours: str | None,
                config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Roster a benchmark instance; objective is the benchmark's penalty. With ``--apply-from`` the roster feeds
    live dispatch: each rostered shift is that technician's availability, a day off keeps them home."""
    from linecrew.server.planner.roster import parse_curtois, solve_roster

    times = {k: v for k, v in ((p.partition("=")[0], _span(p.partition("=")[2])) for p in (hours or "").split(",")
                               if p) if v}
    if apply_from and not times:
        raise click.BadParameter("--apply-from needs --hours, e.g. D=08:00-16:00,L=14:00-22:00")
    r = solve_roster(parse_curtois(path), time_limit_s=time_limit, workers=workers)
    if apply_from:
        _live(config_path, data_dir).apply_roster(r.roster, _day(apply_from), times, actor="cli", push=False)
    assignments = [{"staff": e, "day": d, "shift": s} for e, row in r.roster.items() for d, s in enumerate(row) if s]
    out = {"name": r.name, "objective": r.objective, "bound": r.bound, "status": r.status,
           "runtime_s": round(r.runtime_s, 2), "assignments": assignments, "unassigned": [],
           "violations": r.violations}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{r.name}: objective {r.objective} (bound {r.bound}, {r.status}) in {r.runtime_s:.1f} s")
    for e, row in r.roster.items():
        click.echo(f"  {e:>4} " + "".join(s or "." for s in row))


@plan.command("dispatch")
@click.option("--vrplib", "path", type=click.Path(exists=True, path_type=Path), required=True,
              help="VRPLIB-style CVRPTW instance (Solomon)")
@click.option("--time-limit", "time_limit", type=float, default=10.0, show_default=True, help="solver seconds")
@click.option("--solver", type=click.Choice(["pyvrp", "ortools"]), default="pyvrp", show_default=True,
              help="routing solver (OR-Tools is the measured reference)")
@json_option
@_friendly
def plan_dispatch_cmd(path: Path, time_limit: float, solver: str, as_json: bool) -> None:
    """Route a benchmark instance; objective is total distance."""
    from linecrew.server.planner.vrptw import parse_vrplib, solve_vrptw

    r = solve_vrptw(parse_vrplib(path), time_limit_s=time_limit, solver=solver)
    out = {"name": r.name, "objective": r.objective, "bound": None, "runtime_s": round(r.runtime_s, 2),
           "vehicles": r.vehicles_used, "assignments": [{"vehicle": k, "route": route} for k, route in
                                                        enumerate(r.routes)],
           "unassigned": r.unassigned, "violations": r.violations}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{r.name}: distance {r.objective} with {r.vehicles_used} vehicles in {r.runtime_s:.1f} s")
    for k, route in enumerate(r.routes):
        click.echo(f"  vehicle {k}: " + " ".join(map(str, route)))


def _live(config_path: Path | None, data_dir: Path | None) -> Any:
    from linecrew.server.planner.live import LivePlanner
    return LivePlanner(_open_store(_server_config(config_path, data_dir=data_dir)))


@plan.command("tech")
@config_option
@server_dir_option
@click.option("--device", "device_id", default=None, help="the technician's device (assignments go there)")
@click.option("--skills", default=None, help="comma-separated, e.g. lv,hv,meter (new: none)")
@click.option("--depot", default=None, help="X,Y of the home depot (new: 0,0)")
@click.option("--shift", "shift", default=None, help="HH:MM-HH:MM (new: 08:00-17:00)")
@click.option("--unavailable/--available", "unavailable", default=None,
              help="dropped out (sick, vehicle broken) / back on duty")
@click.option("--cert", "certs", multiple=True, metavar="SKILL:YYYY-MM-DD",
              help="a certificate's expiry: after it the skill lapses (repeatable; replaces the list)")
@click.option("--break", "breaks", multiple=True, metavar="HH:MM-HH:MM/MIN",
              help="a break of MIN minutes starting inside the span, e.g. 11:30-13:00/30 (repeatable; replaces)")
@click.option("--overtime", default=None, metavar="MIN[@COST]",
              help="overtime allowed past the shift's end, and its cost a minute (default cost 10)")
@click.option("--max-drive", "max_drive", type=click.IntRange(1, 24 * 60), default=None, help="minutes driving a day")
@click.option("--rides-with", "rides_with", default=None, help="travels in this technician's truck ('' to stop)")
@click.argument("tech_id")
@_friendly
def plan_tech(config_path: Path | None, data_dir: Path | None, device_id: str | None, skills: str | None,
              depot: str | None, shift: str | None, unavailable: bool | None, certs: tuple[str, ...],
              breaks: tuple[str, ...], overtime: str | None, max_drive: int | None, rides_with: str | None,
              tech_id: str) -> None:
    """Add a technician, or change only the fields given of an existing one."""
    ot_max, ot_cost = _overtime(overtime)
    t = _live(config_path, data_dir).update_technician(
        tech_id, device_id=device_id, skills=_skills(skills), depot=_xy(depot) if depot else None,
        shift=_span(shift), available=None if unavailable is None else not unavailable,
        certificates=tuple(_cert(c) for c in certs) if certs else None,
        breaks=tuple(_break(b) for b in breaks) if breaks else None, overtime_max=ot_max, overtime_cost=ot_cost,
        max_drive=max_drive, rides_with=rides_with)
    click.echo(f"technician {t.id} {'available' if t.available else 'unavailable'}: skills "
               f"{','.join(sorted(t.skills)) or '-'}, shift {_clock(t.shift[0])}-{_clock(t.shift[1])}"
               + (f", overtime up to {t.overtime_max} min" if t.overtime_max else "")
               + (f", rides with {t.rides_with}" if t.rides_with else ""))


@plan.command("shift")
@config_option
@server_dir_option
@click.option("--day", "day", default=None, help="YYYY-MM-DD (default today)")
@click.option("--time-limit", "time_limit", type=float, default=3.0, show_default=True,
              help="solver seconds for the re-plan")
@click.argument("tech_id")
@click.argument("hours")
@_friendly
def plan_shift(config_path: Path | None, data_dir: Path | None, day: str | None, time_limit: float, tech_id: str,
               hours: str) -> None:
    """Roster one technician for a day: HH:MM-HH:MM, or ``off``. Once a day has a roster, only rostered technicians
    are dispatched that day, each inside the rostered shift; a change to today's roster re-plans the day."""
    import datetime as dt

    when = _day(day) if day else dt.date.today()
    shift = None if hours == "off" else _span(hours)
    done = _live(config_path, data_dir).set_roster(when, {tech_id: shift}, actor="cli", time_limit_s=time_limit)
    click.echo(f"{tech_id} on {when}: {'off' if shift is None else hours}"
               + (f"; re-planned (plan v{done[0]}, {done[1].changed} job(s) moved)" if done else ""))


def _day(value: str) -> Any:
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not YYYY-MM-DD") from e


def _cert(value: str) -> tuple[str, str]:
    skill, _, day = value.partition(":")
    if not skill or not day:
        raise click.BadParameter(f"{value!r} is not SKILL:YYYY-MM-DD")
    return skill, _day(day).isoformat()


def _break(value: str) -> Any:
    from linecrew.server.planner.dispatch import Break

    span, _, minutes = value.partition("/")
    try:
        window = _span(span)
    except click.BadParameter:
        window = None
    if window is None or not minutes.isdigit():
        raise click.BadParameter(f"{value!r} is not HH:MM-HH:MM/MIN")
    return Break(window[0], window[1], int(minutes))


def _overtime(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    minutes, _, cost = value.partition("@")
    if not minutes.isdigit() or (cost and not cost.isdigit()):
        raise click.BadParameter(f"{value!r} is not MIN[@COST]")
    return int(minutes), int(cost) if cost else 10


@plan.command("job")
@config_option
@server_dir_option
@click.option("--title", default=None, help="what the job is (new: empty)")
@click.option("--at", "at", default=None, help="X,Y location (required for a new job)")
@click.option("--duration", type=int, default=None, help="minutes (new: 60)")
@click.option("--window", default=None, help="earliest-latest start, HH:MM-HH:MM (new: 08:00-17:00)")
@click.option("--skills", default=None, help="comma-separated skills the job needs (new: none)")
@click.option("--priority", type=click.IntRange(1, 5), default=None, help="1 outage ... 5 routine (new: 3)")
@click.option("--pin", "pinned_to", default=None, help="keep with this technician")
@click.option("--crew", type=click.IntRange(1, 6), default=None, help="people on site at once (new: 1)")
@click.option("--qualified", type=click.IntRange(1, 6), default=None,
              help="how many of the crew need the skills; the rest may be helpers (new: all)")
@click.option("--earliest", default=None, help="HH:MM: not before (parts ready)")
@click.argument("job_id")
@_friendly
def plan_job(config_path: Path | None, data_dir: Path | None, title: str | None, at: str | None,
             duration: int | None, window: str | None, skills: str | None, priority: int | None,
             pinned_to: str | None, crew: int | None, qualified: int | None, earliest: str | None,
             job_id: str) -> None:
    """Add a job (an urgent outage is priority 1), or change only the fields given of an existing one."""
    j = _live(config_path, data_dir).update_job(
        job_id, title=title, location=_xy(at) if at else None, duration=duration, window=_span(window),
        skills=_skills(skills), priority=priority, pinned_to=pinned_to, crew=crew, qualified=qualified,
        earliest_start=_hhmm(earliest) if earliest else None)
    click.echo(f"job {j.id} saved (priority {j.priority}" + (f", crew of {j.crew}" if j.crew > 1 else "") + ")")


def _skills(value: str | None) -> frozenset[str] | None:
    return None if value is None else frozenset(x for x in value.split(",") if x)


def _span(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    a, _, b = value.partition("-")
    return _hhmm(a), _hhmm(b)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@plan.command("run")
@config_option
@server_dir_option
@click.option("--now", default=None, help="HH:MM: re-plan from this time on")
@click.option("--time-limit", "time_limit", type=float, default=3.0, show_default=True, help="solver seconds")
@click.option("--no-push", is_flag=True, help="plan only; do not send to devices")
@click.option("--max-moves", "max_moves", type=click.IntRange(0, 10_000), default=None,
              help="disruption budget: planned jobs this re-plan may move to another technician or leave out")
@click.option("--matrix", default=None,
              help="travel times: euclidean (default), an OSRM server URL, or a CSV matrix file")
@json_option
@_friendly
def plan_run(config_path: Path | None, data_dir: Path | None, now: str | None, time_limit: float, no_push: bool,
             max_moves: int | None, matrix: str | None, as_json: bool) -> None:
    """Re-plan the live fleet (keeps pins and work in progress, moves as little as possible)."""
    from linecrew.server.planner.errors import InfeasiblePlanError

    try:
        version, p = _live(config_path, data_dir).replan(time_limit_s=time_limit, now=_hhmm(now) if now else None,
                                                          push=not no_push, max_moves=max_moves, matrix=matrix)
    except InfeasiblePlanError as e:
        if as_json:
            click.echo(json.dumps({"feasible": False, "conflicts": e.conflicts}))
        raise
    if as_json:
        click.echo(json.dumps(_plan_json(version, p)))
        return
    click.echo(f"plan v{version}: travel {p.travel}, {p.changed} job(s) moved, {p.runtime_s:.1f} s")
    _print_plan(p)


def _plan_json(version: int, p: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"plan_version": version, "objective": p.objective, "bound": None, "runtime_s": round(p.runtime_s, 2),
            "travel": p.travel, "changed": p.changed, "assignments": [asdict(a) for a in p.assignments],
            "unassigned": [{"job_id": k, "reason": v, "fix": p.fixes.get(k, "")} for k, v in p.unassigned.items()],
            "why": p.why, "moved": [asdict(m) for m in p.moved], "breaks": p.breaks, "overtime": p.overtime,
            "notes": p.notes}


def _print_plan(p: Any, *, why: bool = False) -> None:
    for note in p.notes:
        click.echo(f"  note: {note}")
    for tech, route in p.by_technician().items():
        stops = ", ".join(f"{a.job_id}@{_clock(a.start)}" + ("" if a.role == "lead" else f" ({a.role})")
                          for a in route)
        breaks = "".join(f", break {_clock(s)}-{_clock(e)}" for s, e in p.breaks.get(tech, []))
        over = f", {p.overtime[tech]} min overtime" if p.overtime.get(tech) else ""
        click.echo(f"  {tech}: {stops}{breaks}{over}")
        if why:
            for a in route:
                if a.role == "lead" and a.job_id in p.why:
                    click.echo(f"      {a.job_id}: {p.why[a.job_id]}")
    for job, reason in p.unassigned.items():
        fix = p.fixes.get(job)
        click.echo(f"  unassigned {job}: {reason}" + (f"; to place it: {fix}" if fix else ""))
    for m in p.moved:
        click.echo(f"  moved {m.job_id}: {m.from_technician} -> {m.to_technician or 'left out'} ({m.reason})")


@plan.command("explain")
@config_option
@server_dir_option
@json_option
@_friendly
def plan_explain(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """The latest plan with its reasons: why each technician got each job, the cheapest change that would place
    each job left out, and what the last re-plan moved and why."""
    latest = _live(config_path, data_dir).latest()
    if latest is None:
        raise click.ClickException("no plan yet: run `linecrew plan run`")
    version, p = latest
    if as_json:
        click.echo(json.dumps(_plan_json(version, p)))
        return
    click.echo(f"plan v{version}: travel {p.travel}, {p.changed} job(s) moved")
    _print_plan(p, why=True)
