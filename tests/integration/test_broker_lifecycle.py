"""The managed broker never outlives its server, a taken port stops start-up with a clear message, and a
restarted server replaces a stale broker of its own — through the real command, server and Mosquitto."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from linecrew.server.broker import free_port
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()


class _Run:
    def __init__(self, data: Path) -> None:
        self.data, self.http, self.mqtt, self.mqtts = data, free_port(), free_port(), free_port()

    def args(self) -> list[str]:
        return [sys.executable, "-m", "linecrew.cli", "server", "run", "--data-dir", str(self.data), "--http-port",
                str(self.http), "--mqtt-port", str(self.mqtt), "--mqtts-port", str(self.mqtts)]

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.args(), cwd=REPO, stderr=subprocess.PIPE,
                                env={**os.environ, "LINECREW_SERVER_WORKERS": "0"})
        assert wait_for(lambda: self.ready() or proc.poll() is not None, 60) and proc.poll() is None
        return proc

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.http}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def broker_pid(self) -> int:
        return int((self.data / "broker" / "mosquitto.pid").read_text())


def test_a_killed_servers_broker_goes_with_it_and_the_restart_is_clean(tmp_path: Path) -> None:
    run = _Run(tmp_path / "srv")
    first = run.start()
    old = run.broker_pid()
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert wait_for(lambda: not _alive(old), 30), "the broker died with its server"
    second = run.start()
    try:
        assert run.broker_pid() != old and _alive(run.broker_pid())
        token = subprocess.run([sys.executable, "-m", "linecrew.cli", "server", "enroll-token", "--data-dir",
                                str(run.data)], cwd=REPO, capture_output=True, text=True, timeout=60).stdout.strip()
        from linecrew.agent.enroll import enroll

        enroll(folder=tmp_path / "dev", server_url=f"http://127.0.0.1:{run.http}", token=token, device_id="truck-1",
               device_class="x86-dev")
    finally:
        second.terminate()
        _, err = second.communicate(timeout=60)
    assert err.count(b"restarting") == 0, "no respawn loop"


def test_a_stale_broker_of_this_server_is_replaced(tmp_path: Path) -> None:
    run = _Run(tmp_path / "srv")
    first = run.start()
    first.terminate()
    first.wait(60)
    # a broker left behind (its parent-death signal lost, e.g. started by an older version): same config, alive
    conf = run.data / "broker" / "mosquitto.conf"
    stale = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    (run.data / "broker" / "mosquitto.pid").write_text(f"{stale.pid}\n")
    assert wait_for(lambda: _listening(run.mqtt), 30)
    second = run.start()
    try:
        assert stale.wait(30) is not None, "the stale broker was stopped"
        assert run.broker_pid() != stale.pid and run.ready()
    finally:
        second.terminate()
        second.wait(60)


@pytest.mark.parametrize("taken", ["http", "mqtt"])
def test_a_taken_port_stops_start_up_with_a_clear_message(tmp_path: Path, taken: str) -> None:
    run = _Run(tmp_path / "srv")
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", run.http if taken == "http" else run.mqtt))
    holder.listen()
    try:
        out = subprocess.run(run.args(), cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert out.returncode == 1 and "already in use" in out.stderr and "Traceback" not in out.stderr, out.stderr
    pid_file = run.data / "broker" / "mosquitto.pid"
    assert not pid_file.exists() or not _alive(int(pid_file.read_text())), "nothing was left running"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0

