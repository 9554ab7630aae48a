"""The device's link to the server: publish the outbox, apply the inbox, announce presence.

Order of duties per the protocol: a message is in SQLite before it is published; an acknowledgement
from the server deletes it; a server message is applied and recorded in one transaction before the
device acknowledges it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from linecrew.agent.config import AgentConfig
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.shared.engine import Pacer, Receiver, SenderLimits, SyncSender
from linecrew.shared.errors import ProtocolError
from linecrew.shared.mqtt import BrokerAddress, MqttLink
from linecrew.shared.protocol import LINECREW_VERSION, Ack, Message, Presence, Topics, decode, encode, make_envelope
from linecrew.shared.sync import Backoff

log = logging.getLogger(__name__)



class DeviceSync:
    def __init__(self, store: AgentStore, address: BrokerAddress, *, limits: SenderLimits | None = None,
                 pump_interval_s: float = 0.2) -> None:
        self.store = store
        self.device_id = store.device_id
        self.rejected = 0
        self.receiver = Receiver(self._handle_batch, name="device-inbox")
        self.binary: dict[str, Callable[[bytes, dict[str, str]], None]] = {}  # raw topics (update chunks)
        offline = encode(make_envelope("presence", Presence(online=False), device_id=self.device_id))
        self.link = MqttLink(
            client_id=self.device_id,
            address=address,
            subscriptions=[Topics.d2s_ack(self.device_id), Topics.s2d(self.device_id),
                           Topics.xfer_data(self.device_id)],
            on_binary=self.binary,
            on_message=self.receiver.put,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            will=(Topics.presence(self.device_id), offline),
            backoff=Backoff(base_s=0.2, cap_s=15.0),
        )
        self.on_applied: Callable[[], None] | None = None  # after server messages were committed (announcer)
        self.sender = SyncSender(store.outbox, self._publish, lambda _peer: Topics.d2s(self.device_id), limits)
        self.pacer = Pacer(self.sender.pump, interval_s=pump_interval_s, name="device-sender")

    def start(self) -> None:
        self.receiver.start()
        self.pacer.start()
        self.link.start()

    def stop(self) -> None:
        self.link.stop()
        self.store.put("link", {"online": False, "since": time.time()})
        self.pacer.stop()
        self.receiver.stop()

    def notify(self) -> None:
        """Something was put in the outbox: send it now rather than at the next tick."""
        self.pacer.wake()

    def _publish(self, topic: str, body: bytes, expiry_s: int | None) -> None:
        self.link.publish(topic, body, expiry_s=expiry_s)

    def _on_connect(self, session_present: bool) -> None:
        online = make_envelope("presence", Presence(online=True, agent_version=LINECREW_VERSION),
                               device_id=self.device_id)
        self.link.publish(Topics.presence(self.device_id), encode(online), retain=True)
        self.sender.peer_online(SERVER_PEER)
        self.store.put("link", {"online": True, "since": time.time()})
        self.pacer.wake()

    def _on_disconnect(self) -> None:
        self.sender.peer_offline(SERVER_PEER)
        self.store.put("link", {"online": False, "since": time.time()})

    def _handle_batch(self, items: list[tuple[str, bytes]]) -> None:
        inbound: list[tuple[str, Message]] = []
        for topic, raw in items:
            try:
                msg = decode(raw, opener=self.store.opener)
                if topic.endswith("/d2s/ack"):
                    if isinstance(msg.payload, Ack):
                        self.sender.on_ack(SERVER_PEER, msg.payload)
                        self.pacer.wake()
                elif topic.endswith("/s2d"):
                    inbound.append((SERVER_PEER, msg))
            except ProtocolError as e:
                self.rejected += 1
                log.warning("rejected server message on %s: %s (%s)", topic, e.reason, e)
        if inbound:
            result = self.store.inbox.accept(inbound, self.store.apply_server_message)
            ack = result.acks.get(SERVER_PEER)
            if ack is not None:
                env = make_envelope("ack", ack, device_id=self.device_id)
                self.link.publish(Topics.s2d_ack(self.device_id), encode(env))
            if self.on_applied is not None:
                self.on_applied()


def open_device(folder: Path, *, synchronous: str = "FULL", quota_bytes: int | None = None,
                on_full: str = "reject") -> tuple[AgentStore, BrokerAddress]:
    """Open an enrolled device's store and broker address from its data folder."""
    from linecrew.agent import identity
    from linecrew.shared.sync import OutboxLimits

    creds = identity.load(folder)
    limits = OutboxLimits(quota_bytes=quota_bytes or OutboxLimits().quota_bytes, on_full=on_full)  # type: ignore[arg-type]
    store = AgentStore(folder, device_id=creds.device_id, limits=limits, synchronous=synchronous)
    return store, creds.address(folder)


def open_configured(cfg: AgentConfig) -> tuple[AgentStore, BrokerAddress]:
    """An enrolled device's store (with the configured outbox limits) and its broker address."""
    return open_device(cfg.data_dir, synchronous=cfg.sqlite_synchronous,
                       quota_bytes=cfg.outbox_quota_mb * 1024 * 1024, on_full=cfg.outbox_on_full)
