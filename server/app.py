"""The server process: state store, managed (or external) broker, MQTT ingest and the HTTP API."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from linecrew.server.api import create_app
from linecrew.server.broker import BrokerConfig, ManagedBroker, ensure_port_free
from linecrew.server.config import ServerConfig
from linecrew.server.errors import ServerError
from linecrew.server.httpguard import HttpLimits, guard
from linecrew.server.ingest import Ingest
from linecrew.server.pki import ensure_server_cert
from linecrew.server.store import ServerStore
from linecrew.server.workers import TaskWorker, default_handlers
from linecrew.shared.errors import ConfigError
from linecrew.shared.llm import LlmConfig
from linecrew.shared.mqtt import BrokerAddress

log = logging.getLogger(__name__)


class ExternalBroker:
    """A broker someone else runs (EMQX, HiveMQ cluster): credentials are provisioned there."""

    def __init__(self, config: ServerConfig) -> None:
        assert config.broker_url
        self.url = config.broker_url
        self.address = BrokerAddress(
            config.broker_url, config.broker_username, config.broker_password,
            str(config.broker_ca_file) if config.broker_ca_file else None,
        )
        self._ca = config.broker_ca_file

    def add_device(self, device_id: str) -> str:
        raise ServerError("device credentials are managed by the external broker; provision them there")

    def remove_device(self, device_id: str) -> None:
        log.warning("device %s decommissioned: revoke its credentials at the external broker", device_id)

    def device_url(self, host: str | None = None) -> str:
        return self.url

    @property
    def ca_pem(self) -> str:
        return self._ca.read_text() if self._ca else ""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def server_ca_pem(config: ServerConfig) -> str | None:
    """The CA devices are told to trust (the managed broker's project CA, or the external broker's)."""
    if config.broker_url:
        return config.broker_ca_file.read_text() if config.broker_ca_file else None
    ca = config.data_dir / "broker" / "pki" / "ca.crt"
    return ca.read_text() if ca.exists() else None


def _http_tls(config: ServerConfig) -> dict[str, str]:
    """uvicorn's TLS settings: the project CA signs the API's certificate too (same names as the broker's)."""
    if not config.http_tls:
        if not ipaddress.ip_address(socket.gethostbyname(config.http_host)).is_loopback:
            raise ConfigError(f"http_host {config.http_host} is not loopback: set http_tls = true, so enrollment "
                              "(tokens, broker passwords, the release root) never crosses a network in the clear")
        return {}
    crt, key = ensure_server_cert(config.data_dir / "broker" / "pki", list(config.public_hostnames))
    return {"ssl_certfile": str(crt), "ssl_keyfile": str(key)}


def make_broker(config: ServerConfig) -> ManagedBroker | ExternalBroker:
    if config.broker_url:
        return ExternalBroker(config)
    return ManagedBroker(BrokerConfig(
        folder=config.data_dir / "broker", host=config.mqtt_host, port=config.mqtt_port,
        tls_host=config.mqtts_host, tls_port=config.mqtts_port, hostnames=tuple(config.public_hostnames),
    ))


class Server:
    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = ServerStore(config.data_dir, database_url=config.database_url, clock=clock)
        self.broker = make_broker(config)
        self.ingest: Ingest | None = None
        self.workers: list[TaskWorker] = []
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> None:
        tls = _http_tls(self.config)  # a configuration refused here starts nothing
        if self.config.http_port:
            ensure_port_free(self.config.http_host, self.config.http_port, what="HTTP")
        self.broker.start()
        address = self.broker.address if isinstance(self.broker, ExternalBroker) else self.broker.server_address()
        self.ingest = Ingest(self.store, address, client_id=self.config.client_id,
                             share_group=self.config.share_group)
        self.ingest.start()
        handlers = default_handlers(LlmConfig(model_path=self.config.worker_llm_model,
                                              threads=self.config.worker_threads)) if self.config.workers else {}
        self.workers = [TaskWorker(address, worker_id=f"{self.config.client_id}-w{i}", handlers=handlers)
                        for i in range(self.config.workers)]
        for w in self.workers:
            w.start()
        root = self.config.release_root.read_text() if self.config.release_root else None
        app = create_app(self.store, self.broker, root, self.config.cost,
                         broker_connected=self.ingest.link.connected.is_set)
        limits = HttpLimits(max_body_bytes=self.config.max_request_bytes,
                            unauthenticated_per_s=self.config.unauthenticated_per_s)
        cfg = uvicorn.Config(guard(app, limits), host=self.config.http_host, port=self.config.http_port,
                             log_level="warning", **tls)  # type: ignore[arg-type]
        self._http = uvicorn.Server(cfg)
        self._http_thread = threading.Thread(target=self._http.run, name="http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + 30
        while not self._http.started:  # start() returns with the API listening, not merely scheduled
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                raise ServerError(f"the HTTP API did not start on {self.config.http_host}:{self.config.http_port}")
            time.sleep(0.01)
        if not self.ingest.link.wait_connected(15):
            raise ServerError(f"server could not connect to its broker: {self.ingest.link.last_error}")

    def stop(self) -> None:
        if self._http:
            self._http.should_exit = True
        if self._http_thread:
            self._http_thread.join(timeout=5)
        for w in self.workers:
            w.stop()
        if self.ingest:
            self.ingest.stop()
        self.broker.stop()
        self.store.close()
