"""The roster feeds dispatch (rostered shifts become availability; off means not dispatched; a change re-plans
the day); travel times from a matrix provider (CSV, an OSRM-style server) with a clear fallback when it is down;
the planner's CLI for the rules of the day and the explanations."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from linecrew.cli import main
from linecrew.server.planner.dispatch import Job, Technician, plan_dispatch
from linecrew.server.planner.errors import PlannerError
from linecrew.server.planner.live import LivePlanner
from linecrew.server.planner.matrix import CsvMatrix, Euclidean, Fallback, MatrixError, OsrmMatrix, provider
from linecrew.server.store import ServerStore

TODAY = dt.date.today()


@pytest.fixture
def planner(tmp_path: Path) -> Iterator[LivePlanner]:
    store = ServerStore(tmp_path)
    p = LivePlanner(store)
    for i, tid in enumerate(("ana", "ben", "cam")):
        p.add_technician(Technician(tid, frozenset({"lv"}), (10.0 * i, 0.0), (8 * 60, 16 * 60)))
    for i in range(16):  # 16 hours of work: two people cannot do it all
        p.add_job(Job(f"J{i}", (1.5 * i, 2.0), 60, (8 * 60, 15 * 60)))
    yield p
    store.close()


def test_a_technician_rostered_off_is_not_dispatched_and_a_roster_change_replans(planner: LivePlanner) -> None:
    _, first = planner.replan(time_limit_s=1, push=False)
    assert "cam" in {a.technician_id for a in first.assignments}
    done = planner.set_roster(TODAY, {"ana": (7 * 60, 15 * 60), "ben": (10 * 60, 18 * 60), "cam": None},
                              time_limit_s=1, push=False)
    assert done is not None, "a change to today's roster re-plans the day"
    _, plan = done
    routes = plan.by_technician()
    assert "cam" not in routes
    assert all(a.start >= 10 * 60 for a in routes.get("ben", []))
    assert {m.job_id for m in plan.moved if m.from_technician == "cam"} == {
        j for j, t in first.technician_of().items() if t == "cam"}
    assert all("cam is not available" in m.reason for m in plan.moved if m.from_technician == "cam")
    view = planner.view()
    assert {t["id"]: t["available"] for t in view["technicians"]} == {"ana": True, "ben": True, "cam": False}
    assert planner.set_roster(TODAY + dt.timedelta(days=1), {"cam": (8 * 60, 16 * 60)}) is None, "not today: stored"
    with pytest.raises(PlannerError, match="unknown technicians: zed"):
        planner.set_roster(TODAY, {"zed": None})


def test_a_rostering_solution_becomes_availability_day_by_day(planner: LivePlanner) -> None:
    roster = {"ana": ["E", None], "ben": [None, "L"]}  # cam is not mentioned: keeps the registry's shift
    planner.apply_roster(roster, TODAY, {"E": (6 * 60, 14 * 60), "L": (12 * 60, 20 * 60)}, push=False,
                         time_limit_s=1)
    today = {t.id: t for t in planner.technicians_on(TODAY)}
    tomorrow = {t.id: t for t in planner.technicians_on(TODAY + dt.timedelta(days=1))}
    assert today["ana"].shift == (360, 840) and not today["ben"].available and today["cam"].shift == (480, 960)
    assert not tomorrow["ana"].available and tomorrow["ben"].shift == (720, 1200)
    _, plan = planner.latest() or (0, None)
    assert plan is not None and "ben" not in plan.by_technician(), "today's roster re-planned the day"
    with pytest.raises(PlannerError, match="no hours given for shift"):
        planner.apply_roster({"ana": ["N"]}, TODAY, {})


def test_a_csv_matrix_replaces_straight_lines_and_a_missing_pair_is_named(tmp_path: Path) -> None:
    places = [(0.0, 0.0), (3.0, 4.0)]
    f = tmp_path / "m.csv"
    f.write_text("from_x,from_y,to_x,to_y,minutes,distance\n0,0,3,4,17,9\n3,4,0,0,19,9\n")
    m = CsvMatrix(f)
    assert m.minutes(places) == [[0, 17], [19, 0]] and m.distances(places) == [[0, 90], [90, 0]]
    assert Euclidean().minutes(places) == [[0, 5], [5, 0]]
    with pytest.raises(MatrixError, match=r"no travel time from \(0.0, 0.0\) to \(9.0, 9.0\)"):
        m.minutes([*places, (9.0, 9.0)])
    techs = [Technician("a", frozenset(), (0, 0), (8 * 60, 9 * 60))]
    jobs = [Job("j", (3, 4), 20, (8 * 60, 8 * 60 + 30))]
    plan = plan_dispatch(techs, jobs, matrix=m, time_limit_s=1)
    assert plan.assignments[0].start == 8 * 60 + 17, "the road time, not the 5-minute straight line"


class _Osrm(BaseHTTPRequestHandler):
    calls: list[str] = []
    down = False

    def do_GET(self) -> None:
        _Osrm.calls.append(self.path)
        if _Osrm.down:
            self.send_error(503, "maintenance")
            return
        coords = [tuple(map(float, c.split(","))) for c in self.path.split("/")[4].split("?")[0].split(";")]
        secs = [[abs(a[0] - b[0]) * 120 + abs(a[1] - b[1]) * 120 for b in coords] for a in coords]  # 2 min a unit
        body = json.dumps({"code": "Ok", "durations": secs, "distances": [[s * 10 for s in r] for r in secs]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osrm() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Osrm)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Osrm.calls.clear()
    _Osrm.down = False
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_an_osrm_table_is_asked_once_and_cached(osrm: str) -> None:
    m = OsrmMatrix(osrm)
    places = [(0.0, 0.0), (1.0, 2.0)]
    assert m.minutes(places) == [[0, 6], [6, 0]]
    assert m.distances(list(reversed(places))) == [[0, 36], [36, 0]]
    assert len(_Osrm.calls) == 1 and "/table/v1/driving/0.000000,0.000000;1.000000,2.000000" in _Osrm.calls[0]


def test_a_provider_that_is_down_falls_back_to_straight_lines_and_the_plan_says_so(osrm: str) -> None:
    _Osrm.down = True
    m = provider(osrm)
    assert isinstance(m, Fallback)
    techs = [Technician("a", frozenset(), (0, 0), (8 * 60, 16 * 60))]
    plan = plan_dispatch(techs, [Job("j", (3, 4), 20, (8 * 60, 12 * 60))], matrix=m, time_limit_s=1)
    assert plan.assignments and any("unavailable" in n and "straight-line" in n and "503" in n for n in plan.notes)
    with pytest.raises(MatrixError, match="unknown travel matrix"):
        provider("carrier-pigeon")


def _cli(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def test_the_cli_sets_the_rules_of_the_day_and_explains_the_plan(tmp_path: Path) -> None:
    ServerStore(tmp_path).close()
    d = str(tmp_path)
    _cli("plan", "tech", "ana", "--data-dir", d, "--skills", "lv,hv", "--shift", "08:00-16:00",
         "--cert", "hv:2020-01-01", "--break", "11:30-13:00/30", "--overtime", "45@5", "--max-drive", "240")
    out = _cli("plan", "tech", "ben", "--data-dir", d, "--skills", "lv", "--rides-with", "ana")
    assert "rides with ana" in out
    _cli("plan", "job", "HV-1", "--data-dir", d, "--at", "5,5", "--skills", "hv", "--window", "08:00-15:00")
    assert "crew of 2" in _cli("plan", "job", "PAIR", "--data-dir", d, "--at", "6,6", "--skills", "lv", "--crew", "2",
                               "--earliest", "10:00")
    store = ServerStore(tmp_path)
    ana = next(t for t in LivePlanner(store).technicians() if t.id == "ana")
    assert ana.overtime_max == 45 and ana.breaks[0].duration == 30 and ana.certificates == (("hv", "2020-01-01"),)
    store.close()
    plan = json.loads(_cli("plan", "run", "--data-dir", d, "--no-push", "--time-limit", "1", "--json"))
    assert sorted(a["technician_id"] for a in plan["assignments"] if a["job_id"] == "PAIR") == ["ana", "ben"]
    assert all(a["start"] >= 600 for a in plan["assignments"] if a["job_id"] == "PAIR")
    [left] = plan["unassigned"]
    assert left["job_id"] == "HV-1" and left["fix"] == "renew ana's hv certificate (lapsed 2020-01-01)"
    text = _cli("plan", "explain", "--data-dir", d)
    assert "PAIR: ana: has lv" in text and "to place it: renew ana's hv certificate" in text
    assert "break 1" in text
    off = _cli("plan", "shift", "ben", "off", "--data-dir", d, "--time-limit", "1")
    assert "ben on " in off and "re-planned" in off
    out = CliRunner().invoke(main, ["plan", "tech", "ana", "--data-dir", d, "--break", "noon"])
    assert out.exit_code != 0 and "HH:MM-HH:MM/MIN" in out.output
