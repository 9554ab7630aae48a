"""Test helper process: the agent's sync engine plus a producer that fills the outbox to ``--count``.

It resumes where the outbox's stream sequence stands, so it can be SIGKILLed and started again.
Exits 0 once every message is acknowledged by the server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linecrew.agent.store import SERVER_PEER
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.shared.mqtt import wait_for


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--stream", default="events")
    ap.add_argument("--per-put", type=int, default=10)
    ap.add_argument("--pause", type=float, default=0.002)
    args = ap.parse_args()
    store, address = open_device(args.dir)
    sync = DeviceSync(store, address)
    sync.start()
    while (last := store.outbox.last_seq(SERVER_PEER, args.stream)) < args.count:
        n = min(args.per_put, args.count - last)
        items = [("event", {"name": "reading", "data": {"n": last + i + 1}}) for i in range(n)]
        store.outbox.put_many(items, peer=SERVER_PEER, stream=args.stream)
        sync.notify()
        time.sleep(args.pause)
    ok = wait_for(lambda: store.outbox.depth() == 0, timeout=300, interval=0.1)
    sync.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
