"""What device and server both need to count assistant requests the same way.

Requests are summarised per model as cumulative counters and histogram bucket counts with fixed
bounds, so the server can add up the fleet exactly and derive quantiles from the sums (as Prometheus'
``histogram_quantile`` does). Cost per resolved task uses one configured :class:`CostModel`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from linecrew.shared.protocol import RequestStats

LATENCY_BOUNDS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, math.inf)
TOKEN_BOUNDS: tuple[float, ...] = (4, 8, 16, 32, 64, 128, 256, 512, 1024, math.inf)
NO_MODEL = "none"  # label of requests no model answered (escalated, deferred, actions)


class CostModel(BaseModel):
    """Estimated money per unit of work, in one currency (configured; these defaults are estimates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    device_compute_per_hour: float = Field(0.02, ge=0, description="energy and wear of a device answering")
    server_task: float = Field(0.05, ge=0, description="one deferred task on the server's workers")
    expert_answer: float = Field(4.0, ge=0, description="a remote expert's time for one escalation")

    def cost(self, s: RequestStats) -> float:
        return s.generation_s / 3600 * self.device_compute_per_hour + s.deferred * self.server_task \
            + s.escalated * self.expert_answer


def summarise(rows: Iterable[Mapping[str, Any]]) -> dict[str, RequestStats]:
    """Per-model stats from request rows (``model_version``, ``route``, ``latency_ms``,
    ``completion_tokens``, ``error``, ``degraded``, ``resolved_at``)."""
    out: dict[str, RequestStats] = {}
    for r in rows:
        model = str(r.get("model_version") or NO_MODEL)
        s = out.get(model) or RequestStats(latency_buckets=[0] * len(LATENCY_BOUNDS_S),
                                           token_buckets=[0] * len(TOKEN_BOUNDS))
        out[model] = s
        latency_s = float(r["latency_ms"]) / 1000
        tokens = int(r.get("completion_tokens") or 0)
        s.count += 1
        s.errors += int(bool(r.get("error")))
        s.escalated += int(r["route"] == "escalated")
        s.deferred += int(r["route"] == "deferred")
        s.resolved += int(r.get("resolved_at") is not None)
        s.tokens += tokens
        s.latency_sum_s += latency_s
        if model != NO_MODEL and not r.get("error"):
            s.generation_s += latency_s
        s.latency_buckets[bisect.bisect_left(LATENCY_BOUNDS_S, latency_s)] += 1
        s.token_buckets[bisect.bisect_left(TOKEN_BOUNDS, tokens)] += 1
    return out


def add(a: RequestStats, b: RequestStats) -> RequestStats:
    """The sum of two snapshots (bucket lists of different lengths are refused: bounds changed)."""
    if a.latency_buckets and b.latency_buckets and len(a.latency_buckets) != len(b.latency_buckets):
        raise ValueError("latency bucket bounds differ")
    lb = [x + y for x, y in zip(a.latency_buckets or [0] * len(b.latency_buckets),
                                b.latency_buckets or [0] * len(a.latency_buckets), strict=True)]
    tb = [x + y for x, y in zip(a.token_buckets or [0] * len(b.token_buckets),
                                b.token_buckets or [0] * len(a.token_buckets), strict=True)]
    return RequestStats(count=a.count + b.count, errors=a.errors + b.errors, escalated=a.escalated + b.escalated,
                        deferred=a.deferred + b.deferred, resolved=a.resolved + b.resolved,
                        tokens=a.tokens + b.tokens, generation_s=a.generation_s + b.generation_s,
                        latency_sum_s=a.latency_sum_s + b.latency_sum_s, latency_buckets=lb, token_buckets=tb)


def quantile(q: float, buckets: list[int], bounds: tuple[float, ...] = LATENCY_BOUNDS_S) -> float | None:
    """Linear interpolation inside the bucket holding the q-th observation (``histogram_quantile``);
    the open top bucket answers with its lower bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            lo = bounds[i - 1] if i else 0.0
            hi = bounds[i]
            if math.isinf(hi):
                return lo
            return lo + (hi - lo) * (rank - seen) / n
        seen += n
    return bounds[-2]


def derived(s: RequestStats, cost: CostModel) -> dict[str, float | None]:
    """The operator's numbers for one model (or a total): quantiles, rates, throughput, cost."""
    return {
        "requests": s.count,
        "p50_s": quantile(0.5, s.latency_buckets), "p95_s": quantile(0.95, s.latency_buckets),
        "p99_s": quantile(0.99, s.latency_buckets),
        "tokens_per_request": round(s.tokens / s.count, 1) if s.count else None,
        "tokens_per_s": round(s.tokens / s.generation_s, 2) if s.generation_s else None,
        "error_rate": round(s.errors / s.count, 4) if s.count else None,
        "manual_intervention_rate": round(s.escalated / s.count, 4) if s.count else None,
        "resolved": s.resolved,
        "cost": round(cost.cost(s), 4),
        "cost_per_resolved_task": round(cost.cost(s) / s.resolved, 4) if s.resolved else None,
    }


def percentiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[float, float]:
    """Nearest-rank quantiles of raw samples (where they exist: one device's own requests)."""
    xs = sorted(values)
    return {q: xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))] for q in qs} if xs else {}


def total(stats: Iterable[RequestStats]) -> RequestStats:
    out = RequestStats(latency_buckets=[0] * len(LATENCY_BOUNDS_S), token_buckets=[0] * len(TOKEN_BOUNDS))
    for s in stats:
        out = add(out, s)
    return out
