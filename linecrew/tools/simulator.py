"""A fleet of simulated devices: real MQTT clients speaking the real protocol to the real server.

Each simulated device runs the device's own code where the protocol lives: it enrolls with the agent's
enrollment request (one-time token, Ed25519 proof, its own broker password); its messages go through the
real ``Outbox`` and ``SyncSender`` (stream sequences, retries, resends on request) and server messages
through the real ``Inbox`` (exactly once, in order, a gap asks for a resend); its update walks the
agent's A/B transition table (``agent.update_machine``) and reports each state as a device does. Only the
parts that touch a disk or a model are simulated: the outbox and inbox live in an in-memory SQLite
database, chunks are hashed and not kept, and "install" passes or fails its health check as the fleet's
behaviour says. So thousands run in one process, and a protocol change that breaks devices breaks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from linecrew.agent.enroll import enrollment_request, post_enrollment
from linecrew.agent.store import SERVER_PEER
from linecrew.agent.update_machine import Event, is_resting, next_state
from linecrew.shared.db import Database
from linecrew.shared.engine import SenderLimits, SyncSender
from linecrew.shared.errors import ProtocolError, ReleaseError
from linecrew.shared.fsutil import atomic_write_text
from linecrew.shared.identity import split_token
from linecrew.shared.mqtt import BrokerAddress, MqttLink
from linecrew.shared.protocol import (
    Ack,
    ChunkRequest,
    Command,
    Presence,
    Stream,
    Topics,
    UpdateOffer,
    UpdateState,
    decode,
    encode,
    make_envelope,
)
from linecrew.shared.release import check_delta_base, load_trusted_root, verify_release
from linecrew.shared.sync import Inbox, Outbox, dead_letter_migration, sync_migration

log = logging.getLogger(__name__)

RESEND_AFTER_S = 5.0
CHUNK_WINDOW = 16


@dataclass
class SimIdentity:
    device_id: str
    device_class: str
    tags: list[str]
    broker_url: str
    password: str
    version: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Behaviour:
    """How a simulated device misbehaves: its health check fails, or it never answers offers."""

    fail: bool = False
    silent: bool = False


def choose_behaviours(ids: list[SimIdentity], *, fail_rate: float = 0.0, fail_class: str | None = None,
                      silent_rate: float = 0.0, seed: int = 7) -> dict[str, Behaviour]:
    """With ``fail_class`` only that class fails (all of it, or ``fail_rate`` of it); else ``fail_rate`` of all."""
    rnd = random.Random(seed)
    out = {}
    for d in ids:
        if fail_class is not None:
            fail = d.device_class == fail_class and (not fail_rate or rnd.random() < fail_rate)
        else:
            fail = rnd.random() < fail_rate
        out[d.device_id] = Behaviour(fail=fail, silent=rnd.random() < silent_rate)
    return out


# ------------------------------------------------------------------------------------------ enrollment
def enroll_fleet(server_url: str, make_token: Callable[[str, list[str]], str], *, count: int,
                 classes: dict[str, float], tags: list[str], prefix: str = "sim",
                 version: int | None = None, sha256: str | None = None) -> tuple[list[SimIdentity], str, str | None]:
    """Enroll ``count`` devices, classes in the given proportions; returns them, the CA and the root."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    names = sorted(classes)
    weights = [classes[c] for c in names]
    rnd = random.Random(count)
    out: list[SimIdentity] = []
    ca, root = "", None
    with httpx.Client(base_url=server_url.rstrip("/"), timeout=60) as http:
        for i in range(count):
            cls = names[i % len(names)] if len(names) == count else rnd.choices(names, weights)[0]
            if i < len(names):
                cls = names[i]  # every class present even in a tiny fleet
            device_id = f"{prefix}-{cls}-{i:05d}"[:63]
            token = make_token(cls, tags)
            body = enrollment_request(Ed25519PrivateKey.generate(), token=split_token(token)[0],
                                      device_id=device_id, device_class=cls, seal_key=X25519PrivateKey.generate())
            data = post_enrollment(http, body)
            ca, root = data["ca_pem"], data.get("trust_root")
            out.append(SimIdentity(device_id, cls, sorted(tags), data["broker_url"], data["password"], version, sha256))
    return out, ca, root


