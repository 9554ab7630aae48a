"""Model delivery over the real broker: delta chosen when smaller, chunks resumed after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linecrew.agent.updates import Updater
from linecrew.server.rollout_policy import SYSTEM, RolloutSpec, WaveSpec
from linecrew.shared.delta import sha256_file
from linecrew.shared.mqtt import wait_for
from linecrew.shared.release import load_trusted_root
from tests.conftest import REPO, enroll_device
from tests.integration.test_updates import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("fleet"))


def _ship(server: object, version: int) -> str:
    """A one-wave rollout of ``version`` to every device, started at once."""
    rm = server.store.rollouts  # type: ignore[attr-defined]
    spec = RolloutSpec(release="smollm2-field", version=version, require_approval=False,
                       waves=[WaveSpec(percent=100, soak_s=0)])
    rid: str = rm.create(spec, SYSTEM)
    rm.act(rid, "start", SYSTEM)
    return rid


def _provision(fleet: Fleet, dev: Path) -> None:
    (dev / "root.json").write_text(json.dumps(fleet.root_doc))
    root = load_trusted_root(json.dumps(fleet.root_doc).encode(), now=time.time())
    Updater(dev / "models", root=root, device_class="x86-dev", health=lambda _m: None).install_factory(
        fleet.models["A"], fleet.manifest("A", 1))


def _agent(dev: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "linecrew.cli", "agent", "run", "--dir", str(dev)], cwd=REPO,
                            env={**os.environ, "LINECREW_AGENT_ACK_TIMEOUT_S": "2",
                                 # the smoke prompt's budget is the device's, not a loaded CI machine's
                                 "LINECREW_AGENT_UPDATE_HEALTH_BUDGET_S": "600"})


def _active(dev: Path) -> str:
    return sha256_file((dev / "models" / "active" / "model.gguf").resolve())


def test_delta_is_offered_sent_in_chunks_applied_and_reported(fleet: Fleet, server: object, tmp_path: Path
                                                              ) -> None:
    dev = enroll_device(server, tmp_path / "dev", "truck-8")
    _provision(fleet, dev)
    reg = server.store.releases  # type: ignore[attr-defined]
    reg.add(fleet.manifest("A", 1), fleet.models["A"])
    manifest = tmp_path / "v2.json"
    manifest.write_text(json.dumps(fleet.manifest("B", 2)))
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "server", "release", "add", "--dir",
                          str(server.config.data_dir), str(manifest), str(fleet.models["B"]),  # type: ignore[attr-defined]
                          "--delta", str(fleet.deltas[("A", "B")])], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "registered with 1 delta(s)" in out.stdout, out.stderr
    rid = _ship(server, 2)
    agent = _agent(dev)
    try:
        assert wait_for(lambda: _active(dev) == fleet.sha["B"], 120), "device did not move to v2"
        assert wait_for(lambda: any(o["state"] == "committed" for o in reg.offers()), 30)
        rm = server.store.rollouts  # type: ignore[attr-defined]
        assert wait_for(lambda: rm.status(rid)["state"] == "finished", 30), rm.status(rid)
        sent = server.ingest.chunks.bytes_sent["truck-8"]  # type: ignore[attr-defined]
        rm.act(rid, "rollback", SYSTEM, "field reports of wrong torque values")
        assert wait_for(lambda: _active(dev) == fleet.sha["A"], 60), "the agent went back to its previous model"
        assert wait_for(lambda: rm.devices(rid)[0]["state"] == "rolled_back", 30), rm.devices(rid)
    finally:
        agent.terminate()
        agent.wait(10)
    delta = fleet.deltas[("A", "B")].stat().st_size
    assert sent == delta, "only the delta travelled"
    assert sent < fleet.models["B"].stat().st_size / 100


def test_full_transfer_resumes_after_the_agent_is_killed(fleet: Fleet, server: object, tmp_path: Path) -> None:
    dev = enroll_device(server, tmp_path / "dev", "truck-9")
    _provision(fleet, dev)
    reg = server.store.releases  # type: ignore[attr-defined]
    reg.add(fleet.manifest("B", 2), fleet.models["B"])  # no delta for this device's base: full file
    _ship(server, 2)
    server.ingest.chunks.rate = 25e6  # type: ignore[attr-defined]
    full = fleet.models["B"].stat().st_size
    agent = _agent(dev)
    chunks = server.ingest.chunks  # type: ignore[attr-defined]
    assert wait_for(lambda: chunks.bytes_sent.get("truck-9", 0) > full * 0.3, 120)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    assert _active(dev) == fleet.sha["A"], "still running the old model"
    agent = _agent(dev)
    try:
        assert wait_for(lambda: _active(dev) == fleet.sha["B"], 180)
    finally:
        agent.terminate()
        agent.wait(10)
    assert chunks.bytes_sent["truck-9"] < full * 1.2, "resumed, not restarted from zero"
