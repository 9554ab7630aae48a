"""The server's MQTT side: ingest device messages, acknowledge after commit, deliver the server outbox.

Server processes subscribe through a shared subscription (``$share/linecrew-server/...``), so more
processes on more machines split the devices' traffic. A received batch is validated message by
message: a bad one is rejected with its reason (logged and, when its id can be read, sent back so the
device dead-letters it) and never stalls the others.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from linecrew.server.store import ServerStore
from linecrew.server.updates import ChunkServer
from linecrew.server.workers import task_message
from linecrew.shared.engine import Pacer, Receiver, SenderLimits, SyncSender
from linecrew.shared.errors import ProtocolError, UnknownMessageTypeError, WrongSenderError
from linecrew.shared.loops import IterationGuard
from linecrew.shared.mqtt import BrokerAddress, MqttLink
from linecrew.shared.protocol import (
    Ack,
    ChunkRequest,
    Message,
    Presence,
    Rejection,
    TaskDone,
    Topics,
    decode,
    encode,
    internal_id,
    make_envelope,
    message_type,
)
from linecrew.shared.sync import Outcome

log = logging.getLogger(__name__)
_ENVELOPE_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9_-]{8,64})"')

# Applied message ids are kept a week for auditing; per-stream sequence numbers keep rejecting
# duplicates after that, so the table stays bounded on a busy fleet.
APPLIED_IDS_KEEP_S = 7 * 86400
PRUNE_EVERY_S = 3600


@dataclass
class IngestStats:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class Ingest:
    def __init__(self, store: ServerStore, address: BrokerAddress, *, client_id: str = "linecrew-server",
                 share_group: str | None = "linecrew-server", limits: SenderLimits | None = None) -> None:
        self.store = store
        self.stats = IngestStats()
        self.receiver = Receiver(self._handle_batch, name="server-ingest")
        self.link = MqttLink(
            client_id=internal_id(client_id),
            address=address,
            subscriptions=Topics.server_subscriptions(share_group),
            on_message=self.receiver.put,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        self.sender = SyncSender(store.outbox, self._publish, Topics.s2d, limits)
        self.pacer = Pacer(self._pump, interval_s=0.2, name="server-sender")
        self.chunks = ChunkServer(store.releases, self.link, rollout_budget=store.rollouts.bandwidth)
        self._pruned_at = 0.0
        self._rollouts_at = 0.0
        self.rollout_tick_s = 1.0
        self._tick_guard = IterationGuard("rollout tick", log, pause_s=0.0)
        self.task_retry_s = 120.0
        self.task_max_attempts = 5

    def _pump(self) -> None:
        if time.monotonic() - self._rollouts_at >= self.rollout_tick_s:
            self._rollouts_at = time.monotonic()
            self._tick_guard.run(self.store.rollouts.tick)  # a failing tick never stops the sender
        self.sender.pump()
        self.dispatch_tasks()
        now = time.time()
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            self.store.inbox.prune(now - APPLIED_IDS_KEEP_S)

    def dispatch_tasks(self) -> int:
        """Publish queued deferred tasks (and re-publish stalled ones) to the worker pool."""
        if not self.link.connected.is_set():
            return 0
        tasks = self.store.tasks.to_dispatch(now=time.time(), retry_after_s=self.task_retry_s,
                                             max_attempts=self.task_max_attempts)
        for t in tasks:
            ctx = self.store.tasks.context(str(t["device_id"]), t["job_id"])
            self.link.publish(Topics.task_run(str(t["kind"])), task_message(t, ctx))
        return len(tasks)

    def start(self) -> None:
        self.receiver.start()
        self.pacer.start()
        self.chunks.start()
        self.link.start()

    def stop(self) -> None:
        self.link.stop()
        self.chunks.stop()
        self.pacer.stop()
        self.receiver.stop()

    def _publish(self, topic: str, body: bytes, expiry_s: int | None) -> None:
        self.link.publish(topic, body, expiry_s=expiry_s)

    def _on_connect(self, session_present: bool) -> None:
        for d in self.store.registry.all():
            if d.online:
                self.sender.peer_online(d.id)
        self.pacer.wake()

    def _on_disconnect(self) -> None:
        self.sender.all_offline()

    # ------------------------------------------------------------------ outbound
    def send(self, device_id: str, type_: str, payload: dict[str, object], *, stream: str = "commands",
             ttl_s: float | None = None, priority: int = 0) -> str:
        """Queue a durable message to a device; delivered when it is online, kept until acknowledged."""
        env = self.store.outbox.put(type_, payload, peer=device_id, stream=stream, ttl_s=ttl_s,
                                    priority=priority, device_id=device_id)
        self.pacer.wake()
        return env.id

    # ------------------------------------------------------------------ inbound
    def _handle_batch(self, items: list[tuple[str, bytes]]) -> None:
        durable: list[tuple[str, Message]] = []
        rejected: dict[str, list[Rejection]] = {}
        dead: list[tuple[str, str | None, str, bytes]] = []  # kept in one transaction for the whole batch
        seen_online: set[str] = set()
        for topic, raw in items:
            self.stats.received += 1
            try:
                if topic == Topics.task_results():
                    self._on_task_done(decode(raw))
                    continue
                device_id, leaf = Topics.parse(topic)
                if not self.store.registry.is_known(device_id):
                    raise WrongSenderError(f"unknown device {device_id}", reason="unknown_device")
                if leaf == "d2s":
                    msg = decode(raw, opener=self.store.opener)
                    if msg.envelope.device_id != device_id:
                        raise WrongSenderError(
                            f"envelope says {msg.envelope.device_id} on {device_id}'s topic", reason="wrong_sender"
                        )
                    if not message_type(msg.type).durable:
                        raise UnknownMessageTypeError(f"{msg.type} is not a device message")
                    durable.append((device_id, msg))
                    if device_id not in seen_online:
                        seen_online.add(device_id)
                        self._mark_online(device_id)
                elif leaf == "s2d/ack":
                    self._on_device_ack(device_id, decode(raw))
                elif leaf == "presence":
                    self._on_presence(device_id, decode(raw))
                elif leaf == "xfer/req":
                    req = decode(raw)
                    if not isinstance(req.payload, ChunkRequest):
                        raise UnknownMessageTypeError(f"expected chunk_request, got {req.type}")
                    self.chunks.request(device_id, req.payload)
            except ProtocolError as e:
                self.stats.rejected[e.reason] += 1
                log.warning("rejected message on %s: %s (%s)", topic, e.reason, e,
                            extra={"device_id": topic.split("/")[3] if topic.count("/") > 3 else None})
                self._reject_back(topic, raw, e, rejected, dead)
        if dead:
            with self.store.db.transaction() as conn:
                for device_id, mid, reason, raw in dead:
                    self.store.inbox.dead_letter(conn, device_id, mid, None, reason, raw)
        if durable:
            result = self.store.inbox.accept(durable, self.store.apply_device_message)
            self.store.audit_refusals(result.rejected)
            if any(m.type == "deferred_task" for _, m in result.applied):
                self.pacer.wake()
            self.stats.applied += result.outcomes.get(Outcome.APPLIED, 0)
            self.stats.duplicates += result.outcomes.get(Outcome.DUPLICATE, 0)
            for device_id, ack in result.acks.items():
                ack.rejected.extend(rejected.pop(device_id, []))
                self._send_ack(device_id, ack)
        for device_id, rej in rejected.items():
            self._send_ack(device_id, Ack(rejected=rej))

    def _reject_back(self, topic: str, raw: bytes, e: ProtocolError, out: dict[str, list[Rejection]],
                     dead: list[tuple[str, str | None, str, bytes]]) -> None:
        """Keep the rejected message for inspection and tell the device which one will never be applied, when its id
        can be read (found by pattern, never by parsing what was just refused)."""
        try:
            device_id, leaf = Topics.parse(topic)
        except ProtocolError:
            return
        if leaf != "d2s" or not self.store.registry.is_known(device_id):
            return
        found = _ENVELOPE_ID.search(raw[:4096])
        mid = found.group(1).decode() if found else None
        reason = f"{e.reason}: {e}"[:500]
        dead.append((device_id, mid, reason, raw))
        if mid is not None:
            out.setdefault(device_id, []).append(Rejection(id=mid, reason=reason))

    def _send_ack(self, device_id: str, ack: Ack) -> None:
        env = make_envelope("ack", ack, device_id=device_id)
        self.link.publish(Topics.d2s_ack(device_id), encode(env))

    def _on_task_done(self, msg: Message) -> None:
        if not isinstance(msg.payload, TaskDone):
            raise UnknownMessageTypeError(f"expected task_done, got {msg.type}")
        p = msg.payload
        if self.store.tasks.complete(p.task_id, ok=p.ok, result=p.result, worker=p.worker):
            self.pacer.wake()

    def _on_device_ack(self, device_id: str, msg: Message) -> None:
        if not isinstance(msg.payload, Ack):
            raise UnknownMessageTypeError(f"expected ack, got {msg.type}")
        self.sender.on_ack(device_id, msg.payload)
        self.pacer.wake()

    def _mark_online(self, device_id: str) -> None:
        """Traffic from a device proves it is online (retained presence skips shared subscriptions)."""
        if device_id not in self.sender.online_peers():
            self.store.registry.set_presence(device_id, True)
            self.sender.peer_online(device_id)
            self.pacer.wake()

    def _on_presence(self, device_id: str, msg: Message) -> None:
        if not isinstance(msg.payload, Presence):
            raise UnknownMessageTypeError(f"expected presence, got {msg.type}")
        self.store.registry.set_presence(device_id, msg.payload.online)
        if msg.payload.online:
            self.sender.peer_online(device_id)
            self.pacer.wake()
        else:
            self.sender.peer_offline(device_id)
