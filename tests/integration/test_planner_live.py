"""Live planning through the real server, broker and devices: plans pushed, statuses fed back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from linecrew.agent.assistant import Assistant, JobContext
from linecrew.agent.knowledge import KnowledgeBase
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.server.auth import audit_log
from linecrew.server.planner.dispatch import Job, Technician
from linecrew.server.planner.live import LivePlanner
from linecrew.shared.llm import LocalLLM
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO, SHARED_DATA, enroll_device


def test_plan_reaches_devices_and_job_status_feeds_the_next_plan(server: object, tmp_path: Path) -> None:
    devs = {f"truck-{i}": enroll_device(server, tmp_path / f"d{i}", f"truck-{i}") for i in (1, 2)}
    planner = LivePlanner(server.store)  # type: ignore[attr-defined]
    planner.add_technician(Technician("ana", frozenset({"lv", "hv"}), (0, 0), (480, 1020), "truck-1"))
    planner.add_technician(Technician("ben", frozenset({"lv"}), (30, 0), (480, 1020), "truck-2"))
    for i in range(6):
        planner.add_job(Job(f"J{i}", (5 * i, 3 * i), 45, (480, 960), frozenset({"hv"}) if i == 0 else frozenset(),
                            title=f"Job {i}"))
    version, plan = planner.replan(time_limit_s=1)
    assert plan.technician_of()["J0"] == "ana" and not plan.unassigned

    syncs = []
    stores = {}
    for dev, folder in devs.items():
        store, address = open_device(folder)
        stores[dev] = store
        syncs.append(DeviceSync(store, address))
    for s in syncs:
        s.start()
    try:
        assert wait_for(lambda: all(st.get("assignment") for st in stores.values()), 30)
        a1 = stores["truck-1"].get("assignment")
        assert a1["plan_version"] == version and a1["technician_id"] == "ana"  # type: ignore[index]
        first = a1["jobs"][0]["job_id"]  # type: ignore[index]
        job = stores["truck-1"].get("current_job")
        assert job["job_id"] == first  # type: ignore[index]

        # the technician says "on site" through the assistant; the status travels back to the planner
        a = Assistant(stores["truck-1"], LocalLLM(), KnowledgeBase(stores["truck-1"].db))
        assert a.job() == JobContext(**job)  # type: ignore[arg-type]
        said = a.ask("We're on site")
        assert said.intent == "job_status" and said.needs_confirmation, "read back first"
        assert a.ask("yes").actions == ["job status on_site queued"]
        assert wait_for(lambda: planner.job_statuses()[first] == "in_progress", 30)

        # an outage comes in: the re-plan keeps ana's job in progress and moves little else
        planner.add_job(Job("OUTAGE", (12, 12), 60, (600, 700), priority=1, title="Feeder 7 outage"))
        v2, p2 = planner.replan(time_limit_s=2, now=600)
        assert p2.by_technician()["ana"][0].job_id == first
        assert "OUTAGE" in p2.technician_of() and p2.changed <= 2
        assert wait_for(lambda: stores["truck-1"].get("assignment")["plan_version"] == v2, 30)  # type: ignore[index]
    finally:
        for s in syncs:
            s.stop()


def test_infeasible_live_plan_names_the_conflict(server: object) -> None:
    planner = LivePlanner(server.store)  # type: ignore[attr-defined]
    planner.add_technician(Technician("cy", frozenset(), (0, 0), (480, 1020), available=False))
    planner.add_job(Job("P1", (1, 1), 30, (480, 600), pinned_to="cy"))
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "plan", "run", "--dir",
                          str(server.config.data_dir), "--json"], cwd=REPO, capture_output=True, text=True,  # type: ignore[attr-defined]
                         timeout=60)
    assert out.returncode == 1
    assert json.loads(out.stdout)["conflicts"] == ["job P1 is pinned to cy, who is not available"]
    assert "Error: no feasible plan" in out.stderr


@pytest.mark.skipif(not (SHARED_DATA / "dispatch").exists(), reason="../shared/data absent")
def test_benchmark_commands_emit_the_documented_json() -> None:
    for args in (["dispatch", "--vrplib", str(SHARED_DATA / "dispatch" / "C101.25.3.vrptw"), "--time-limit", "2"],
                 ["roster", "--curtois", str(SHARED_DATA / "rostering" / "Instance1.txt"), "--time-limit", "10"]):
        out = subprocess.run([sys.executable, "-m", "linecrew.cli", "plan", *args, "--json"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        d = json.loads(out.stdout)
        assert {"objective", "bound", "runtime_s", "assignments", "unassigned"} <= set(d)
        assert d["violations"] == [] and d["objective"] in (191.3, 607)


def test_a_device_reports_only_on_its_own_jobs(server: object, tmp_path: Path) -> None:
    srv = server
    devs = {f"truck-{i}": enroll_device(srv, tmp_path / f"d{i}", f"truck-{i}") for i in (1, 2)}
    planner = LivePlanner(srv.store)  # type: ignore[attr-defined]
    planner.add_technician(Technician("ana", frozenset({"lv"}), (0, 0), (480, 1020), "truck-1"))
    planner.add_technician(Technician("ben", frozenset({"hv"}), (30, 0), (480, 1020), "truck-2"))
    planner.add_job(Job("MINE", (2, 2), 30, (480, 960), frozenset({"lv"})))
    planner.add_job(Job("OUTAGE", (28, 1), 60, (480, 960), frozenset({"hv"}), priority=1))
    _, plan = planner.replan(time_limit_s=1, push=False)
    assert plan.technician_of() == {"MINE": "ana", "OUTAGE": "ben"}
    store, address = open_device(devs["truck-1"])
    sync = DeviceSync(store, address)
    sync.start()
    try:
        for job_id in ("OUTAGE", "NO-SUCH-JOB", "MINE"):
            store.outbox.put("job_status", {"job_id": job_id, "status": "done"}, peer="server", stream="jobs")
        sync.notify()
        assert wait_for(lambda: store.outbox.depth() == 0, 30), "all three answered (two of them rejected)"
        assert wait_for(lambda: planner.job_statuses()["MINE"] == "done", 30)
        assert planner.job_statuses()["OUTAGE"] == "open", "another technician's outage stays in the plan"
        _, again = planner.replan(time_limit_s=1, push=False)
        assert again.technician_of() == {"OUTAGE": "ben"}
        dead = srv.store.inbox.dead_letters("truck-1")  # type: ignore[attr-defined]
        assert sorted(str(d["reason"]).split(": ")[1].split()[1] for d in dead) == ["NO-SUCH-JOB", "OUTAGE"]
        refused = [a for a in audit_log(srv.store.db) if a["action"] == "job_status.refused"]  # type: ignore[attr-defined]
        assert sorted((a["actor"], a["target"]) for a in refused) == [("device:truck-1", "job:NO-SUCH-JOB"),
                                                                       ("device:truck-1", "job:OUTAGE")]
    finally:
        sync.stop()
        store.close()
