"""The managed broker confines each device to its own topics and refuses the unknown."""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from linecrew.agent import identity
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import Topics, encode, make_envelope
from tests.conftest import enroll_device


class RawClient:
    """A bare paho MQTT 5 client over TLS, recording SUBACK/PUBACK reason codes and messages."""

    def __init__(self, folder: Path, *, password: str | None = None, client_id: str | None = None) -> None:
        creds = identity.load(folder)
        addr = creds.address(folder)
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or creds.device_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(creds.username, password if password is not None else creds.password)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(folder / "ca.crt")))
        self.suback: list[object] = []
        self.puback: dict[int, object] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connect_reason: object = None
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.suback.extend(codes)
        self.client.on_publish = lambda c, u, mid, code, props: self.puback.__setitem__(mid, code)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect(addr.host, addr.port)
        self.client.loop_start()

    def _on_connect(self, c: object, u: object, flags: object, reason: object, props: object) -> None:
        self.connect_reason = reason
        self.connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_device_cannot_touch_another_devices_topics(server: object, tmp_path: Path) -> None:
    a = enroll_device(server, tmp_path / "a", "dev-a")
    enroll_device(server, tmp_path / "b", "dev-b")
    spy = RawClient(a)
    assert spy.connected.wait(10) and not spy.connect_reason.is_failure  # type: ignore[attr-defined]
    try:
        spy.client.subscribe(Topics.s2d("dev-b"), qos=1)
        spy.client.subscribe(Topics.d2s_ack("dev-b"), qos=1)
        spy.client.subscribe("linecrew/v1/#", qos=1)
        spy.client.subscribe(Topics.s2d("dev-a"), qos=1)
        assert wait_for(lambda: len(spy.suback) == 4, 10)
        # Mosquitto may grant the SUBACK and filter at delivery; what matters is what gets through.
        link = server.ingest.link  # type: ignore[attr-defined]
        link.publish(Topics.s2d("dev-b"), b"secret for b")
        link.publish(Topics.d2s_ack("dev-b"), b"ack for b")
        link.publish(Topics.s2d("dev-a"), b"control for a")
        assert wait_for(lambda: any(t == Topics.s2d("dev-a") for t, _ in spy.messages), 10)
        link.publish(Topics.s2d("dev-a"), b"second control")
        assert wait_for(lambda: len(spy.messages) >= 2, 10)
        assert {t for t, _ in spy.messages} == {Topics.s2d("dev-a")}, "only its own topics reach a device"

        forged = make_envelope("event", {"name": "forged"}, device_id="dev-b", stream="events", seq=1)
        info = spy.client.publish(Topics.d2s("dev-b"), encode(forged), qos=1)
        assert wait_for(lambda: info.mid in spy.puback, 10)
        assert spy.puback[info.mid].is_failure, "broker must refuse a publish to another device's topic"
        info2 = spy.client.publish(Topics.s2d("dev-a"), encode(forged), qos=1)
        assert wait_for(lambda: info2.mid in spy.puback, 10)
        assert spy.puback[info2.mid].is_failure, "a device must not forge server→device messages"
    finally:
        spy.close()
    assert server.store.log.count("dev-b") == 0  # type: ignore[attr-defined]


def test_wrong_password_is_refused(server: object, tmp_path: Path) -> None:
    a = enroll_device(server, tmp_path / "a", "dev-a")
    intruder = RawClient(a, password="not-the-password", client_id="intruder")
    try:
        assert intruder.connected.wait(10)
        assert intruder.connect_reason.is_failure  # type: ignore[attr-defined]
    finally:
        intruder.close()


def test_malformed_oversized_unknown_messages_rejected_with_reason_and_others_applied(
        server: object, tmp_path: Path) -> None:
    a = enroll_device(server, tmp_path / "a", "dev-a")
    c = RawClient(a)
    assert c.connected.wait(10)
    c.client.subscribe(Topics.d2s_ack("dev-a"), qos=1)
    assert wait_for(lambda: len(c.suback) == 1, 10)
    topic = Topics.d2s("dev-a")

    def env(type_: str, payload: dict[str, object], seq: int, **over: object) -> bytes:
        e = make_envelope("event", {"name": "x"}, device_id="dev-a", stream="s", seq=seq).model_dump()
        e.update(type=type_, payload=payload, **over)
        return json.dumps(e).encode()

    bad = [
        b"\x00\xff not json",
        b"[1, 2, 3]",
        json.dumps({"id": "m-oversized-0001", "pad": "x" * 70_000}).encode(),
        env("launch_missiles", {}, 1),
        env("event", {"name": "x"}, 1, v=99),
        env("event", {"nom": "x"}, 1),
        env("event", {"name": "x"}, 1, device_id="dev-b"),
    ]
    for raw in bad:
        c.client.publish(topic, raw, qos=1)
    c.client.publish(topic, env("event", {"name": "good"}, 1), qos=1)
    ingest = server.ingest  # type: ignore[attr-defined]
    assert wait_for(lambda: server.store.log.count("dev-a") == 1, 60)  # type: ignore[attr-defined]
    assert wait_for(lambda: sum(ingest.stats.rejected.values()) == len(bad), 60)
    assert dict(ingest.stats.rejected) == {
        "malformed": 2, "oversized": 1, "unknown_type": 1, "unsupported_version": 1, "schema": 1,
        "wrong_sender": 1,
    }
    # The device is told which of its messages will never be applied, with the reason.
    assert wait_for(lambda: any(json.loads(p)["payload"].get("rejected") for _, p in list(c.messages)), 60)
    reasons = [r["reason"] for _, p in c.messages for r in json.loads(p)["payload"].get("rejected", [])]
    assert any(r.startswith("unknown_type") for r in reasons)
    c.close()


