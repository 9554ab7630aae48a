"""The README's "Running it for real" block, run as written in a fresh folder against the real parts.

The block is taken from README.md itself, so the README cannot drift from what works. Its background
processes are stopped when the shell exits; the checks afterwards wait for the note to reach the server and
the command to be applied on the device (events, polled through the same CLI a user has).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

VERIFY = r"""
for _ in $(seq 600); do
  linecrew server messages --device truck-17 | grep -q "Pole 7 crossarm cracked" \
    && linecrew agent status --json | grep -q '"commands_applied": 1' && echo VERIFIED && break
  sleep 0.2
done
"""


def _block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Running it for real", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's 'Running it for real' section has no sh block"
    return match.group(1)


def _taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_readme_for_real_block_works_as_written(tmp_path: Path) -> None:
    if any(_taken(p) for p in (8700, 1883, 8883)):
        pytest.skip("the README's default ports 8700/1883/8883 are in use on this machine")
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + _block() + VERIFY
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINECREW_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    # its own process group: on a hang the server, agent and broker it started are stopped with it, not left
    # holding the README's ports for every later run (the test's budget is pytest's 300 s)
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=270)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail("the README block did not finish in 270 s:\n" + stdout[-3000:] + stderr[-3000:])
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert '"ready":true' in out.stdout
    assert "VERIFIED" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert (tmp_path / ".linecrew" / "server" / "server.db").exists(), "the server's data is where server.toml says"
