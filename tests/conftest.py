"""Fixtures: each test gets its own folders, its own ports and its own Mosquitto."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def _have_mosquitto() -> bool:
    return bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())


def running_server(tmp_path: Path, **settings: object) -> Iterator[object]:
    """A real server on free ports in ``tmp_path`` (managed Mosquitto, SQLite, HTTP API, ingest), stopped after."""
    if not _have_mosquitto():
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    from linecrew.server.app import Server
    from linecrew.server.broker import free_port
    from linecrew.server.config import ServerConfig

    if not shutil.which("mosquitto"):
        os.environ["PATH"] = "/usr/sbin:" + os.environ["PATH"]
    cfg = ServerConfig(data_dir=tmp_path / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), **settings)  # type: ignore[arg-type]
    srv = Server(cfg)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[object]:
    """A real server: managed Mosquitto (plain + TLS listeners), SQLite store, HTTP API, ingest."""
    yield from running_server(tmp_path)


def enroll_device(srv: object, folder: Path, device_id: str, device_class: str = "x86-dev") -> Path:
    from linecrew.agent.enroll import enroll

    token = srv.store.registry.create_enroll_token(ttl_s=600)  # type: ignore[attr-defined]
    enroll(folder=folder, server_url=f"http://127.0.0.1:{srv.config.http_port}",  # type: ignore[attr-defined]
           token=token, device_id=device_id, device_class=device_class)
    return folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """One throwaway local PostgreSQL cluster for the session; each test creates its own database."""
    from tests.helpers.postgres import LocalPostgres

    pg = LocalPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()
