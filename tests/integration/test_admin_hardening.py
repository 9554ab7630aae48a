"""The smaller holes, through the real server: the audit limit is bounded, no page loads a CDN, state files are
private, a rollout needs a second person, and a malformed manifest is one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_the_running_server_keeps_its_small_promises(server: object, tmp_path: Path) -> None:
    srv = server
    api = f"http://127.0.0.1:{srv.config.http_port}"  # type: ignore[attr-defined]
    admin = {"Authorization": f"Bearer {srv.store.tokens.create('ada', ['admin'])}"}  # type: ignore[attr-defined]
    assert httpx.get(f"{api}/v1/audit", params={"limit": -1}, headers=admin).status_code == 422
    assert len(httpx.get(f"{api}/v1/audit", params={"limit": 1}, headers=admin).json()) == 1
    for page in ("/docs", "/redoc"):
        assert httpx.get(api + page).status_code == 404
    dashboard = httpx.get(f"{api}/dashboard/").text
    assert "cdn" not in dashboard.lower() and "https://" not in dashboard
    data = srv.config.data_dir  # type: ignore[attr-defined]
    assert data.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in data.glob("server.db*"))
    bad = tmp_path / "v2.json"
    bad.write_text('{"signed": {"name": "smollm2-field"}}')
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", "server", "release", "add", str(bad), str(bad),
                          "--data-dir", str(data)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("Error: ") and "Traceback" not in out.stderr, out.stderr
