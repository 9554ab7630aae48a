"""The rollout and fleet commands as an operator runs them: `linecrew fleet simulate` in its own process,
`linecrew rollout ...` over the admin API with role tokens, against a real server and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linecrew.server.app import Server
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO
from tests.integration.test_updates import Fleet as Authority


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("authority"))


@pytest.fixture
def srv(tmp_path: Path, authority: Authority) -> Iterator[Server]:
    cfg = ServerConfig(data_dir=tmp_path / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), release_root=authority.folder / "root.json", workers=0)
    s = Server(cfg)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _cli(*args: str, token: str | None = None, url: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LINECREW_URL": url}
    if token:
        env["LINECREW_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_operator_rehearses_a_rollout_on_a_simulated_fleet(srv: Server, authority: Authority,
                                                           tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{srv.config.http_port}"
    data = str(srv.config.data_dir)
    srv.store.releases.add(authority.manifest("B", 2, device_classes=["rpi5", "x86-dev"]), authority.models["B"],
                           [authority.deltas[("A", "B")]])
    admin = _cli("server", "token", "create", "--dir", data, "--name", "ops", "--role", "admin").stdout.strip()
    rm = _cli("server", "token", "create", "--dir", data, "--name", "rita", "--role", "release-manager").stdout.strip()
    rm2 = _cli("server", "token", "create", "--dir", data, "--name", "sam", "--role", "release-manager").stdout.strip()
    planner = _cli("server", "token", "create", "--dir", data, "--name", "paul", "--role", "planner").stdout.strip()
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps(authority.manifest("A", 1, device_classes=["rpi5", "x86-dev"])))
    sim = subprocess.Popen([sys.executable, "-m", "linecrew.cli", "fleet", "simulate", "--devices", "8",
                            "--classes", "rpi5=0.5,x86-dev=0.5", "--tag", "pilot", "--installed", str(v1),
                            "--state", str(tmp_path / "fleet.json"), "--duration", "90"],
                           cwd=REPO, env={**os.environ, "LINECREW_URL": url, "LINECREW_TOKEN": admin},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: sum(1 for d in srv.store.fleet() if d["version"] == 1) == 8, 60), srv.store.fleet()
        assert all(d["tags"] == ["pilot"] for d in srv.store.fleet())
        created = _cli("rollout", "create", "smollm2-field", "2", "--tag", "pilot", "--waves", "25,100",
                       "--soak", "1", "--json", token=rm, url=url)
        assert created.returncode == 0, created.stderr
        rid = json.loads(created.stdout)["id"]
        refused = _cli("rollout", "approve", rid, token=planner, url=url)
        assert refused.returncode == 1 and "403" in refused.stderr and "release-manager" in refused.stderr
        assert "approved" not in refused.stdout
        own = _cli("rollout", "approve", rid, "--reason", "pilot", token=rm, url=url)
        assert own.returncode == 1 and "two-person rule" in own.stderr
        assert _cli("rollout", "approve", rid, "--reason", "pilot", token=rm2, url=url).returncode == 0
        started = _cli("rollout", "start", rid, token=rm, url=url)
        assert started.returncode == 0 and "running" in started.stdout, started.stderr

        def state() -> dict[str, object]:
            return json.loads(_cli("rollout", "status", rid, "--json", token=planner, url=url).stdout)  # type: ignore[no-any-return]

        assert wait_for(lambda: state()["state"] == "finished", 60, interval=0.5), state()
        st = state()
        assert st["counts"] == {"healthy": 8}
        assert st["bytes_sent"] == 8 * authority.deltas[("A", "B")].stat().st_size
        table = _cli("rollout", "status", rid, token=planner, url=url).stdout
        assert "finished" in table and "healthy" in table
    finally:
        sim.terminate()
        out, _ = sim.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["versions"] == {"2": 8} and summary["committed"] == 8
