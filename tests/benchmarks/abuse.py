"""Benchmark: honest devices' end-to-end throughput while one enrolled device sends poison at full speed, against
the same run without the attacker, on one real server (its own process, SQLite) and its managed Mosquitto.

Honest devices are simulated devices (the agent's own outbox/inbox code, real MQTT over TLS); each sends
``--messages`` durable status messages at once and the clock stops when every one is acknowledged (the server
acknowledges only after it committed). The attacker is a separate process with one device's real credentials,
publishing on its own topic, round robin: a reused message id on a new stream (breaks the apply step), NaN,
Infinity, out-of-range numbers, JSON nested 5,000 deep, a payload of the wrong type. Afterwards the server's
database is read: ``honest_lost`` counts honest messages that were never applied (or applied twice),
``poison_rejected`` the attacker's messages kept as dead letters with a reason.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.server.broker import free_port  # noqa: E402
from linecrew.server.store import ServerStore  # noqa: E402
from linecrew.shared.mqtt import wait_for  # noqa: E402
from linecrew.shared.protocol import Topics, encode, make_envelope  # noqa: E402
from linecrew.tools.admin_client import AdminClient  # noqa: E402
from linecrew.tools.simulator import Fleet, enroll_fleet, make_fleet  # noqa: E402


def _poison(device_id: str, reused_id: str, n: int) -> bytes:
    """The n-th poison message: six kinds in turn, each one a fresh message (none is a mere duplicate)."""
    kind = n % 6
    if kind == 0:  # parses, but reuses an applied message's id on a new stream: breaks the apply step
        reused = make_envelope("note", {"text": "x"}, device_id=device_id, stream=f"q{n}", seq=1)
        return encode(reused).replace(reused.id.encode(), reused_id.encode())
    value = ["", "NaN", "Infinity", "1e400", "[" * 5000 + "]" * 5000, '"hot"'][kind]
    body = encode(make_envelope("telemetry", {"metrics": {"t": 1.5}}, device_id=device_id, stream="p", seq=n + 1))
    return body.replace(b"1.5", value.encode())


def _attack(device_id: str, url: str, password: str, ca: str, stop: Any, sent: Any) -> None:
    """Separate process: publish poison as fast as the broker takes it (QoS 0 at full speed, no waiting)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = url.split("://")[1].rsplit(":", 1)
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
    c.username_pw_set(device_id, password)
    c.tls_set_context(ssl.create_default_context(cafile=ca))
    c.connect(host if host != "localhost" else "127.0.0.1", int(port))
    c.loop_start()
    first = make_envelope("note", {"text": "first"}, device_id=device_id, stream="notes", seq=1)
    c.publish(Topics.d2s(device_id), encode(first), qos=1).wait_for_publish(10)
    n = 0
    while not stop.is_set():
        info = c.publish(Topics.d2s(device_id), _poison(device_id, first.id, n), qos=1)
        n += 1
        if n % 50 == 0:
            info.wait_for_publish(10)  # keep paho's queue bounded; the broker still gets them as fast as it can
            sent.value = n
    sent.value = n
    c.disconnect()
    c.loop_stop()


