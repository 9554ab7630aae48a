"""Two server processes on one PostgreSQL database share the devices' traffic through the MQTT shared
subscription: every message applied exactly once, and both take a share."""

from __future__ import annotations

from pathlib import Path

from linecrew.server.app import Server
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.shared.mqtt import wait_for
from linecrew.tools.simulator import Fleet, enroll_fleet


def test_two_servers_on_postgres_split_the_traffic_and_apply_each_message_once(tmp_path: Path,
                                                                                postgres: object) -> None:
    url = postgres.create_database()  # type: ignore[attr-defined]
    a_cfg = ServerConfig(data_dir=tmp_path / "server", http_port=free_port(), mqtt_port=free_port(),
                         mqtts_port=free_port(), database_url=url, workers=0, client_id="server-a")
    a = Server(a_cfg)
    a.start()
    address = a.broker.server_address()  # type: ignore[union-attr]
    b_cfg = ServerConfig(data_dir=tmp_path / "server", http_port=free_port(), database_url=url, workers=0,
                         client_id="server-b", broker_url=address.url, broker_username=address.username,
                         broker_password=address.password)
    b = Server(b_cfg)
    b.start()
    fleet = None
    try:
        ids, ca, _ = enroll_fleet(f"http://127.0.0.1:{a_cfg.http_port}",
                                  lambda cls, tags: a.store.registry.create_enroll_token(ttl_s=600),
                                  count=12, classes={"x86-dev": 1.0}, tags=[])
        (tmp_path / "ca.crt").write_text(ca)
        fleet = Fleet(ids, ca_file=str(tmp_path / "ca.crt"), root=None)
        fleet.start()
        assert fleet.wait_connected(30)
        per_device = 50
        for k in range(per_device):
            for d in fleet.devices.values():
                d.send("telemetry", {"metrics": {"seq": k}}, "telemetry")
        assert wait_for(lambda: fleet.unacked() == 0, 120, interval=0.1), fleet.unacked()
        n = len(ids) * per_device
        assert a.store.db.scalar("SELECT COUNT(*) FROM device_messages WHERE type='telemetry'") == n
        assert a.store.db.scalar("SELECT COUNT(DISTINCT id) FROM device_messages") == a.store.db.scalar(
            "SELECT COUNT(*) FROM device_messages")
        assert a.ingest and b.ingest
        assert a.ingest.stats.received > 0 and b.ingest.stats.received > 0, "both servers took a share"
    finally:
        if fleet:
            fleet.stop()
        b.stop()
        a.stop()
