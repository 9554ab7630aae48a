"""Benchmark: durable device→server sync vs. a bare paho QoS-1 publish loop, same broker, same run.

Ours: a device process fills its SQLite outbox and syncs over TLS to the real server, which commits
each batch (synchronous=FULL) before acknowledging; the device deletes on ack. Throughput counts from
the first message's creation to the moment the device's outbox is empty (committed on both sides).
Latency: a paced phase (200 msg/s), creation on the device → commit on the server.
Baseline: a bare paho client publishes the same number of same-sized QoS-1 messages over the same TLS
listener to a bare paho subscriber; time from first publish to the last message received and acked.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.agent.enroll import enroll  # noqa: E402
from linecrew.agent.store import AgentStore  # noqa: E402
from linecrew.server.app import Server  # noqa: E402
from linecrew.server.broker import ManagedBroker, free_port  # noqa: E402
from linecrew.server.config import ServerConfig  # noqa: E402
from linecrew.shared.mqtt import wait_for  # noqa: E402

N = 20_000
PACED = 1_000
PRODUCER = REPO / "tests" / "integration" / "producer.py"


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def baseline(broker: ManagedBroker, tls_port: int, passwords: dict[str, str], size: int) -> float:
    """Bare paho: publish N QoS-1 messages, a bare subscriber receives them; msgs/s end to end."""
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    got = threading.Event()
    received = [0]

    def client(cid: str) -> paho.Client:
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        c.username_pw_set(cid, passwords[cid])  # the TLS listener binds client id to username
        c.tls_set_context(ctx)
        c.max_inflight_messages_set(1000)
        c.connect("127.0.0.1", tls_port)
        c.loop_start()
        return c

    def on_message(c: object, u: object, m: object) -> None:
        received[0] += 1
        if received[0] == N:
            got.set()

    sub = client("bench-sub")
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("linecrew/v1/bench/in", qos=1)
    subscribed.wait(10)
    pub = client("bench-pub")
    time.sleep(0.5)
    payload = b"x" * size
    t0 = time.perf_counter()
    infos = [pub.publish("linecrew/v1/bench/in", payload, qos=1) for _ in range(N)]
    for i in infos:
        i.wait_for_publish(60)
    got.wait(120)
    elapsed = time.perf_counter() - t0
    pub.disconnect()
    sub.disconnect()
    pub.loop_stop()
    sub.loop_stop()
    return N / elapsed


def run_producer(device_dir: Path, stream: str, count: int, per_put: int, pause: float) -> None:
    subprocess.run([sys.executable, str(PRODUCER), "--dir", str(device_dir), "--count", str(count),
                    "--stream", stream, "--per-put", str(per_put), "--pause", str(pause)], check=True, cwd=REPO)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="linecrew-bench-sync-"))
    cfg = ServerConfig(data_dir=tmp / "server", http_port=free_port(), mqtt_port=free_port(), mqtts_port=free_port())
    srv = Server(cfg)
    srv.start()
    try:
        token = srv.store.registry.create_enroll_token(ttl_s=600)
        device_dir = tmp / "device"
        enroll(folder=device_dir, server_url=f"http://127.0.0.1:{cfg.http_port}", token=token,
               device_id="bench-dev", device_class="x86-dev")
        broker = srv.broker
        assert isinstance(broker, ManagedBroker)
        bench_pw = {u: broker.add_client(u, [("linecrew/v1/bench/in", "readwrite")])
                    for u in ("bench-pub", "bench-sub")}
        time.sleep(0.3)

        # ---- ours, burst: throughput
        store = AgentStore(device_dir, device_id="bench-dev")
        t_start = time.time()
        proc = subprocess.Popen([sys.executable, str(PRODUCER), "--dir", str(device_dir), "--count", str(N),
                                 "--stream", "burst", "--per-put", "200", "--pause", "0"], cwd=REPO)
        assert wait_for(lambda: store.outbox.last_seq("server", "burst") >= N and store.outbox.depth() == 0,
                        600, interval=0.005)
        t_done = time.time()
        proc.wait(60)
        first_created = float(srv.store.db.scalar(
            "SELECT MIN(created) FROM device_messages WHERE stream='burst'") or t_start)
        throughput = N / (t_done - first_created)

        # ---- ours, paced: latency
        run_producer(device_dir, "paced", PACED, 1, 0.005)
        rows = srv.store.db.query("SELECT created, received FROM device_messages WHERE stream='paced'")
        lat_ms = [(float(r["received"]) - float(r["created"])) * 1000 for r in rows]  # type: ignore[arg-type]

        # ---- correctness over both phases
        ns = [r["n"] for r in srv.store.db.query(
            "SELECT json_extract(payload, '$.data.n') AS n FROM device_messages WHERE stream='burst'")]
        expected = set(range(1, N + 1))
        lost = len(expected - set(ns))
        duplicates = len(ns) - len(set(ns))
        size = int(srv.store.db.scalar("SELECT AVG(LENGTH(payload)) FROM device_messages") or 0) + 200

        base = baseline(srv.broker, cfg.mqtts_port, bench_pw, size)
    finally:
        srv.stop()
    result = {
        "benchmark": "sync",
        "messages": N,
        "lost": lost,
        "duplicates": duplicates,
        "throughput_msgs_s": round(throughput, 1),
        "baseline_paho_qos1_msgs_s": round(base, 1),
        "ratio_vs_baseline": round(throughput / base, 3),
        "p50_ms": round(_pct(lat_ms, 50), 2),
        "p99_ms": round(_pct(lat_ms, 99), 2),
        "latency_messages": len(lat_ms),
        "transport": "mqtts loopback, mosquitto 2, MQTT 5 QoS 1",
        "sqlite_synchronous": "FULL",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
