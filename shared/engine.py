"""The sync engine both sides run: publish an outbox to online peers, apply inbound batches.

``SyncSender`` keeps a window of unacknowledged messages per peer, retries on a jittered schedule and
honours resend requests. ``Receiver`` drains the network thread's queue into batches, so one SQLite
transaction (and one fsync) covers many messages and one ``ack`` answers them all.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from linecrew.shared.loops import IterationGuard
from linecrew.shared.protocol import Ack
from linecrew.shared.sync import Backoff, Outbox, RetrySchedule

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, "int | None"], object]  # topic, body, MQTT message expiry (s)


@dataclass(frozen=True)
class SenderLimits:
    window: int = 1000  # messages in flight per peer
    ack_timeout_s: float = 5.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))


class SyncSender:
    """Publishes pending outbox rows to each online peer, at most ``window`` unacknowledged."""

    def __init__(self, outbox: Outbox, publish: Publish, topic_for: Callable[[str], str],
                 limits: SenderLimits | None = None) -> None:
        self.outbox = outbox
        self.publish = publish
        self.topic_for = topic_for
        self.limits = limits or SenderLimits()
        self._schedules: dict[str, RetrySchedule] = {}
        self._lock = threading.Lock()

    def peer_online(self, peer: str) -> None:
        """A (re)connected peer: whatever was in flight is unknown, so it all goes again."""
        with self._lock:
            self._schedules[peer] = RetrySchedule(self.limits.backoff, ack_timeout_s=self.limits.ack_timeout_s)

    def peer_offline(self, peer: str) -> None:
        with self._lock:
            self._schedules.pop(peer, None)

    def all_offline(self) -> None:
        with self._lock:
            self._schedules.clear()

    def online_peers(self) -> list[str]:
        with self._lock:
            return list(self._schedules)

    def on_ack(self, peer: str, ack: Ack) -> int:
        deleted = self.outbox.acknowledge(peer, ack.ids, ack.rejected)
        with self._lock:
            sched = self._schedules.get(peer)
            if sched is not None:
                sched.done(ack.ids)
                sched.done(r.id for r in ack.rejected)
                for rs in ack.resend:
                    sched.forget_stream_from(rs.stream, rs.from_seq)
        for rj in ack.rejected:
            log.warning("peer %s rejected message %s: %s", peer, rj.id, rj.reason)
        return deleted

    def pump(self, now: float | None = None) -> int:
        """Publish what is due for every online peer; returns how many messages went out."""
        now = time.monotonic() if now is None else now
        sent = 0
        for peer in self.online_peers():
            sent += self._pump_peer(peer, now)
        return sent

    def _pump_peer(self, peer: str, now: float) -> int:
        with self._lock:
            sched = self._schedules.get(peer)
            if sched is None:
                return 0
            due = set(sched.due(now))
            waiting = sched.in_flight() - due
        room = self.limits.window - len(waiting)
        if room <= 0:
            return 0
        batch = self.outbox.pending(peer, limit=room, exclude=waiting)
        if not batch:
            with self._lock:
                sched.done(due)  # due ids no longer in the outbox were acknowledged meanwhile
            return 0
        topic = self.topic_for(peer)
        wall = time.time()
        for p in batch:
            # A stale message still goes (the receiver must advance its stream), but the broker may
            # drop it from an offline queue: the receiver then asks for a resend and sees it expired.
            expiry = None if p.expires is None else max(1, int(p.expires - wall))
            self.publish(topic, p.body, expiry)
        with self._lock:
            for p in batch:
                sched.sent(p, now)
            still = {p.id for p in batch}
            sched.done(due - still)
        return len(batch)


class Receiver:
    """Drains ``(topic, payload)`` items from the network thread and hands them on in batches."""

    def __init__(self, handle_batch: Callable[[list[tuple[str, bytes]]], None], *, max_batch: int = 2000,
                 name: str = "receiver") -> None:
        self.queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.handle_batch = handle_batch
        self.max_batch = max_batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def put(self, topic: str, payload: bytes) -> None:
        self.queue.put((topic, payload))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        guard = IterationGuard(self._thread.name, log, stop=self._stop)
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            guard.run(functools.partial(self.handle_batch, batch),
                      context=f"batch of {len(batch)}, left unacknowledged")


class Pacer:
    """Runs ``fn`` every ``interval_s`` or sooner when :meth:`wake` is called, on its own thread."""

    def __init__(self, fn: Callable[[], object], *, interval_s: float = 0.2, name: str = "pacer") -> None:
        self.fn = fn
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        guard = IterationGuard(self._thread.name, log, stop=self._stop)
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            guard.run(self.fn)
