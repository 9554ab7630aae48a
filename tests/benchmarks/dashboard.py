"""Benchmark: what the dashboard and a Prometheus scrape cost the server at fleet scale.

A real server store (SQLite file) with ``--devices`` registered devices, each with a telemetry report
carrying per-model request stats, plus open escalations and queued deferred tasks; the FastAPI app
served by uvicorn on loopback. Measured: latency (p50/p95) of what one open dashboard page polls every
2 s (``/v1/devices``, ``/v1/metrics/summary``, ``/v1/rollouts``) and of ``/metrics``, side by side with
the 2 s poll interval they must fit in (``poll_budget_share``: the busiest page's p95 over 2 s).

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from linecrew.server.api import create_app  # noqa: E402
from linecrew.server.broker import free_port  # noqa: E402
from linecrew.server.store import ServerStore  # noqa: E402
from linecrew.shared.metrics import summarise  # noqa: E402
from linecrew.shared.protocol import decode, encode, make_envelope, new_id  # noqa: E402
from tests.helpers.issuer import NoBrokerIssuer  # noqa: E402

POLL_S = 2.0


def populate(store: ServerStore, devices: int, rng: random.Random) -> None:
    models = ["SmolLM2-135M-Instruct.Q4_1@fedefb9214c0", "field-llm@2a9c0e11d0aa"]
    with store.db.transaction() as conn:
        for i in range(devices):
            conn.execute("INSERT INTO devices (id, device_class, public_key, enrolled_at, online) VALUES (?,?,?,?,?)",
                         (f"dev-{i:05d}", ("rpi5", "x86-dev", "jetson-orin-nano")[i % 3], "k", 0.0, int(i % 7 != 0)))
    for i in range(devices):
        rows = [{"model_version": rng.choice([*models, None]), "route": rng.choice(["local"] * 8 + ["escalated"]),
                 "latency_ms": rng.lognormvariate(7.3, 0.6), "completion_tokens": rng.randint(10, 200),
                 "error": None, "resolved_at": 1.0} for _ in range(rng.randint(5, 40))]
        stats = summarise(rows)
        payload = {"metrics": {"outbox_depth": float(rng.randint(0, 30)), "link_quality": rng.random()},
                   "requests": {m: s.model_dump() for m, s in stats.items()}}
        msg = decode(encode(make_envelope("telemetry", payload, device_id=f"dev-{i:05d}", stream="telemetry",
                                          seq=1)))
        with store.db.transaction() as conn:
            store.apply_device_message(conn, f"dev-{i:05d}", msg)
    for i in range(min(50, devices)):
        esc = decode(encode(make_envelope("escalation", {"escalation_id": new_id(), "question": "is it safe?",
                                                         "reason": "r", "intent": "safety_emergency"},
                                          device_id=f"dev-{i:05d}", stream="esc", seq=1)))
        task = decode(encode(make_envelope("deferred_task", {"task_id": new_id(), "kind": "summarise_job",
                                                             "args": {}}, device_id=f"dev-{i:05d}", stream="t",
                                           seq=1)))
        with store.db.transaction() as conn:
            store.apply_device_message(conn, f"dev-{i:05d}", esc)
            store.apply_device_message(conn, f"dev-{i:05d}", task)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=30)
    args = ap.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = ServerStore(Path(tmp))
        t0 = time.perf_counter()
        populate(store, args.devices, rng)
        populate_s = time.perf_counter() - t0
        token = store.tokens.create("bench", ["admin"])
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(store, NoBrokerIssuer(), None), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        out: dict[str, object] = {"benchmark": "dashboard", "devices": args.devices, "calls": args.calls,
                                  "populate_s": round(populate_s, 1)}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as client:
            sizes = {}
            for path in ("/v1/devices", "/v1/metrics/summary", "/v1/rollouts", "/metrics"):
                times = []
                for _ in range(args.calls):
                    t = time.perf_counter()
                    r = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                sizes[path] = len(r.content)
                times.sort()
                key = path.strip("/").replace("/", "_")
                out[f"{key}_p50_ms"] = round(statistics.median(times), 1)
                out[f"{key}_p95_ms"] = round(times[int(0.95 * (len(times) - 1))], 1)
            summary = client.get("/v1/metrics/summary").json()
            assert summary["devices"]["total"] == args.devices and summary["total"]["requests"] > 0
        page_p95 = max(float(out["v1_devices_p95_ms"]), float(out["v1_metrics_summary_p95_ms"]))  # type: ignore[arg-type]
        out["poll_interval_ms"] = POLL_S * 1000
        out["poll_budget_share"] = round(page_p95 / (POLL_S * 1000), 3)
        out["bytes"] = sizes
        out["requests_in_fleet"] = summary["total"]["requests"]
        server.should_exit = True
        thread.join(5)
        store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