@pytest.mark.parametrize("device_id", ["_linecrew-server", "linecrew-server", "linecrew-server-1", "server-2",
                                       "worker-w0", "admin", "Dev-A", "a", "dev_a"])
def test_no_device_can_enroll_under_a_server_side_or_malformed_name(server: object, device_id: str,
                                                                    tmp_path: Path) -> None:
    from linecrew.agent.enroll import enroll
    from linecrew.agent.errors import EnrollmentRefusedError

    token = server.store.registry.create_enroll_token(ttl_s=60)  # type: ignore[attr-defined]
    before = sorted(server.broker.clients())  # type: ignore[attr-defined]
    with pytest.raises(EnrollmentRefusedError, match=r"invalid device id|at least 2 characters"):
        enroll(folder=tmp_path / "x", server_url=f"http://127.0.0.1:{server.config.http_port}",  # type: ignore[attr-defined]
               token=token, device_id=device_id, device_class="x86-dev")
    assert server.store.registry.device(device_id) is None  # type: ignore[attr-defined]
    assert sorted(server.broker.clients()) == before, "no broker client was made or changed"  # type: ignore[attr-defined]


def test_a_device_cannot_take_the_servers_or_another_devices_session(server: object, tmp_path: Path) -> None:
    from linecrew.agent.config import AgentConfig
    from linecrew.agent.sync import DeviceSync, open_configured
    from linecrew.shared.protocol import internal_id

    a = enroll_device(server, tmp_path / "a", "dev-a")
    b = enroll_device(server, tmp_path / "b", "dev-b")
    store_b, address_b = open_configured(AgentConfig(data_dir=b))
    honest = DeviceSync(store_b, address_b)
    honest.start()
    ingest = server.ingest.link  # type: ignore[attr-defined]
    try:
        assert honest.link.wait_connected(15)
        for n, stolen in enumerate((internal_id(server.config.client_id), "dev-b"), start=1):  # type: ignore[attr-defined]
            thief = RawClient(a, client_id=stolen)
            try:
                assert thief.connected.wait(10) and thief.connect_reason.is_failure, "refused: not its client id"  # type: ignore[attr-defined]
                store_b.add_note(f"still here {n}")
                honest.notify()
                assert wait_for(lambda n=n: server.store.log.count("dev-b") == n, 30)  # type: ignore[attr-defined, misc]
            finally:
                thief.close()
        assert ingest.disconnects == 0, "the server kept its session"
        assert honest.link.disconnects == 0, "dev-b kept its session"
    finally:
        honest.stop()
        store_b.close()


def test_a_device_cannot_join_the_servers_shared_group_or_subscribe_outside_its_subtree(server: object,
                                                                                        tmp_path: Path) -> None:
    from linecrew.shared.protocol import SERVER_SHARE_GROUP

    a = enroll_device(server, tmp_path / "a", "dev-a")
    b = enroll_device(server, tmp_path / "b", "dev-b")
    thief = RawClient(a)
    honest = RawClient(b)
    try:
        assert thief.connected.wait(10) and honest.connected.wait(10)
        for topic in (f"$share/{SERVER_SHARE_GROUP}/linecrew/v1/devices/+/d2s", "linecrew/v1/devices/+/d2s", "#",
                      "$share/x/linecrew/v1/devices/dev-a/s2d", "$SYS/#", "$CONTROL/dynamic-security/v1/response"):
            thief.client.subscribe(topic, qos=1)
        assert wait_for(lambda: len(thief.suback) == 6, 10)
        assert all(code.is_failure for code in thief.suback), [str(c) for c in thief.suback]  # type: ignore[attr-defined]
        for seq in range(1, 31):  # raw QoS 1, no resends: each must reach the server on first delivery
            env = make_envelope("event", {"name": "tick", "data": {}}, device_id="dev-b", stream="events", seq=seq)
            honest.client.publish(Topics.d2s("dev-b"), encode(env), qos=1).wait_for_publish(10)
        assert wait_for(lambda: server.store.log.count("dev-b") == 30, 30), server.store.log.count("dev-b")  # type: ignore[attr-defined]
        assert not thief.messages
        forged = make_envelope("escalation_answer", {"escalation_id": "e-00000001", "answer": "cut it", "expert": "x"},
                               device_id="dev-b", stream="answers", seq=1)
        info = thief.client.publish(Topics.s2d("dev-b"), encode(forged), qos=1)
        info.wait_for_publish(10)
        assert thief.puback[info.mid].is_failure, "a device cannot publish as the server"  # type: ignore[attr-defined]
    finally:
        thief.close()
        honest.close()
