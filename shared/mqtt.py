"""A narrow interface over paho-mqtt: MQTT 5, QoS 1, persistent sessions, jittered reconnects.

paho keeps its queue in memory only: it is transport, never storage. Callers publish only what is
already committed to an outbox, and treat a lost connection as "everything in flight is unknown".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linecrew.shared.sync import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom to connect: ``mqtt://host:port`` or ``mqtts://host:port`` (TLS)."""

    url: str
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        u = urlparse(self.url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"


OnMessage = Callable[[str, bytes], None]


class MqttLink:
    """One MQTT 5 client with its own network thread and a reconnect loop.

    ``on_message`` runs on the network thread and must only enqueue. ``on_connect`` gets whether the
    broker still had our session. ``will`` is ``(topic, payload)`` published retained by the broker if
    we vanish.
    """

    def __init__(
        self,
        *,
        client_id: str,
        address: BrokerAddress,
        subscriptions: list[str],
        on_message: OnMessage,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive_s: int = 30,
        max_inflight: int = 1000,
        backoff: Backoff | None = None,
        on_binary: dict[str, Callable[[bytes, dict[str, str]], None]] | None = None,
    ) -> None:
        self.client_id = client_id
        self.address = address
        self.subscriptions = subscriptions
        self._on_message = on_message
        # exact topic → handler of raw bytes + MQTT 5 user properties (a dict the owner may fill later)
        self._on_binary = on_binary if on_binary is not None else {}
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.backoff = backoff or Backoff(base_s=0.2, cap_s=10.0)
        self.connected = threading.Event()
        self.disconnects = 0  # links lost since start (a session taken over shows here)
        self.last_error: str | None = None
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set_context(_tls_context(address.ca_file))
        if will:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_connect_fail = self._handle_connect_fail

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background; paho's own thread reconnects after jittered, growing delays.

        paho's thread must own the socket: publishing from other threads only queues the packet and
        wakes that thread (writing a TLS socket from two threads corrupts OpenSSL's state).
        """
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self._jitter_reconnect()
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=self.keepalive_s,
            clean_start=False, properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._client.disconnect()
        self._client.loop_stop()
        self._set_disconnected()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def _jitter_reconnect(self) -> None:
        """paho doubles the delay from ``min_delay`` up to ``max_delay``; we jitter the start point."""
        first = self.backoff.delay(0)
        self._client.reconnect_delay_set(min_delay=max(first, 0.05), max_delay=self.backoff.cap_s)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ callbacks (network thread)
    def _handle_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags,
                        reason: object, properties: object) -> None:
        if getattr(reason, "is_failure", False):
            self.last_error = f"broker refused connection: {reason}"
            log.error("%s", self.last_error)
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        if self._on_connect_cb:
            self._on_connect_cb(bool(flags.session_present))

    def _handle_disconnect(self, client: paho.Client, userdata: object, flags: object,
                           reason: object, properties: object) -> None:
        self._set_disconnected()
        self._jitter_reconnect()

    def _handle_connect_fail(self, client: paho.Client, userdata: object) -> None:
        self.last_error = f"cannot reach broker {self.address.url}"
        log.warning("%s", self.last_error)

    def _set_disconnected(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self.disconnects += 1
            if self._on_disconnect_cb:
                self._on_disconnect_cb()

    def _handle_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            binary = self._on_binary.get(message.topic)
            if binary is not None:
                props = getattr(message.properties, "UserProperty", None) or []
                binary(bytes(message.payload), dict(props))
                return
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # a bad message must never kill the network thread
            log.exception("message handler failed on topic %s", message.topic)

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: bytes, *, retain: bool = False, expiry_s: int | None = None,
                user: dict[str, str] | None = None) -> paho.MQTTMessageInfo:
        props = None
        if expiry_s is not None or user:
            props = Properties(PacketTypes.PUBLISH)
            if expiry_s is not None:
                props.MessageExpiryInterval = expiry_s
            if user:
                props.UserProperty = list(user.items())
        return self._client.publish(topic, payload, qos=1, retain=retain, properties=props)


@functools.lru_cache(maxsize=16)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One context per CA file, shared by every client of the process (thousands, in a simulated fleet)."""
    return ssl.create_default_context(cafile=ca_file)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (used by CLIs and tests)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
