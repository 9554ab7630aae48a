"""``make demo``: the main job end to end on one machine with embedded defaults.

Server with its managed Mosquitto (TLS for devices) → enrollment token → one agent enrolls →
notes and telemetry go through the durable outbox → the server shows them applied → a command goes
back through the server outbox and is applied once on the device.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from agent.enroll import enroll
from agent.store import SERVER_PEER
from agent.sync import DeviceSync, open_device
from server.app import Server
from server.broker import free_port
from server.config import ServerConfig
from shared.errors import LinecrewError
from shared.mqtt import wait_for


def run_demo(folder: Path, *, notes: int, echo: Callable[[str], None]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    cfg = ServerConfig(data_dir=folder / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port())
    srv = Server(cfg)
    echo(f"[1/5] starting server: HTTP :{cfg.http_port}, Mosquitto :{cfg.mqtt_port} (loopback), "
         f"TLS :{cfg.mqtts_port} for devices")
    srv.start()
    sync: DeviceSync | None = None
    try:
        token = srv.store.create_enroll_token(ttl_s=600, device_class="x86-dev")
        device_dir = folder / "device-1"
        creds = enroll(folder=device_dir, server_url=f"http://127.0.0.1:{cfg.http_port}", token=token,
                       device_id="truck-17", device_class="x86-dev")
        echo(f"[2/5] enrolled device {creds.device_id}: Ed25519 identity, own broker password, "
             f"broker {creds.broker_url}")
        store, address = open_device(device_dir)
        for i in range(notes):
            store.add_note(f"Feeder 12 pole {i + 1}: crossarm cracked, replaced insulator", job_id="JOB-4711")
        store.outbox.put("telemetry", {"metrics": {"battery_pct": 87.0, "cpu_temp_c": 51.5}},
                         peer=SERVER_PEER, stream="telemetry")
        echo(f"[3/5] device offline so far: {store.outbox.depth()} messages committed to its outbox")
        sync = DeviceSync(store, address)
        sync.start()
        if not wait_for(lambda: srv.store.message_count("truck-17") >= notes + 1 and store.outbox.depth() == 0,
                        30):
            raise LinecrewError("demo messages were not applied on the server within 30 s")
        echo(f"[4/5] server applied {srv.store.message_count('truck-17')} messages; device outbox now "
             f"{store.outbox.depth()}:")
        for m in reversed(srv.store.messages("truck-17", limit=notes + 1)):
            echo(f"      {m['type']:<9} {m['stream']}#{m['seq']}  {m['payload']}")
        assert srv.ingest is not None
        srv.ingest.send("truck-17", "command", {"name": "refresh_job", "args": {"job_id": "JOB-4711"}})
        if not wait_for(lambda: len(store.commands()) == 1 and srv.store.outbox.depth("truck-17") == 0, 30):
            raise LinecrewError("the server's command did not reach the device within 30 s")
        cmd = store.commands()[0]
        echo(f"[5/5] device applied server command {cmd['name']} {cmd['args']} exactly once; "
             f"server outbox empty")
    finally:
        if sync:
            sync.stop()
        srv.stop()
        time.sleep(0.1)
