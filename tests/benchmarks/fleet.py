"""Benchmark: a fleet of simulated devices against one real server and its managed Mosquitto.

The server runs as its own process (``linecrew server run``, SQLite by default, ``--postgres`` for a
local PostgreSQL); the devices are real MQTT clients over TLS in this process, each enrolled through the
API with its own broker password. Measured in one run:

* ``ingest_msgs_s``: every device sends durable status messages at once; from the first publish to the
  last server acknowledgement (sent only after the server committed the batch).
* ``rollout_s``: a 4-wave rollout (1 %, 10 %, 50 %, 100 %) with 2 s soak times, from ``start`` to
  ``finished``; every device downloads the delta, checks it against the signed release and reports
  healthy.
* ``bytes_sent`` (chunk bytes the server published for the rollout) against ``bytes_full_push`` (the
  full model to every device), side by side.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.server.broker import free_port  # noqa: E402
from linecrew.shared.mqtt import wait_for  # noqa: E402
from linecrew.tools.admin_client import AdminClient  # noqa: E402
from linecrew.tools.rehearsal import Authority  # noqa: E402
from linecrew.tools.simulator import Fleet, ProcessFleet, enroll_fleet, make_fleet  # noqa: E402

STATUS_PER_DEVICE = 5
CLASSES = {"jetson-orin-nano": 0.5, "rpi5": 0.3, "x86-dev": 0.2}


def cli(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "linecrew.cli", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"linecrew {' '.join(args)} failed: {out.stderr}")
    return out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--postgres", action="store_true", help="server state in a local PostgreSQL")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="linecrew-fleet-bench-"))
    (work / "authority").mkdir()
    authority = Authority(work / "authority")
    manifest = work / "v2.json"
    manifest.write_text(json.dumps(authority.manifest("B", 2, device_classes=sorted(CLASSES))))
    http = free_port()
    env = {**os.environ, "LINECREW_SERVER_RELEASE_ROOT": str(authority.folder / "root.json"),
           "LINECREW_SERVER_WORKERS": "0", "LINECREW_SERVER_DATA_DIR": str(work / "server"),
           "LINECREW_SERVER_UNAUTHENTICATED_PER_S": "10000",  # a whole fleet enrolls from this one address
           "HF_HUB_OFFLINE": "1"}
    pg = None
    if args.postgres:
        from tests.helpers.postgres import LocalPostgres

        pg = LocalPostgres().start()
        env["LINECREW_SERVER_DATABASE_URL"] = pg.create_database()
    cli("server", "init", env=env)
    cli("server", "release", "add", str(manifest), str(authority.models["B"]), "--delta",
        str(authority.deltas[("A", "B")]), env=env)
    admin = cli("server", "token", "create", "--name", "bench-admin", "--role", "admin", env=env)
    rm = cli("server", "token", "create", "--name", "bench-rm", "--role", "release-manager", env=env)
    reviewer = cli("server", "token", "create", "--name", "bench-reviewer", "--role", "release-manager", env=env)
    server = subprocess.Popen([sys.executable, "-m", "linecrew.cli", "server", "run", "--http-port", str(http),
                               "--mqtt-port", str(free_port()), "--mqtts-port", str(free_port())], cwd=REPO, env=env,
                              stderr=open(work / "server.log", "wb"))  # noqa: SIM115 - lives as long as the server
    url = f"http://127.0.0.1:{http}"
    fleet: Fleet | ProcessFleet | None = None
    try:
        import httpx

        assert wait_for(lambda: _up(httpx, url), 60), "server did not start"
        admin_api = AdminClient(url, admin)
        tokens: dict[str, list[str]] = {}

        def make_token(cls: str, tags: list[str]) -> str:
            if not tokens.get(cls):
                tokens[cls] = admin_api.enroll_tokens(500, cls, tags)
            return tokens[cls].pop()

        t0 = time.perf_counter()
        ids, ca, root = enroll_fleet(url, make_token, count=args.devices, classes=CLASSES, tags=["bench"],
                                     version=1, sha256=authority.sha["A"])
        enroll_s = time.perf_counter() - t0
        (work / "ca.crt").write_text(ca)
        fleet = make_fleet(ids, ca_file=str(work / "ca.crt"), root=root)
        t0 = time.perf_counter()
        fleet.start()
        assert fleet.wait_connected(300), "devices did not all connect"
        assert wait_for(lambda: fleet.unacked() == 0, 300), "first reports not acknowledged"
        connect_s = time.perf_counter() - t0

        # ---- ingest: every device sends its status messages at once
        t0 = time.perf_counter()
        n = fleet.send_status(STATUS_PER_DEVICE)
        assert wait_for(lambda: fleet.unacked() == 0, 600, interval=0.05), "status messages not all acknowledged"
        ingest_s = time.perf_counter() - t0

        # ---- rollout: 4 waves with short soak times
        rm_api = AdminClient(url, rm)
        gate = {"soak_s": 2, "success_threshold": 0.95, "error_threshold": 0.05, "device_timeout_s": 300}
        spec = {"release": "smollm2-field", "version": 2, "tags": ["bench"], "rate_per_s": 500,
                "waves": [{"percent": p, **gate} for p in (1, 10, 50, 100)], "on_failure": "pause"}
        rid = rm_api.create_rollout(spec, "benchmark")["id"]
        AdminClient(url, reviewer).act(rid, "approve", "benchmark")  # the two-person rule
        t0 = time.perf_counter()
        rm_api.act(rid, "start", "benchmark")
        assert wait_for(lambda: rm_api.rollout(rid)["state"] in ("finished", "paused", "rolled_back"), 1200,
                        interval=0.2)
        rollout_s = time.perf_counter() - t0
        st = rm_api.rollout(rid)
        assert st["state"] == "finished", st
        assert wait_for(lambda: fleet.versions() == {2: args.devices}, 60), fleet.versions()
        full = authority.models["B"].stat().st_size
        result = {
            "benchmark": "fleet", "devices": args.devices, "store": "postgresql" if pg else "sqlite",
            "status_messages": n, "ingest_msgs_s": round(n / ingest_s, 1),
            "rollout_s": round(rollout_s, 2), "waves": [w["size"] for w in st["waves"]],
            "soak_s_per_wave": gate["soak_s"], "healthy": st["counts"].get("healthy", 0),
            "bytes_sent": st["bytes_sent"], "bytes_full_push": full * args.devices,
            "bytes_ratio": round(st["bytes_sent"] / (full * args.devices), 5),
            "delta_bytes": authority.deltas[("A", "B")].stat().st_size, "model_bytes": full,
            "enroll_s": round(enroll_s, 1), "connect_s": round(connect_s, 1),
            "transport": "mqtts loopback, mosquitto 2, MQTT 5 QoS 1; server in its own process",
        }
    finally:
        if fleet:
            fleet.stop()
        server.terminate()
        server.wait(30)
        if pg:
            pg.stop()
    print(json.dumps(result))


def _up(httpx: object, url: str) -> bool:
    try:
        return bool(httpx.get(url + "/v1/health", timeout=2).status_code == 200)  # type: ignore[attr-defined]
    except Exception:
        return False


if __name__ == "__main__":
    main()
