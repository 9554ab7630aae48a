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
@json_option
@_friendly
def plan_roster(path: Path, time_limit: float, workers: int, as_json: bool) -> None:
    """Roster a benchmark instance; objective is the benchmark's penalty."""
    from linecrew.server.planner.roster import parse_curtois, solve_roster

    r = solve_roster(parse_curtois(path), time_limit_s=time_limit, workers=workers)
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
@json_option
@_friendly
def plan_dispatch_cmd(path: Path, time_limit: float, as_json: bool) -> None:
    """Route a benchmark instance; objective is total distance."""
    from linecrew.server.planner.vrptw import parse_vrplib, solve_vrptw

    r = solve_vrptw(parse_vrplib(path), time_limit_s=time_limit)
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
@click.argument("tech_id")
@_friendly
def plan_tech(config_path: Path | None, data_dir: Path | None, device_id: str | None, skills: str | None,
              depot: str | None, shift: str | None, unavailable: bool | None, tech_id: str) -> None:
    """Add a technician, or change only the fields given of an existing one."""
    t = _live(config_path, data_dir).update_technician(
        tech_id, device_id=device_id, skills=_skills(skills), depot=_xy(depot) if depot else None,
        shift=_span(shift), available=None if unavailable is None else not unavailable)
    click.echo(f"technician {t.id} {'available' if t.available else 'unavailable'}: skills "
               f"{','.join(sorted(t.skills)) or '-'}, shift {_clock(t.shift[0])}-{_clock(t.shift[1])}")


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
@click.argument("job_id")
@_friendly
def plan_job(config_path: Path | None, data_dir: Path | None, title: str | None, at: str | None,
             duration: int | None, window: str | None, skills: str | None, priority: int | None,
             pinned_to: str | None, job_id: str) -> None:
    """Add a job (an urgent outage is priority 1), or change only the fields given of an existing one."""
    j = _live(config_path, data_dir).update_job(
        job_id, title=title, location=_xy(at) if at else None, duration=duration, window=_span(window),
        skills=_skills(skills), priority=priority, pinned_to=pinned_to)
    click.echo(f"job {j.id} saved (priority {j.priority})")


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
@json_option
@_friendly
def plan_run(config_path: Path | None, data_dir: Path | None, now: str | None, time_limit: float, no_push: bool,
             as_json: bool) -> None:
    """Re-plan the live fleet (keeps pins and work in progress, moves as little as possible)."""
    from dataclasses import asdict

    from linecrew.server.planner.errors import InfeasiblePlanError

    try:
        version, p = _live(config_path, data_dir).replan(time_limit_s=time_limit, now=_hhmm(now) if now else None,
                                                          push=not no_push)
    except InfeasiblePlanError as e:
        if as_json:
            click.echo(json.dumps({"feasible": False, "conflicts": e.conflicts}))
        raise
    out = {"plan_version": version, "objective": p.objective, "bound": None, "runtime_s": round(p.runtime_s, 2),
           "travel": p.travel, "changed": p.changed, "assignments": [asdict(a) for a in p.assignments],
           "unassigned": [{"job_id": k, "reason": v} for k, v in p.unassigned.items()]}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"plan v{version}: travel {p.travel}, {p.changed} assignment(s) changed, {p.runtime_s:.1f} s")
    for tech, route in p.by_technician().items():
        click.echo(f"  {tech}: " + ", ".join(f"{a.job_id}@{a.start // 60:02d}:{a.start % 60:02d}" for a in route))
    for job, why in p.unassigned.items():
        click.echo(f"  unassigned {job}: {why}")