def save_fleet(path: Path, ids: list[SimIdentity], ca: str, root: str | None) -> None:
    """Credentials of a simulated fleet (0600), so a later run brings the same devices back."""
    atomic_write_text(path, json.dumps({"ca": ca, "root": root, "devices": [asdict(d) for d in ids]}), mode=0o600)


def load_fleet(path: Path) -> tuple[list[SimIdentity], str, str | None]:
    doc = json.loads(path.read_text())
    return [SimIdentity(**d) for d in doc["devices"]], doc["ca"], doc["root"]


# ------------------------------------------------------------------------------------------ one device
@dataclass
class _Download:
    offer: UpdateOffer
    pending: dict[int, bytes] = field(default_factory=dict)
    next_idx: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    asked: set[int] = field(default_factory=set)
    asked_at: float = 0.0
    last_chunk_at: float = 0.0


class SimDevice:
    def __init__(self, ident: SimIdentity, *, ca_file: str, root: dict[str, Any] | None,
                 behaviour: Behaviour, stats: FleetStats) -> None:
        self.ident = ident
        self.id = ident.device_id
        self.behaviour = behaviour
        self.stats = stats
        self.root = load_trusted_root(root, now=time.time()) if root else None
        self.version, self.sha256 = ident.version, ident.sha256
        self.slots: dict[str, int | None] = {"a": ident.version, "b": None}
        self.active = "a"
        self.previous: tuple[int | None, str | None] = (None, None)
        self.health: str | None = None
        self.update_state = UpdateState.IDLE
        self._lock = threading.RLock()
        self.db = Database(":memory:", synchronous="OFF")
        self.db.migrate([sync_migration(1), dead_letter_migration(2)])
        self.outbox = Outbox(self.db, sender_id=self.id)
        self.inbox = Inbox(self.db)
        self.sender = SyncSender(self.outbox, self._publish, lambda _peer: Topics.d2s(self.id),
                                 SenderLimits(window=CHUNK_WINDOW * 4, ack_timeout_s=RESEND_AFTER_S))
        self._download: _Download | None = None
        self._started = False
        self._address = BrokerAddress(ident.broker_url, self.id, ident.password, ca_file)
        self.link = self._new_link()

    def _new_link(self) -> MqttLink:
        return MqttLink(
            client_id=self.id, address=self._address,
            subscriptions=[Topics.s2d(self.id), Topics.d2s_ack(self.id), Topics.xfer_data(self.id)],
            on_message=self._on_message, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            will=(Topics.presence(self.id), self._presence(False)),
            on_binary={Topics.xfer_data(self.id): self._on_chunk}, keepalive_s=20,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.link.start()

    def go_offline(self) -> None:
        """Leave (presence offline, as the will would say); ``start`` brings the device back."""
        if self.link.connected.is_set():
            self.link.publish(Topics.presence(self.id), self._presence(False), retain=True).wait_for_publish(5)
        self.link.stop()
        self.sender.peer_offline(SERVER_PEER)
        with self._lock:
            self.link = self._new_link()
        self.stats.add("offline")

    def _presence(self, online: bool) -> bytes:
        return encode(make_envelope("presence", Presence(online=online, agent_version="sim"), device_id=self.id))

    def _on_connect(self, session_present: bool) -> None:
        self.link.publish(Topics.presence(self.id), self._presence(True), retain=True)
        self.sender.peer_online(SERVER_PEER)
        with self._lock:
            first = not self._started
            self._started = True
        if first:
            self.report(UpdateState.IDLE)
        self.sender.pump()

    def _on_disconnect(self) -> None:
        self.sender.peer_offline(SERVER_PEER)

    def _publish(self, topic: str, body: bytes, expiry_s: int | None) -> None:
        self.link.publish(topic, body, expiry_s=expiry_s)

    # ------------------------------------------------------------------ durable device → server
    def send(self, type_: str, payload: dict[str, Any], stream: Stream) -> None:
        self.outbox.put(type_, payload, peer=SERVER_PEER, stream=stream)
        self.stats.add("sent")
        self.sender.pump()

    def report(self, state: UpdateState, *, offer_id: str | None = None, progress: float = 0.0,
               error: str | None = None) -> None:
        self.send("update_report", {"offer_id": offer_id, "state": state, "version": self.version,
                                    "sha256": self.sha256, "progress": progress, "error": error,
                                    "slots": dict(self.slots), "health": self.health}, Stream.UPDATES)

    def _on_ack(self, ack: Ack) -> None:
        self.stats.add("acked", self.sender.on_ack(SERVER_PEER, ack) - len(ack.rejected))
        self.stats.add("rejected", len(ack.rejected))
        self.sender.pump()

    def unacked(self) -> int:
        return self.outbox.depth()

    def resend_stale(self, now: float) -> None:
        """Whatever the retry schedule says is due (unacknowledged past its timeout) goes again."""
        self.sender.pump(now)

    # ------------------------------------------------------------------ server → device
    def _on_message(self, topic: str, raw: bytes) -> None:
        try:
            msg = decode(raw)
        except ProtocolError as e:
            log.warning("%s: bad message on %s: %s", self.id, topic, e)
            return
        if topic == Topics.d2s_ack(self.id):
            if isinstance(msg.payload, Ack):
                self._on_ack(msg.payload)
            return
        after: list[Callable[[], None]] = []
        result = self.inbox.accept([(SERVER_PEER, msg)], lambda _c, _p, m: self._apply(m.payload, after))
        ack = result.acks.get(SERVER_PEER)
        if ack is not None:
            self.link.publish(Topics.s2d_ack(self.id), encode(make_envelope("ack", ack, device_id=self.id)))
        for step in after:  # side effects once the message is recorded as applied, as on a device
            step()

    def _apply(self, p: object, after: list[Callable[[], None]]) -> None:
        if isinstance(p, UpdateOffer):
            self.stats.add("offers")
            if not self.behaviour.silent:
                after.append(lambda: self._begin(p))
        elif isinstance(p, Command) and p.name == "update_rollback":
            args = dict(p.args)
            after.append(lambda: self._rollback(args))

    def _begin(self, offer: UpdateOffer) -> None:
        with self._lock:
            self._download = _Download(offer)
        self.report(UpdateState.DOWNLOADING, offer_id=offer.offer_id)
        self._ask(time.monotonic())

    def _advance(self, event: Event) -> UpdateState:
        with self._lock:
            self.update_state = next_state(self.update_state, event)
            return self.update_state

    def _rollback(self, args: dict[str, Any]) -> None:
        with self._lock:
            d = self._download
            if d is not None and d.offer.offer_id == args.get("offer_id"):
                self._download = None
            if self.version == args.get("version") and self.previous[0] is not None and is_resting(self.update_state):
                self._advance(Event.ROLLBACK)
                self.version, self.sha256 = self.previous
                self.active = "b" if self.active == "a" else "a"
                self._advance(Event.SWITCHED_BACK)
        self.stats.add("rollbacks")
        self.report(UpdateState.ROLLED_BACK, offer_id=str(args.get("offer_id")))

    # ------------------------------------------------------------------ download
    def _ask(self, now: float) -> None:
        with self._lock:
            d = self._download
            if d is None or not self.link.connected.is_set():
                return
            want = [i for i in range(d.next_idx, d.offer.chunks)
                    if i not in d.pending and i not in d.asked][:max(0, CHUNK_WINDOW - len(d.asked))]
            d.asked.update(want)
            d.asked_at = now
        if want:
            req = ChunkRequest(offer_id=d.offer.offer_id, indexes=want)
            self.link.publish(Topics.xfer_request(self.id),
                              encode(make_envelope("chunk_request", req, device_id=self.id)))

    def _on_chunk(self, data: bytes, props: dict[str, str]) -> None:
        with self._lock:
            d = self._download
            if d is None or props.get("offer") != d.offer.offer_id:
                return
            idx = int(props.get("index", -1))
            if not 0 <= idx < d.offer.chunks or hashlib.sha256(data).hexdigest() != props.get("sha256"):
                self.stats.add("bad_chunks")
                return
            self.stats.add("bytes", len(data))
            d.last_chunk_at = time.monotonic()
            d.asked.discard(idx)
            if idx >= d.next_idx and idx not in d.pending:
                d.pending[idx] = data
            while d.next_idx in d.pending:
                d.hasher.update(d.pending.pop(d.next_idx))
                d.next_idx += 1
            done = d.next_idx >= d.offer.chunks
            more = not done and len(d.asked) <= CHUNK_WINDOW // 2
        if done:
            self._install(d)
        elif more:
            self._ask(time.monotonic())

    def stalled(self, now: float) -> None:
        d = self._download
        if d is not None and now - max(d.asked_at, d.last_chunk_at) > RESEND_AFTER_S:
            with self._lock:
                d.asked.clear()
            self._ask(now)

    def _verify(self, offer: UpdateOffer, digest: str) -> None:
        if digest != offer.sha256:
            raise ReleaseError("payload hash does not match the offer")
        if self.root is None:
            return
        rel = verify_release(offer.manifest, self.root, now=time.time(), installed_version=self.version or 0,
                             device_class=self.ident.device_class)
        if offer.kind == "delta":
            delta = next((x for x in rel.deltas if x.sha256 == offer.sha256), None)
            if delta is None:
                raise ReleaseError("delta not listed in the signed release")
            check_delta_base(delta, self.sha256 or "")

    def _install(self, d: _Download) -> None:
        """The A/B flow of the real updater, step by step through its transition table."""
        offer = d.offer
        with self._lock:
            self._download = None
        try:
            self._verify(offer, d.hasher.hexdigest())
        except ReleaseError as e:
            self.report(UpdateState.FAILED, offer_id=offer.offer_id, progress=1.0, error=str(e))
            return
        self.report(self._advance(Event.START), offer_id=offer.offer_id, progress=1.0)
        signed = offer.manifest["signed"]
        with self._lock:
            self._advance(Event.INSTALLED)
            self.previous = (self.version, self.sha256)
            self.active = "b" if self.active == "a" else "a"
            self.slots[self.active] = int(signed["version"])
            self.version, self.sha256 = int(signed["version"]), str(signed["sha256"])
            self._advance(Event.ACTIVATED)
            self._advance(Event.ATTEMPT)
            if self.behaviour.fail:
                self._advance(Event.UNHEALTHY)
                self.active = "b" if self.active == "a" else "a"
                self.version, self.sha256 = self.previous
                self.health = "failed"
                final = self._advance(Event.SWITCHED_BACK)
            else:
                self.health = "ok"
                final = self._advance(Event.HEALTHY)
        if final == UpdateState.ROLLED_BACK:
            self.stats.add("health_failed")
            self.report(final, offer_id=offer.offer_id, progress=1.0,
                        error="health check failed: smoke prompt produced no text (simulated)")
        else:
            self.stats.add("committed")
            self.report(final, offer_id=offer.offer_id, progress=1.0)


class FleetStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)


