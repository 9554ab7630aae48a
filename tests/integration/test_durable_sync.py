"""Durable store-and-forward through a real Mosquitto, with broker restarts and agent SIGKILLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from linecrew.agent.store import AgentStore
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO, enroll_device

N = 10_000
PRODUCER = REPO / "tests" / "integration" / "producer.py"


def _spawn_producer(device_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(PRODUCER), "--dir", str(device_dir), "--count", str(N)],
                            cwd=REPO)


def _applied(srv: object, device_id: str) -> int:
    return srv.store.log.count(device_id)  # type: ignore[attr-defined]


def test_10k_messages_survive_broker_restarts_and_agent_sigkill(server: object, tmp_path: Path) -> None:
    device_dir = enroll_device(server, tmp_path / "dev", "dev-durable")
    broker = server.broker  # type: ignore[attr-defined]

    p = _spawn_producer(device_dir)
    assert wait_for(lambda: _applied(server, "dev-durable") >= 1500, 60)
    broker.stop()  # outage 1: graceful stop, down for a second
    time.sleep(1.0)
    broker.start()
    assert wait_for(lambda: _applied(server, "dev-durable") >= 3500, 90)
    p.send_signal(signal.SIGKILL)  # the agent dies mid-stream
    p.wait()
    time.sleep(0.5)
    p = _spawn_producer(device_dir)
    assert wait_for(lambda: _applied(server, "dev-durable") >= 6000, 90)
    os.kill(broker.pid, signal.SIGKILL)  # outage 2: the broker crashes; the supervisor restarts it
    assert p.wait(timeout=240) == 0
    assert broker.restarts >= 1

    rows = server.store.db.query(  # type: ignore[attr-defined]
        "SELECT id, seq FROM device_messages WHERE device_id='dev-durable' AND stream='events' ORDER BY rowid"
    )
    seqs = [r["seq"] for r in rows]
    assert len(rows) == N, "every message applied (none lost)"
    assert len({r["id"] for r in rows}) == N, "no message applied twice"
    assert seqs == list(range(1, N + 1)), "per-stream order kept"
    store = AgentStore(device_dir, device_id="dev-durable")
    assert store.outbox.depth() == 0
    assert store.outbox.dead_letters() == []


def test_server_to_device_messages_survive_agent_sigkill_and_broker_restart(server: object, tmp_path: Path
                                                                             ) -> None:
    count = 3000
    device_dir = enroll_device(server, tmp_path / "dev", "dev-inbox")
    outbox = server.store.outbox  # type: ignore[attr-defined]
    for start in range(0, count, 500):
        outbox.put_many([("command", {"name": "sync_job", "args": {"n": start + i + 1}}) for i in range(500)],
                        peer="dev-inbox", stream="commands", device_id="dev-inbox")
    agent_cmd = [sys.executable, "-m", "linecrew.cli", "agent", "run", "--dir", str(device_dir)]
    env = {**os.environ, "LINECREW_AGENT_WINDOW": "50"}
    agent = subprocess.Popen(agent_cmd, cwd=REPO, env=env)
    store = AgentStore(device_dir, device_id="dev-inbox")
    assert wait_for(lambda: len(store.commands()) >= 500, 60)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    server.broker.stop()  # type: ignore[attr-defined]
    time.sleep(0.5)
    server.broker.start()  # type: ignore[attr-defined]
    agent = subprocess.Popen(agent_cmd, cwd=REPO, env=env)
    try:
        assert wait_for(lambda: outbox.depth("dev-inbox") == 0, 120), "server outbox drained by device acks"
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    cmds = store.db.query("SELECT seq, args FROM commands ORDER BY rowid")
    assert [c["seq"] for c in cmds] == list(range(1, count + 1)), "each applied once, in order"
