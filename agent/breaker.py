"""Circuit breaker around the local model (pure; the caller passes the clock).

Closed: requests go to the model. ``failure_threshold`` consecutive failures (errors or answers over
the latency budget) open it: requests are answered from retrieval only, and the answer says so. After
``reset_after_s`` one trial request is let through (half-open); success closes it, failure re-opens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    reset_after_s: float = 60.0
    latency_budget_ms: float = 15_000.0
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0

    def allow(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.reset_after_s:
            self.state = "half_open"
        return self.state != "open"

    def record(self, *, ok: bool, latency_ms: float, now: float) -> None:
        good = ok and latency_ms <= self.latency_budget_ms
        if good:
            self.state, self.failures = "closed", 0
            return
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            self.state, self.opened_at = "open", now
