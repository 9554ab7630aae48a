"""Prometheus metric families built from :class:`~shared.protocol.RequestStats` (device and server)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from linecrew.shared.metrics import LATENCY_BOUNDS_S, TOKEN_BOUNDS, CostModel, derived
from linecrew.shared.protocol import RequestStats


def _le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(float(b))


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out, run = [], 0
    for b, n in zip(bounds, counts or [0] * len(bounds), strict=True):
        run += n
        out.append((_le(b), float(run)))
    return out


def request_families(per_model: Mapping[str, RequestStats], cost: CostModel,
                     quantiles: Mapping[str, Mapping[str, float | None]] | None = None) -> Iterator[Metric]:
    """Latency and token histograms, quantile gauges, throughput, error and manual-intervention rates,
    request counters per route and cost per resolved task, each labelled by model.

    ``quantiles`` (model → {"0.5": s, ...}) gives exact values where raw samples exist (the device);
    otherwise they are interpolated from the summed buckets (the fleet)."""
    lat = HistogramMetricFamily("linecrew_request_latency_seconds", "Assistant request latency", labels=["model"])
    tok = HistogramMetricFamily("linecrew_request_tokens", "Completion tokens per request", labels=["model"])
    qg = GaugeMetricFamily("linecrew_request_latency_quantile_seconds", "Request latency p50/p95/p99",
                           labels=["model", "quantile"])
    thr = GaugeMetricFamily("linecrew_model_throughput_tokens_per_second", "Tokens generated per second of "
                            "generation", labels=["model"])
    req = CounterMetricFamily("linecrew_requests", "Assistant requests by route", labels=["model", "route"])
    err = CounterMetricFamily("linecrew_model_errors", "Requests the model failed (error or timeout)",
                              labels=["model"])
    err_rate = GaugeMetricFamily("linecrew_model_error_rate", "Share of requests the model failed", labels=["model"])
    manual = GaugeMetricFamily("linecrew_manual_intervention_rate", "Share of requests escalated to a person",
                               labels=["model"])
    resolved = CounterMetricFamily("linecrew_requests_resolved", "Requests resolved", labels=["model"])
    cpr = GaugeMetricFamily("linecrew_cost_per_resolved_task", "Estimated cost per resolved task (configured "
                            "cost model)", labels=["model"])
    for model, s in sorted(per_model.items()):
        d = derived(s, cost)
        lat.add_metric([model], _cumulative(LATENCY_BOUNDS_S, s.latency_buckets), s.latency_sum_s)
        tok.add_metric([model], _cumulative(TOKEN_BOUNDS, s.token_buckets), float(s.tokens))
        qs = (quantiles or {}).get(model) or {"0.5": d["p50_s"], "0.95": d["p95_s"], "0.99": d["p99_s"]}
        for q, v in qs.items():
            if v is not None:
                qg.add_metric([model, q], v)
        if d["tokens_per_s"] is not None:
            thr.add_metric([model], d["tokens_per_s"])
        local = s.count - s.escalated - s.deferred
        for route, n in (("local", local), ("escalated", s.escalated), ("deferred", s.deferred)):
            req.add_metric([model, route], n)
        err.add_metric([model], s.errors)
        err_rate.add_metric([model], s.errors / s.count if s.count else 0.0)
        manual.add_metric([model], s.escalated / s.count if s.count else 0.0)
        resolved.add_metric([model], s.resolved)
        if d["cost_per_resolved_task"] is not None:
            cpr.add_metric([model], d["cost_per_resolved_task"])
    yield from (lat, tok, qg, thr, req, err, err_rate, manual, resolved, cpr)
