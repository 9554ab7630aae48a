"""`make demo` stays true: the whole tour runs from a clean folder and says what it proved."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_demo_tour_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "demo", "--dir", str(tmp_path / "demo"),
                          "--no-keep"], cwd=REPO, capture_output=True, text=True, timeout=280,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert [int(n) for n in re.findall(r"^\[(\d+)/12\]", text, re.M)] == list(range(1, 13)), text
    assert "5 simulated devices enrolled" in text
    assert "pushed and acknowledged by truck-17 and sim-" in text
    assert "expert Dana (control center) answered on the device" in text
    assert re.search(r"finished: 5 devices healthy on v2; [\d.]+ KB sent instead of \d+ MB", text), text
    assert re.search(r"fleet metrics: 2 assistant requests, p50/p95/p99 [\d.]+/[\d.]+/[\d.]+ s", text), text
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard/#token=lct_\S+", text), text
    assert "Traceback" not in out.stderr and " INFO " not in out.stderr
