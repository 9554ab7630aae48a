"""Fleet observability: Prometheus metrics and the dashboard's summary, both read from the store.

Devices report cumulative per-model request stats in their telemetry; the fleet's numbers are their
sums (exact for counters and histogram buckets; quantiles interpolated from the summed buckets).
The server adds what only it knows: deferred-task backlog, both outboxes per device, escalations,
devices online, rollout progress, and its own HTTP latency.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from linecrew.server.store import ServerStore
from linecrew.shared.metrics import CostModel, add, derived, total
from linecrew.shared.promtools import request_families
from linecrew.shared.protocol import RequestStats


def fleet_requests(store: ServerStore) -> dict[str, RequestStats]:
    """Per-model request stats summed over every device's latest report."""
    out: dict[str, RequestStats] = {}
    for stats in store.registry.request_stats():
        for model, raw in stats.items():
            s = RequestStats.model_validate(raw)
            out[model] = add(out[model], s) if model in out else s
    return out


def backlog(store: ServerStore) -> dict[str, Any]:
    rows = store.tasks.backlog()
    oldest = min((float(r["oldest"]) for r in rows), default=None)
    return {"tasks": sum(int(r["n"]) for r in rows),
            "by_kind": [{"kind": r["kind"], "status": r["status"], "n": r["n"]} for r in rows],
            "oldest_age_s": round(time.time() - oldest, 1) if oldest else 0.0}


def outboxes(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per device (rows of ``store.fleet()``): what waits on the device (its last report) and what waits
    here for it."""
    return [{"device_id": d["id"], "online": d["online"], "device_outbox": int(d["telemetry"].get("outbox_depth", 0)),
             "server_outbox": d["server_outbox"]} for d in devices]


def open_escalations(store: ServerStore) -> int:
    return store.escalations.open_count()


def fleet_summary(store: ServerStore, cost: CostModel) -> dict[str, Any]:
    per_model = fleet_requests(store)
    devices = store.fleet()
    return {
        "at": time.time(),
        "models": {m: derived(s, cost) for m, s in sorted(per_model.items())},
        "total": derived(total(per_model.values()), cost),
        "backlog": backlog(store),
        "outboxes": outboxes(devices),
        "devices": {"total": len(devices), "online": sum(1 for d in devices if d["online"])},
        "escalations_open": open_escalations(store),
    }


class ServerCollector(Collector):
    def __init__(self, store: ServerStore, cost: CostModel) -> None:
        self.store = store
        self.cost = cost

    def collect(self) -> Iterator[Metric]:
        yield from request_families(fleet_requests(self.store), self.cost)
        dev_depth = GaugeMetricFamily("linecrew_device_outbox_depth", "Messages waiting on the device (last "
                                      "report)", labels=["device"])
        srv_depth = GaugeMetricFamily("linecrew_server_outbox_depth", "Messages the server holds for the device",
                                      labels=["device"])
        online = GaugeMetricFamily("linecrew_device_online", "1 while the device is connected", labels=["device"])
        for o in outboxes(self.store.fleet()):
            dev_depth.add_metric([o["device_id"]], o["device_outbox"])
            srv_depth.add_metric([o["device_id"]], o["server_outbox"])
            online.add_metric([o["device_id"]], 1.0 if o["online"] else 0.0)
        yield from (dev_depth, srv_depth, online)
        b = backlog(self.store)
        bl = GaugeMetricFamily("linecrew_deferred_backlog", "Deferred tasks waiting or running",
                               labels=["kind", "status"])
        for k in b["by_kind"]:
            bl.add_metric([str(k["kind"]), str(k["status"])], float(k["n"]))
        yield bl
        yield GaugeMetricFamily("linecrew_deferred_backlog_oldest_seconds", "Age of the oldest unfinished "
                                "deferred task", value=b["oldest_age_s"])
        yield GaugeMetricFamily("linecrew_escalations_open", "Escalations waiting for an expert",
                                value=float(open_escalations(self.store)))
        ro = GaugeMetricFamily("linecrew_rollout_devices", "Devices per rollout and state",
                               labels=["rollout", "state"])
        for r in self.store.rollouts.device_state_counts():
            ro.add_metric([str(r["rollout_id"]), str(r["state"])], float(r["n"]))  # type: ignore[arg-type]
        yield ro


class ServerMetrics:
    """The server's registry: the store collector plus HTTP request latency per route."""

    def __init__(self, store: ServerStore, cost: CostModel) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ServerCollector(store, cost))
        self.http = Histogram("linecrew_http_request_duration_seconds", "Admin and device HTTP API latency",
                              ["method", "route", "status"], registry=self.registry,
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
