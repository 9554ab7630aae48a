"""``plan tech`` / ``plan job`` change only the fields given (a drop-out keeps skills and shift)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from linecrew.cli import main
from linecrew.server.planner.live import LivePlanner
from linecrew.server.store import ServerStore


def _run(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def test_marking_a_technician_unavailable_keeps_skills_shift_and_device(tmp_path: Path) -> None:
    ServerStore(tmp_path).close()  # the server has run here
    d = str(tmp_path)
    _run("plan", "tech", "ana", "--data-dir", d, "--device", "truck-17", "--skills", "lv,hv", "--depot", "10,20",
         "--shift", "07:00-15:30")
    _run("plan", "tech", "ana", "--data-dir", d, "--unavailable")
    store = ServerStore(tmp_path)
    [ana] = LivePlanner(store).technicians()
    assert (ana.skills, ana.shift, ana.depot, ana.device_id, ana.available) == (
        frozenset({"lv", "hv"}), (420, 930), (10, 20), "truck-17", False)
    store.close()
    assert "available: skills hv,lv" in _run("plan", "tech", "ana", "--data-dir", d, "--available")


def test_changing_a_jobs_priority_keeps_its_place_and_window(tmp_path: Path) -> None:
    ServerStore(tmp_path).close()
    d = str(tmp_path)
    _run("plan", "job", "J-88", "--data-dir", d, "--title", "Meter swap", "--at", "12,25", "--duration", "45",
         "--window", "08:00-12:00", "--priority", "4")
    _run("plan", "job", "J-88", "--data-dir", d, "--priority", "1")
    store = ServerStore(tmp_path)
    [job] = LivePlanner(store).jobs()
    assert (job.title, job.location, job.duration, job.window, job.priority) == (
        "Meter swap", (12, 25), 45, (480, 720), 1)
    store.close()
    out = CliRunner().invoke(main, ["plan", "job", "NEW-1", "--data-dir", d, "--priority", "2"])
    assert out.exit_code == 1 and "needs a location" in out.output
