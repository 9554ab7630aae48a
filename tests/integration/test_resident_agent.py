"""`linecrew agent run` is the one resident device process: it keeps the assistant warm behind its local API,
and `agent ask`, `agent confirm`, `agent note` and `agent status` use it (one conversation across commands)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from linecrew.agent.local_api import URL_FILE
from tests.conftest import REPO, enroll_device


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_commands_go_through_the_running_agent(server: object, tmp_path: Path) -> None:
    dev = enroll_device(server, tmp_path / "dev", "truck-21")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'data_dir = "{dev}"\nscreen_port = 0\nmetrics_port = 0\nvoice = false\n'
                   f'speech_output = "{tmp_path / "spoken.wav"}"\n')
    agent = subprocess.Popen([sys.executable, "-m", "linecrew.cli", "agent", "run", "--config", str(cfg)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (dev / URL_FILE).exists():  # the agent writes its address once it answers
            assert agent.poll() is None, agent.stdout.read() if agent.stdout else ""
            assert time.monotonic() < deadline, "the agent did not come up"
            time.sleep(0.1)
        status = json.loads(_cli("agent", "status", "--config", str(cfg), "--json").stdout)
        assert status["agent"] == (dev / URL_FILE).read_text()
        first = json.loads(_cli("agent", "ask", "--config", str(cfg), "--json",
                                "which end of the grounds goes on first?").stdout)
        assert "ground-end clamp first" in first["answer"]
        after = json.loads(_cli("agent", "ask", "--config", str(cfg), "--json", "and after that?").stdout)
        assert after["grounded"] and after["citations"][0].startswith("protective-grounding.md#installing-grounds")
        read_back = json.loads(_cli("agent", "ask", "--config", str(cfg), "--json", "we're on site").stdout)
        assert read_back["needs_confirmation"] and read_back["answer"].startswith("No job is set on this device")
        assert _cli("agent", "confirm", "--no", "--config", str(cfg), "--json").returncode == 0
        assert _cli("agent", "job", "set", "--config", str(cfg), "--title", "Replace blown fuse", "J-9").returncode == 0
        read_back = json.loads(_cli("agent", "ask", "--config", str(cfg), "--json", "we're on site").stdout)
        assert read_back["needs_confirmation"] and "job J-9" in read_back["answer"]
        done = json.loads(_cli("agent", "confirm", "--config", str(cfg), "--json").stdout)
        assert done["actions"] == ["job status on_site queued"]
        note = _cli("agent", "note", "--config", str(cfg), "pole 9 guy is slack")
        assert note.returncode == 0 and "stored by the running agent" in note.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
    assert not (dev / URL_FILE).exists()  # a stopped agent is not looked for
    alone = json.loads(_cli("agent", "ask", "--config", str(cfg), "--json", "what fuse for a 25 kva can?").stdout)
    assert "3T" in alone["answer"]  # and without it, the command works in its own process
