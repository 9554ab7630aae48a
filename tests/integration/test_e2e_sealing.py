"""Sensitive fields travel sealed end to end: the broker, its persistence file and its operator see ciphertext
only — against the real server, Mosquitto and agent store. Tampered or moved ciphertexts are refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from linecrew.agent.config import AgentConfig
from linecrew.agent.store import AgentStore
from linecrew.agent.sync import open_configured
from linecrew.server.app import Server
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import Topics, decode
from tests.conftest import enroll_device
from tests.integration.test_broker_security import RawClient

pytestmark = pytest.mark.integration
SECRET = "Meter 4411 tampered, customer says neighbour did it"


def _wire(store: AgentStore) -> list[bytes]:
    return [p.body for p in store.outbox.pending("server", limit=100)]


def test_a_note_queued_in_the_broker_while_the_server_is_away_is_ciphertext(server: Server, tmp_path: Path) -> None:
    folder = enroll_device(server, tmp_path / "dev", "truck-3")
    store, _ = open_configured(AgentConfig(data_dir=folder))
    store.add_note(SECRET, job_id="J-9")
    [body] = _wire(store)
    assert SECRET.encode() not in body and b'"_sealed"' in body, "sealed before it leaves the device"
    assert server.ingest is not None
    server.ingest.stop()  # the server is away; its broker session keeps what arrives
    device = RawClient(folder, client_id="truck-3")
    try:
        assert device.connected.wait(10)
        device.client.publish(Topics.d2s("truck-3"), body, qos=1).wait_for_publish(10)
    finally:
        device.close()
    server.stop()  # mosquitto writes its persistence file on the way down
    persisted = b"".join(f.read_bytes() for f in (server.config.data_dir / "broker" / "data").glob("*"))
    assert b"_sealed" in persisted, "the note is in the broker's persistence file"
    assert SECRET.encode() not in persisted and b"neighbour" not in persisted

    again = Server(server.config)  # the same server comes back: it opens what the broker kept
    again.start()
    try:
        assert wait_for(lambda: again.store.log.count("truck-3") == 1, 60)
        [msg] = again.store.log.messages("truck-3")
        assert msg["payload"]["text"] == SECRET
    finally:
        again.stop()
        store.close()


def test_answers_to_a_device_leave_the_server_sealed_and_only_that_device_opens_them(server: Server,
                                                                                       tmp_path: Path) -> None:
    a = enroll_device(server, tmp_path / "a", "truck-a")
    b = enroll_device(server, tmp_path / "b", "truck-b")
    server.store.outbox.put("escalation_answer", {"escalation_id": "e-00000001", "answer": SECRET, "expert": "Dana"},
                            peer="truck-a", stream="answers", device_id="truck-a")
    [p] = server.store.outbox.pending("truck-a", limit=10)
    assert SECRET.encode() not in p.body
    store_a, _ = open_configured(AgentConfig(data_dir=a))
    store_b, _ = open_configured(AgentConfig(data_dir=b))
    try:
        assert decode(p.body, opener=store_a.opener).payload.answer == SECRET  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="could not be opened"):
            decode(p.body, opener=store_b.opener)
    finally:
        store_a.close()
        store_b.close()


def test_tampered_or_moved_ciphertexts_are_rejected_with_a_reason(server: Server, tmp_path: Path) -> None:
    folder = enroll_device(server, tmp_path / "dev", "truck-4")
    store, _ = open_configured(AgentConfig(data_dir=folder))
    store.add_note("first")
    store.add_note("second")
    first, second = (json.loads(b) for b in _wire(store))
    blob = bytearray(base64.b64decode(first["payload"]["_sealed"]))
    blob[-1] ^= 1
    first["payload"]["_sealed"] = base64.b64encode(bytes(blob)).decode()
    second["payload"]["_sealed"] = json.loads(_wire(store)[0])["payload"]["_sealed"]  # moved from the first
    device = RawClient(folder, client_id="truck-4")
    try:
        assert device.connected.wait(10)
        for env in (first, second):
            device.client.publish(Topics.d2s("truck-4"), json.dumps(env).encode(), qos=1).wait_for_publish(10)
        assert wait_for(lambda: server.store.inbox.dead_letter_count("truck-4") == 2, 30)
    finally:
        device.close()
        store.close()
    reasons = {str(d["reason"]).split(":")[0] for d in server.store.inbox.dead_letters("truck-4")}
    assert reasons == {"unsealable"} and server.store.log.count("truck-4") == 0
