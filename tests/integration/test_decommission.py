"""Decommissioning a device through the real server and broker, then enrolling the same id again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from linecrew.agent.config import AgentConfig
from linecrew.agent.store import AgentStore
from linecrew.agent.sync import DeviceSync, open_configured
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO, enroll_device


def _sync(folder: Path) -> tuple[AgentStore, DeviceSync]:
    store, address = open_configured(AgentConfig(data_dir=folder))
    sync = DeviceSync(store, address)
    sync.start()
    return store, sync


def test_a_decommissioned_device_is_locked_out_and_its_id_can_enroll_again(server: object, tmp_path: Path) -> None:
    srv = server
    api = f"http://127.0.0.1:{srv.config.http_port}"  # type: ignore[attr-defined]
    admin = {"Authorization": f"Bearer {srv.store.tokens.create('ada', ['admin'])}"}  # type: ignore[attr-defined]
    old = enroll_device(srv, tmp_path / "old", "truck-9")
    store, sync = _sync(old)
    store.add_note("crossarm cracked", job_id="J-1")
    assert wait_for(lambda: srv.store.log.count("truck-9") == 1, 60)  # type: ignore[attr-defined]
    sync.stop()
    srv.ingest.send("truck-9", "command", {"name": "ping", "args": {}})  # type: ignore[attr-defined]

    rm = {"Authorization": f"Bearer {srv.store.tokens.create('rita', ['release-manager'])}"}  # type: ignore[attr-defined]
    refused = httpx.post(f"{api}/v1/devices/truck-9/decommission", json={"reason": "lost"}, headers=rm)
    assert refused.status_code == 403
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "server", "decommission", "truck-9", "--reason",
                          "truck stolen", "--url", api, "--token", admin["Authorization"].split()[1]],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1 queued message(s) dropped" in out.stdout
    assert srv.store.registry.device("truck-9") is None  # type: ignore[attr-defined]
    assert srv.store.outbox.depth("truck-9") == 0  # type: ignore[attr-defined]
    assert httpx.post(f"{api}/v1/devices/truck-9/decommission", json={"reason": "again"},
                      headers=admin).status_code == 404

    store2, sync2 = _sync(old)  # the old credentials no longer open the broker
    try:
        assert not sync2.link.wait_connected(5)
    finally:
        sync2.stop()
        store2.close()
    store.close()

    new = enroll_device(srv, tmp_path / "new", "truck-9")
    store3, sync3 = _sync(new)
    try:
        store3.add_note("replacement unit on site", job_id="J-1")
        arrived = wait_for(lambda: srv.store.log.count("truck-9") == 2, 60)  # type: ignore[attr-defined]
        assert arrived, "the new device's first message (seq 1) is applied, not taken for a duplicate"
        assert srv.store.registry.device("truck-9") is not None  # type: ignore[attr-defined]
    finally:
        sync3.stop()
        store3.close()
    audit = httpx.get(f"{api}/v1/audit", params={"target": "device:truck-9"}, headers=admin).json()
    assert [(a["actor"], a["action"], a["reason"]) for a in audit if a["action"] == "device.decommission"] == [
        ("ada", "device.decommission", "truck stolen")]