def _run(fleet: Fleet, rounds: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fleet.send_status(rounds)
    if not wait_for(lambda: fleet.unacked() == 0, 900, interval=0.05):
        raise RuntimeError("honest messages not all acknowledged within 900 s")
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--messages", type=int, default=100, help="durable messages per honest device per run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="linecrew-abuse-bench-"))
    http = free_port()
    env = {**os.environ, "LINECREW_SERVER_WORKERS": "0", "LINECREW_SERVER_DATA_DIR": str(work / "server"),
           "LINECREW_SERVER_UNAUTHENTICATED_PER_S": "10000",  # a whole fleet enrolls from this one address
           "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "linecrew.cli"]
    subprocess.run([*cli, "server", "init"], cwd=REPO, env=env, check=True, capture_output=True)
    admin = subprocess.run([*cli, "server", "token", "create", "--name", "bench", "--role", "admin"], cwd=REPO,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen([*cli, "server", "run", "--http-port", str(http), "--mqtt-port", str(free_port()),
                               "--mqtts-port", str(free_port())], cwd=REPO, env=env,
                              stderr=open(work / "server.log", "wb"))  # noqa: SIM115 - lives as long as the server
    url = f"http://127.0.0.1:{http}"
    fleet: Fleet | None = None
    ctx = mp.get_context("spawn")  # the attacker shares no threads or locks with the honest fleet
    stop = ctx.Event()
    sent = ctx.Value("i", 0)
    try:
        import httpx

        assert wait_for(lambda: _ready(httpx, url), 120), "server did not become ready"
        api = AdminClient(url, admin)
        def token(cls: str, tags: list[str]) -> str:
            return api.enroll_tokens(1, cls, tags)[0]

        ids, ca, _root = enroll_fleet(url, token, count=args.devices, classes={"x86-dev": 1.0}, tags=["bench"],
                                      prefix="honest")
        [bad], _, _ = enroll_fleet(url, token, count=1, classes={"x86-dev": 1.0}, tags=[], prefix="evil")
        (work / "ca.crt").write_text(ca)
        fleet = make_fleet(ids, ca_file=str(work / "ca.crt"), root=None)
        fleet.start()
        assert fleet.wait_connected(300), "devices did not all connect"
        assert wait_for(lambda: fleet.unacked() == 0, 300), "first reports not acknowledged"
        _run(fleet, args.messages)  # warm-up: caches, JIT-free but cold pages and connections
        clean_n, clean_s = _run(fleet, args.messages)

        proc = ctx.Process(target=_attack, args=(bad.device_id, bad.broker_url, bad.password,
                                                                    str(work / "ca.crt"), stop, sent))
        proc.start()
        time.sleep(2.0)  # let the attack reach full speed before the honest burst (a warm-up, not an event)
        attack_n, attack_s = _run(fleet, args.messages)
        stop.set()
        proc.join(60)
        again_n, again_s = _run(fleet, args.messages)  # clean again: the reference on both sides of the attack
        store = ServerStore(work / "server")
        assert wait_for(lambda: store.inbox.dead_letter_count(bad.device_id) + store.log.count(bad.device_id) - 1
                        >= sent.value, 60), "the last poison in flight was not judged"

        expected = 1 + 4 * args.messages  # first idle report + warm-up, clean, attack, clean again
        counts = [store.log.count(d.device_id) for d in ids]
        honest_lost = sum(max(0, expected - c) for c in counts)
        duplicated = sum(max(0, c - expected) for c in counts)
        rejected = store.inbox.dead_letter_count(bad.device_id)
        reasons = store.inbox.dead_letter_reasons(bad.device_id)
        applied_poison = store.log.count(bad.device_id) - 1
        store.close()
        clean_rate = (clean_n + again_n) / (clean_s + again_s)
        result: dict[str, Any] = {
            "benchmark": "abuse", "honest_devices": len(ids), "honest_msgs_per_run": clean_n,
            "honest_msgs_s": round(clean_rate, 1),
            "honest_msgs_s_under_attack": round(attack_n / attack_s, 1),
            "ratio_under_attack": round((attack_n / attack_s) / clean_rate, 3),
            "honest_msgs_s_runs": [round(clean_n / clean_s, 1), round(again_n / again_s, 1)],
            "poison_sent": int(sent.value), "poison_rejected": rejected, "poison_applied": applied_poison,
            "attack_s": round(attack_s, 1), "rejection_reasons": reasons,
            "honest_lost": honest_lost, "honest_duplicated": duplicated,
        }
    finally:
        stop.set()
        if fleet:
            fleet.stop()
        server.terminate()
        server.wait(30)
    print(json.dumps(result))


def _ready(httpx: Any, url: str) -> bool:
    try:
        return bool(httpx.get(url + "/readyz", timeout=2).status_code == 200)
    except Exception:
        return False


if __name__ == "__main__":
    main()
