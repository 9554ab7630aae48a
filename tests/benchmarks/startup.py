"""Benchmark: start-up times of the commands a user types most, this tree against a reference commit.

Measured through the command line only (a fresh interpreter each time), so the same script times any
revision: ``linecrew --help``, ``linecrew agent status`` on an enrolled device, and ``linecrew server run``
from exec to ready (``/readyz`` answers 200; a revision without it counts its first HTTP answer).
The reference is a git revision checked out into a temporary worktree and run from there
(``--reference REV``, default: the last commit before the restructure). Medians of several runs; on a slow
machine fewer runs are made and the count is reported.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = "ff665b8"  # the layout before the `linecrew` namespace
RUNS = 7
READY_TIMEOUT_S = 120.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Tree:
    """One revision's command line: ``python -m linecrew.cli`` with the revision first on the path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "linecrew.cli", *args]

    def run(self, *args: str) -> str:
        out = subprocess.run(self.cmd(*args), cwd=self.root, env=self.env, capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()[-400:]}")
        return out.stdout

    def timed(self, *args: str, runs: int = RUNS) -> list[float]:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(*args)
            times.append((time.perf_counter() - t0) * 1000)
        return times


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as e:
        return e.code == 404  # a revision without /readyz: its HTTP API answers
    except OSError:
        return False


def _server(tree: Path, work: Path, run: _Tree) -> tuple[subprocess.Popen[bytes], int, float]:
    http = _port()
    args = ["server", "run", "--dir", str(work / "server"), "--http-port", str(http), "--mqtt-port", str(_port()),
            "--mqtts-port", str(_port())]
    t0 = time.perf_counter()
    proc = subprocess.Popen(run.cmd(*args), cwd=tree, env=run.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not _ready(http):
        if proc.poll() is not None or time.perf_counter() - t0 > READY_TIMEOUT_S:
            proc.kill()
            raise RuntimeError("server did not become ready")
        time.sleep(0.02)
    return proc, http, (time.perf_counter() - t0) * 1000


def measure(tree: Path, runs: int) -> dict[str, float]:
    run = _Tree(tree)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        help_ms = run.timed("--help", runs=runs)
        ready = []
        for i in range(max(1, runs // 2)):
            proc, http, ms = _server(tree, work, run)
            ready.append(ms)
            if i == 0:
                token = run.run("server", "enroll-token", "--dir", str(work / "server")).strip().splitlines()[-1]
                run.run("agent", "enroll", "--dir", str(work / "dev"), "--server", f"http://127.0.0.1:{http}",
                        "--token", token, "--device-id", "bench-1")
            proc.terminate()
            proc.wait(timeout=60)
        status_ms = run.timed("agent", "status", "--dir", str(work / "dev"), runs=runs)
    return {"help_ms": round(statistics.median(help_ms), 1), "agent_status_ms": round(statistics.median(status_ms), 1),
            "server_ready_ms": round(statistics.median(ready), 1), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="git revision to compare against")
    ap.add_argument("--runs", type=int, default=RUNS)
    args = ap.parse_args()
    ours = measure(REPO, args.runs)
    result: dict[str, object] = {"benchmark": "startup", **ours}
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(ref), args.reference],
                              capture_output=True, text=True)
        try:
            if made.returncode == 0:
                result["reference"] = args.reference
                result["reference_figures"] = measure(ref, args.runs)
            else:
                result["reference_error"] = made.stderr.strip()[-200:]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(ref)], capture_output=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
