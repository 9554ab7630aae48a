"""The agent daemon: open the store, keep the link, report telemetry; nothing else lives here."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable

from agent.config import AgentConfig
from agent.store import SERVER_PEER, AgentStore
from agent.sync import DeviceSync, open_device
from shared.engine import SenderLimits
from shared.mqtt import BrokerAddress

log = logging.getLogger(__name__)


def open_configured(cfg: AgentConfig) -> tuple[AgentStore, BrokerAddress]:
    return open_device(cfg.data_dir, synchronous=cfg.sqlite_synchronous,
                       quota_bytes=cfg.outbox_quota_mb * 1024 * 1024, on_full=cfg.outbox_on_full)


def telemetry(store: AgentStore) -> dict[str, float]:
    disk = shutil.disk_usage(store.folder)
    return {
        "outbox_depth": float(store.outbox.depth()),
        "outbox_bytes": float(store.outbox.used_bytes()),
        "disk_free_mb": disk.free / 1e6,
    }


def run_agent(cfg: AgentConfig, wait: Callable[[], None], *, telemetry_every_s: float = 60.0) -> None:
    store, address = open_configured(cfg)
    sync = DeviceSync(store, address, limits=SenderLimits(window=cfg.window, ack_timeout_s=cfg.ack_timeout_s))
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(telemetry_every_s):
            store.outbox.put("telemetry", {"metrics": telemetry(store)}, peer=SERVER_PEER,
                             stream="telemetry", ttl_s=3600)
            sync.notify()

    sync.start()
    threading.Thread(target=report, name="telemetry", daemon=True).start()
    log.info("agent %s running; broker %s", store.device_id, address.url)
    try:
        wait()
    finally:
        stop.set()
        sync.stop()
        store.close()