class Fleet:
    """Many simulated devices and one housekeeping thread (resends, stalled downloads)."""

    def __init__(self, ids: Iterable[SimIdentity], *, ca_file: str, root: str | None,
                 behaviours: dict[str, Behaviour] | None = None) -> None:
        self.stats = FleetStats()
        root_doc = json.loads(root) if root else None
        behaviours = behaviours or {}
        self.devices = {i.device_id: SimDevice(i, ca_file=ca_file, root=root_doc,
                                               behaviour=behaviours.get(i.device_id, Behaviour()), stats=self.stats)
                        for i in ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._housekeeping, name="fleet", daemon=True)

    def start(self, *, only: Iterable[str] | None = None, connect_per_s: float = 400) -> None:
        ids = list(only) if only is not None else list(self.devices)
        for i in range(0, len(ids), 50):  # in steps, as a real fleet reconnects: no thundering herd
            batch = ids[i:i + 50]
            for device_id in batch:
                self.devices[device_id].start()
            self.wait_connected(30, only=batch)
            if connect_per_s:
                time.sleep(len(batch) / connect_per_s)
        if not self._thread.is_alive():
            self._thread.start()

    def wait_connected(self, timeout: float, *, only: Iterable[str] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        for device_id in (list(only) if only is not None else list(self.devices)):
            if not self.devices[device_id].link.wait_connected(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def stop(self) -> None:
        self._stop.set()
        for d in self.devices.values():
            d.link.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _housekeeping(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for d in list(self.devices.values()):
                d.resend_stale(now)
                d.stalled(now)

    def unacked(self) -> int:
        return sum(d.unacked() for d in self.devices.values())

    def versions(self) -> dict[int | None, int]:
        out: dict[int | None, int] = {}
        for d in self.devices.values():
            out[d.version] = out.get(d.version, 0) + 1
        return out

    def go_offline(self, ids: Iterable[str]) -> None:
        for device_id in ids:
            if device_id in self.devices:
                self.devices[device_id].go_offline()

    def send_status(self, rounds: int) -> int:
        """Every device sends ``rounds`` durable status messages at once; returns how many were sent."""
        n = 0
        for k in range(rounds):
            for d in self.devices.values():
                d.send("telemetry", {"metrics": {"outbox_depth": 0, "link_quality": 0.9, "cpu_temp_c": 51.0 + k,
                                                 "free_disk_mb": 1024}}, Stream.TELEMETRY)
                n += 1
        return n

    def counts(self) -> dict[str, int]:
        return dict(self.stats.counts)


# paho's network loop uses select(), which cannot watch file descriptors past 1024, and each client
# holds three (socket and wake-up pair): past a few hundred devices the fleet is split over processes.
DEVICES_PER_PROCESS = 250


def _worker(conn: Any, ids: list[SimIdentity], ca_file: str, root: str | None,
            behaviours: dict[str, Behaviour]) -> None:
    fleet = Fleet(ids, ca_file=ca_file, root=root, behaviours=behaviours)
    while True:
        cmd, args = conn.recv()
        if cmd == "stop":
            fleet.stop()
            conn.send(None)
            return
        if cmd == "start":
            only = None if args[0] is None else [i for i in args[0] if i in fleet.devices]
            fleet.start(only=only)
            conn.send(None)
        elif cmd == "wait_connected":
            only = None if args[1] is None else [i for i in args[1] if i in fleet.devices]
            conn.send(fleet.wait_connected(args[0], only=only))
        else:
            conn.send(getattr(fleet, cmd)(*args))


class ProcessFleet:
    """The same fleet, split over worker processes of at most ``per_process`` devices each."""

    def __init__(self, ids: list[SimIdentity], *, ca_file: str, root: str | None,
                 behaviours: dict[str, Behaviour] | None = None, per_process: int = DEVICES_PER_PROCESS) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        behaviours = behaviours or {}
        self.ids = [i.device_id for i in ids]
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        for k in range(0, len(ids), per_process):
            chunk = ids[k:k + per_process]
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, daemon=True,
                            args=(child, chunk, ca_file, root, {i.device_id: behaviours.get(i.device_id, Behaviour())
                                                                for i in chunk}))
            p.start()
            self._conns.append(parent)
            self._procs.append(p)

    def _all(self, cmd: str, *args: Any) -> list[Any]:
        for c in self._conns:
            c.send((cmd, args))
        return [c.recv() for c in self._conns]

    def start(self, *, only: Iterable[str] | None = None) -> None:
        self._all("start", None if only is None else list(only))

    def wait_connected(self, timeout: float, *, only: Iterable[str] | None = None) -> bool:
        return all(self._all("wait_connected", timeout, None if only is None else list(only)))

    def go_offline(self, ids: Iterable[str]) -> None:
        self._all("go_offline", list(ids))

    def send_status(self, rounds: int) -> int:
        return sum(self._all("send_status", rounds))

    def unacked(self) -> int:
        return sum(self._all("unacked"))

    def versions(self) -> dict[int | None, int]:
        out: dict[int | None, int] = {}
        for part in self._all("versions"):
            for v, n in part.items():
                out[v] = out.get(v, 0) + n
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in self._all("counts"):
            for k, n in part.items():
                out[k] = out.get(k, 0) + n
        return out

    def stop(self) -> None:
        try:
            self._all("stop")
        finally:
            for p in self._procs:
                p.join(timeout=10)


def make_fleet(ids: list[SimIdentity], *, ca_file: str, root: str | None,
               behaviours: dict[str, Behaviour] | None = None) -> Fleet | ProcessFleet:
    """In this process for a small fleet, over worker processes past ``DEVICES_PER_PROCESS``."""
    if len(ids) <= DEVICES_PER_PROCESS:
        return Fleet(ids, ca_file=ca_file, root=root, behaviours=behaviours)
    return ProcessFleet(ids, ca_file=ca_file, root=root, behaviours=behaviours)
