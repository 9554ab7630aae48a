"""Enrollment over the real HTTP API, and the CLI end to end against a running server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from linecrew.agent.enroll import enroll
from linecrew.agent.errors import EnrollmentRefusedError
from linecrew.shared.identity import enrollment_challenge, load_or_create_key, public_key_b64, sign_b64
from linecrew.shared.mqtt import wait_for
from tests.conftest import REPO, enroll_device


def test_enrollment_gives_own_credentials_and_refuses_a_reused_token(server: object, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.config.http_port}"  # type: ignore[attr-defined]
    token = server.store.registry.create_enroll_token(ttl_s=60)  # type: ignore[attr-defined]
    creds = enroll(folder=tmp_path / "a", server_url=url, token=token, device_id="dev-a", device_class="rpi5")
    assert creds.username == "dev-a" and creds.broker_url.startswith("mqtts://")
    assert (tmp_path / "a" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a" / "identity.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "a" / "root.json").exists(), "no release root configured on this server"
    with pytest.raises(EnrollmentRefusedError, match="already used"):
        enroll(folder=tmp_path / "b", server_url=url, token=token, device_id="dev-b", device_class="rpi5")
    assert not (tmp_path / "b" / "credentials.json").exists()


def test_enrollment_without_proof_of_key_possession_is_refused(server: object, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.config.http_port}"  # type: ignore[attr-defined]
    token = server.store.registry.create_enroll_token(ttl_s=60)  # type: ignore[attr-defined]
    key = load_or_create_key(tmp_path / "k")
    other = load_or_create_key(tmp_path / "other")
    body = {"token": token, "device_id": "dev-x", "device_class": "x86-dev", "public_key": public_key_b64(key),
            "proof": sign_b64(other, enrollment_challenge("dev-x", token))}
    resp = httpx.post(f"{url}/v1/enroll", json=body)
    assert resp.status_code == 400
    assert server.store.registry.device("dev-x") is None  # type: ignore[attr-defined]


def _files_contain(folder: Path, pattern: str, needle: bytes) -> bool:
    files = list(folder.glob(pattern))
    assert files
    return any(needle in f.read_bytes() for f in files)


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_note_travels_to_server_and_command_comes_back(server: object, tmp_path: Path) -> None:
    dev = enroll_device(server, tmp_path / "dev", "dev-cli")
    _cli("agent", "note", "--dir", str(dev), "--job", "JOB-1", "transformer T4 oil leak")
    status = json.loads(_cli("agent", "status", "--dir", str(dev), "--json"))
    assert status["outbox_depth"] == 1 and status["device_id"] == "dev-cli"
    # the note is sealed at rest on the device
    assert not _files_contain(dev, "agent.db*", b"oil leak")
    agent = subprocess.Popen([sys.executable, "-m", "linecrew.cli", "agent", "run", "--dir", str(dev)], cwd=REPO)
    try:
        assert wait_for(lambda: server.store.log.count("dev-cli") == 1, 30)  # type: ignore[attr-defined]
        server.ingest.send("dev-cli", "command", {"name": "ping", "args": {}})  # type: ignore[attr-defined]
        assert wait_for(lambda: server.store.outbox.depth("dev-cli") == 0, 30)  # type: ignore[attr-defined]
    finally:
        agent.terminate()
        agent.wait(10)
    assert json.loads(_cli("agent", "status", "--dir", str(dev), "--json"))["commands_applied"] == 1
    server_dir = str(server.config.data_dir)  # type: ignore[attr-defined]
    msgs = [json.loads(line) for line in _cli("server", "messages", "--json", "--dir", server_dir).splitlines()]
    assert msgs[0]["payload"]["text"] == "transformer T4 oil leak"
    assert not _files_contain(Path(server_dir), "server.db*", b"oil leak"), "sealed at rest on the server"
    assert _cli("server", "enroll-token", "--dir", server_dir).strip()


def test_enrollment_pins_the_release_root_unless_one_is_pinned_already(tmp_path: Path) -> None:
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from linecrew.server.app import Server
    from linecrew.server.broker import free_port
    from linecrew.server.config import ServerConfig
    from linecrew.shared.release import make_root, public_b64

    key = Ed25519PrivateKey.generate()
    root = make_root(version=1, expires=time.time() + 3600, root_keys=[key], root_threshold=1,
                     release_public=[public_b64(key)], release_threshold=1, signers=[key])
    (tmp_path / "root.json").write_text(json.dumps(root))
    cfg = ServerConfig(data_dir=tmp_path / "srv", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), release_root=tmp_path / "root.json")
    srv = Server(cfg)
    srv.start()
    try:
        url = f"http://127.0.0.1:{cfg.http_port}"
        enroll(folder=tmp_path / "a", server_url=url, token=srv.store.registry.create_enroll_token(ttl_s=60),
               device_id="dev-a", device_class="rpi5")
        assert json.loads((tmp_path / "a" / "root.json").read_text()) == root
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "root.json").write_text('{"pinned": "from the firmware image"}')
        enroll(folder=tmp_path / "b", server_url=url, token=srv.store.registry.create_enroll_token(ttl_s=60),
               device_id="dev-b", device_class="rpi5")
        assert "firmware image" in (tmp_path / "b" / "root.json").read_text()
    finally:
        srv.stop()
