"""Prometheus metrics of one device, read from its own store at scrape time (nothing kept in memory,
so a restart loses nothing): requests per model, latency and tokens, errors, manual interventions,
outbox depth and cost per resolved task. ``serve_metrics`` exposes them on ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from linecrew.agent.store import AgentStore
from linecrew.shared.metrics import NO_MODEL, CostModel, percentiles, summarise
from linecrew.shared.promtools import request_families
from linecrew.shared.protocol import RequestStats

_COLUMNS = "route, latency_ms, completion_tokens, model_version, error, degraded, resolved_at"


def request_rows(store: AgentStore) -> list[dict[str, Any]]:
    return store.db.query(f"SELECT {_COLUMNS} FROM requests")


def request_summary(store: AgentStore) -> dict[str, RequestStats]:
    """Per-model cumulative request stats: what telemetry carries to the server."""
    return summarise(request_rows(store))


def exact_quantiles(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(str(r["model_version"] or NO_MODEL), []).append(float(r["latency_ms"]) / 1000)
    return {model: {str(q): round(v, 4) for q, v in percentiles(xs).items()} for model, xs in by_model.items()}


class AgentCollector(Collector):
    def __init__(self, store: AgentStore, cost: CostModel | None = None) -> None:
        self.store = store
        self.cost = cost or CostModel()

    def collect(self) -> Iterator[Metric]:
        rows = request_rows(self.store)
        yield from request_families(summarise(rows), self.cost, exact_quantiles(rows))
        depth = GaugeMetricFamily("linecrew_outbox_depth", "Messages waiting in the device outbox",
                                  labels=["device"])
        depth.add_metric([self.store.device_id], self.store.outbox.depth())
        used = GaugeMetricFamily("linecrew_outbox_bytes", "Bytes the device outbox holds", labels=["device"])
        used.add_metric([self.store.device_id], self.store.outbox.used_bytes())
        yield depth
        yield used


def registry_for(store: AgentStore, cost: CostModel | None = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(AgentCollector(store, cost))
    return reg


def serve_metrics(store: AgentStore, *, host: str, port: int, cost: CostModel | None = None) -> Any:
    """Serve ``/metrics`` on host:port in a background thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry_for(store, cost))
