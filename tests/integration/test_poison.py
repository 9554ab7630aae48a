"""One device's poison never stalls the fleet: each message is judged and applied on its own, against the real
server and Mosquitto. Honest devices' messages are all applied exactly once while one device sends messages that
parse but break the apply step (a reused id on a new stream), non-finite or out-of-range numbers, and JSON nested
deep enough to break a parser; every poison is rejected with a reason and dead-lettered for inspection."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from linecrew.agent.config import AgentConfig
from linecrew.agent.sync import DeviceSync, open_configured
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import Ack, Topics, decode, encode, make_envelope
from tests.conftest import enroll_device
from tests.integration.test_broker_security import RawClient


def _poison(device_id: str, reused_id: str) -> list[tuple[str, bytes]]:
    """(expected reason prefix, raw message) for each kind of poison."""
    def telemetry(value: str, seq: int, stream: str = "poison") -> bytes:
        body = encode(make_envelope("telemetry", {"metrics": {"cpu_temp_c": 1.0}}, device_id=device_id,
                                    stream=stream, seq=seq))
        marker = b'"cpu_temp_c":1.0'  # only the metric: the timestamp may hold "1.0" too
        assert body.count(marker) == 1, body
        return body.replace(marker, b'"cpu_temp_c":' + value.encode())

    reused = make_envelope("note", {"text": "again"}, device_id=device_id, stream="other", seq=1)
    reused_raw = encode(reused).replace(reused.id.encode(), reused_id.encode())
    return [
        ("apply failed", reused_raw),
        ("non_finite", telemetry("NaN", 1)),
        ("non_finite", telemetry("Infinity", 2)),
        ("out_of_range", telemetry("1e400", 3)),
        ("out_of_range", telemetry("1" * 400, 4)),
        ("too_deep", telemetry("[" * 5000 + "]" * 5000, 5)),
        ("schema", telemetry('"hot"', 6)),
    ]


def test_poison_from_one_device_is_rejected_alone_and_the_fleet_carries_on(server: object, tmp_path: Path) -> None:
    srv = server
    bad = enroll_device(srv, tmp_path / "bad", "dev-bad")
    honest = [enroll_device(srv, tmp_path / f"h{i}", f"dev-h{i}") for i in range(3)]
    links = []
    for folder in honest:
        store, address = open_configured(AgentConfig(data_dir=folder))
        sync = DeviceSync(store, address)
        sync.start()
        links.append((store, sync))
    attacker = RawClient(bad, client_id="dev-bad")
    try:
        assert attacker.connected.wait(10)
        attacker.client.subscribe(Topics.d2s_ack("dev-bad"), qos=1)
        first = make_envelope("note", {"text": "first, honest"}, device_id="dev-bad", stream="notes", seq=1)
        attacker.client.publish(Topics.d2s("dev-bad"), encode(first), qos=1)
        assert wait_for(lambda: srv.store.log.count("dev-bad") == 1, 30)  # type: ignore[attr-defined]
        poison = _poison("dev-bad", first.id)
        for round_ in range(5):
            for store, sync in links:
                store.add_note(f"round {round_}")
                sync.notify()
            for _, raw in poison:
                attacker.client.publish(Topics.d2s("dev-bad"), raw, qos=1)
        assert wait_for(lambda: all(srv.store.log.count(f"dev-h{i}") == 5 for i in range(3)), 60), \
            [srv.store.log.count(f"dev-h{i}") for i in range(3)]  # type: ignore[attr-defined]
        assert wait_for(lambda: all(s.outbox.depth() == 0 for s, _ in links), 60), "every honest note acknowledged"
        dead = srv.store.inbox.dead_letters("dev-bad", limit=1000)  # type: ignore[attr-defined]
        for expected, _raw in poison:
            found = [d["reason"] for d in dead if str(d["reason"]).startswith(expected)]
            assert found, (expected, [d["reason"] for d in dead])
        assert len(dead) >= len(poison), "every poison message is kept with its reason"
        acks = [decode(p).payload for t, p in attacker.messages if t == Topics.d2s_ack("dev-bad")]
        reasons = [r.reason for a in acks if isinstance(a, Ack) for r in a.rejected]
        assert any(r.startswith("apply failed") for r in reasons) and any(r.startswith("non_finite") for r in reasons)
        assert srv.store.log.count("dev-bad") == 1, "nothing of the poison was applied"  # type: ignore[attr-defined]
        api = f"http://127.0.0.1:{srv.config.http_port}"  # type: ignore[attr-defined]
        token = srv.store.tokens.create("ops", ["admin"])  # type: ignore[attr-defined]
        assert httpx.get(f"{api}/metrics", timeout=30).status_code == 200
        summary = httpx.get(f"{api}/v1/metrics/summary", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert summary.status_code == 200 and json.dumps(summary.json(), allow_nan=False)
    finally:
        attacker.close()
        for store, sync in links:
            sync.stop()
            store.close()
