"""Request stats: per-model summaries, exact fleet sums, quantiles from buckets, cost, Prometheus text."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from linecrew.agent.metrics import registry_for
from linecrew.agent.store import AgentStore
from linecrew.shared.metrics import LATENCY_BOUNDS_S, NO_MODEL, CostModel, add, derived, quantile, summarise, total
from linecrew.shared.protocol import RequestStats, decode, encode, make_envelope


def _row(model: str | None, ms: float, *, route: str = "local", tokens: int = 20, error: str | None = None,
         resolved: bool = True) -> dict[str, object]:
    return {"model_version": model, "route": route, "latency_ms": ms, "completion_tokens": tokens, "error": error,
            "degraded": int(bool(error)), "resolved_at": 1.0 if resolved else None}


def test_summary_counts_routes_errors_and_generation_time_per_model() -> None:
    rows = [_row("m@1", 800), _row("m@1", 1200, error="FutureTimeout", tokens=0),
            _row(None, 30, route="escalated", tokens=0, resolved=False), _row(None, 20, route="deferred", tokens=0)]
    s = summarise(rows)
    assert set(s) == {"m@1", NO_MODEL}
    m = s["m@1"]
    assert (m.count, m.errors, m.tokens, m.resolved) == (2, 1, 20, 2)
    assert m.generation_s == pytest.approx(0.8), "a failed run is not generation time"
    assert sum(m.latency_buckets) == 2 and m.latency_buckets[LATENCY_BOUNDS_S.index(1.0)] == 1
    n = s[NO_MODEL]
    assert (n.escalated, n.deferred, n.resolved) == (1, 1, 1)


def test_fleet_sum_equals_summary_of_all_rows_and_quantiles_land_in_the_right_bucket() -> None:
    rng = random.Random(7)
    rows = [_row("m@1", rng.lognormvariate(7, 0.8), tokens=rng.randint(1, 300)) for _ in range(3000)]
    devices = [summarise(rows[i::3])["m@1"] for i in range(3)]
    fleet = total(devices)
    whole = summarise(rows)["m@1"]
    assert fleet.latency_buckets == whole.latency_buckets and fleet.count == 3000
    assert fleet.latency_sum_s == pytest.approx(whole.latency_sum_s)
    xs = sorted(float(r["latency_ms"]) / 1000 for r in rows)  # type: ignore[arg-type]
    for q in (0.5, 0.95, 0.99):
        exact = xs[int(q * (len(xs) - 1))]
        est = quantile(q, fleet.latency_buckets)
        assert est is not None
        i = next(i for i, b in enumerate(LATENCY_BOUNDS_S) if exact <= b)
        lo = LATENCY_BOUNDS_S[i - 1] if i else 0.0
        assert lo <= est <= LATENCY_BOUNDS_S[i], (q, exact, est)


def test_quantile_edges() -> None:
    assert quantile(0.5, [0] * len(LATENCY_BOUNDS_S)) is None
    top = [0] * len(LATENCY_BOUNDS_S)
    top[-1] = 5
    assert quantile(0.99, top) == LATENCY_BOUNDS_S[-2], "the open +Inf bucket answers with its lower bound"
    assert math.isinf(LATENCY_BOUNDS_S[-1])
    with pytest.raises(ValueError):
        add(RequestStats(latency_buckets=[1, 2]), RequestStats(latency_buckets=[1, 2, 3]))


def test_cost_per_resolved_task_uses_the_cost_model() -> None:
    s = summarise([_row("m@1", 3_600_000), _row(None, 10, route="escalated"), _row(None, 10, route="deferred",
                                                                                   resolved=False)])
    cost = CostModel(device_compute_per_hour=1.0, server_task=0.5, expert_answer=10.0)
    d = derived(total(s.values()), cost)
    assert d["cost"] == pytest.approx(1.0 + 0.5 + 10.0)
    assert d["cost_per_resolved_task"] == pytest.approx(11.5 / 2)
    assert d["manual_intervention_rate"] == pytest.approx(1 / 3, abs=1e-4)


def test_request_stats_travel_in_telemetry() -> None:
    stats = summarise([_row("m@1", 500)])
    env = make_envelope("telemetry", {"metrics": {"outbox_depth": 0.0},
                                      "requests": {k: v.model_dump() for k, v in stats.items()}},
                        device_id="dev-1", stream="telemetry", seq=1)
    back = decode(encode(env))
    assert back.payload.requests["m@1"] == stats["m@1"]  # type: ignore[attr-defined]


def test_agent_exposition_has_exact_quantiles_and_outbox_depth(tmp_path: Path) -> None:
    store = AgentStore(tmp_path, device_id="dev-1")
    with store.db.transaction() as conn:
        for i, ms in enumerate((100, 200, 300, 400, 5000)):
            conn.execute("INSERT INTO requests (id, at, intent, confidence, route, latency_ms, completion_tokens,"
                         " model_version, resolved_at) VALUES (?,?,?,?,?,?,?,?,?)",
                         (f"r{i}", 1.0, "procedure_question", 0.9, "local", ms, 10, "m@1", 2.0))
    store.outbox.put("telemetry", {"metrics": {}}, peer="server", stream="telemetry")
    text = generate_latest(registry_for(store)).decode()
    assert 'linecrew_request_latency_quantile_seconds{model="m@1",quantile="0.5"} 0.3' in text
    assert 'linecrew_request_latency_quantile_seconds{model="m@1",quantile="0.99"} 5.0' in text
    assert 'linecrew_request_latency_seconds_count{model="m@1"} 5.0' in text
    assert 'linecrew_requests_total{model="m@1",route="local"} 5.0' in text
    assert 'linecrew_outbox_depth{device="dev-1"} 1.0' in text
    assert 'linecrew_model_throughput_tokens_per_second{model="m@1"} 8.33' in text
    store.close()
