"""Percentiles for benchmarks: inclusive quantiles, and what there is when there are few samples."""

from __future__ import annotations

import statistics


def pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)
