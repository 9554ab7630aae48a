"""First contact without trust in the network: enrollment over HTTPS pinned by the CA hash the token carries,
request bodies capped, unauthenticated calls rate-limited — against the real server."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from linecrew.agent.enroll import enroll
from linecrew.agent.errors import EnrollmentRefusedError
from linecrew.server.app import Server, server_ca_pem
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.server.pki import ensure_ca
from linecrew.shared.errors import ConfigError
from linecrew.shared.identity import ca_cert_hash, pinned_token
from tests.conftest import running_server

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Server]:
    yield from running_server(tmp_path, http_tls=True, workers=0, unauthenticated_per_s=2.0)  # type: ignore[misc]


def _token(srv: Server) -> str:
    return pinned_token(srv.store.registry.create_enroll_token(ttl_s=600), server_ca_pem(srv.config))


def test_enrollment_over_https_is_pinned_by_the_tokens_ca_hash(tls_server: Server, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{tls_server.config.http_port}"
    token = _token(tls_server)
    secret, ca_hash = token.split(".")
    ca = server_ca_pem(tls_server.config)
    assert ca is not None and ca_cert_hash(ca) == f"sha256:{ca_hash}"

    # a token pinned to another CA (what a man in the middle presents) is refused before anything is sent
    other = Path(ensure_ca(tmp_path / "mitm")[0]).read_text()
    with pytest.raises(EnrollmentRefusedError, match="does not match the hash"):
        enroll(folder=tmp_path / "fooled", server_url=url, token=pinned_token(secret, other), device_id="truck-1",
               device_class="x86-dev")
    assert not (tmp_path / "fooled" / "credentials.json").exists()

    creds = enroll(folder=tmp_path / "dev", server_url=url, token=token, device_id="truck-1", device_class="x86-dev")
    assert creds.username == "truck-1" and (tmp_path / "dev" / "ca.crt").read_text() == ca
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.config.http_port}/healthz", timeout=10)  # no plain HTTP there


def test_plain_http_off_loopback_is_refused_before_anything_starts(tmp_path: Path) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "server", http_host="0.0.0.0", http_port=free_port(),
                       mqtt_port=free_port(), mqtts_port=free_port(), workers=0)
    srv = Server(cfg)
    with pytest.raises(ConfigError, match="http_tls = true"):
        srv.start()
    assert srv.broker.pid is None, "no broker was left running"  # type: ignore[union-attr]
    srv.store.close()


def test_huge_bodies_get_413_and_a_flood_gets_429_while_others_are_served(tls_server: Server) -> None:
    ca = server_ca_pem(tls_server.config)
    assert ca is not None
    ssl_ca = tls_server.config.data_dir / "ca.pem"
    ssl_ca.write_text(ca)
    url = f"https://127.0.0.1:{tls_server.config.http_port}"
    admin = {"Authorization": f"Bearer {tls_server.store.tokens.create('ops', ['admin'])}"}
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ssl_ca)), timeout=60) as http:
        big = http.post("/v1/enroll", content=b"{" + b" " * (4 << 20) + b"}",
                        headers={"content-type": "application/json"})
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b" " * (1 << 20)

        streamed = http.post("/v1/enroll", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, "a body without a declared length is cut off too"
        results: list[int] = []
        flood = [threading.Thread(target=lambda: results.append(http.post("/v1/enroll", json={}).status_code))
                 for _ in range(40)]
        began = time.monotonic()
        for t in flood:
            t.start()
        for t in flood:
            t.join()
        took = time.monotonic() - began
        # the limiter's own arithmetic (burst 20, 2 a second here), not a wall-clock guess: on a slow machine the
        # flood takes longer and more calls earn a token, but never more than the bucket allows
        allowed = 20 + 2.0 * took
        assert results.count(422) <= allowed and results.count(429) >= 1 and set(results) <= {422, 429}, results
        assert http.get("/v1/whoami", headers=admin).status_code == 200, "token holders are not rate-limited"
