"""Publish-to-commit latency per event, summarised as percentiles."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds; `count` events measured."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def p99_of(run: dict[str, Any], phase: str) -> float | None:
    """The p99 of one latency phase of a result's run (`half_load`, `raw_half_load`, …); None if not measured."""
    return ((run.get("latency_ms") or {}).get(phase) or {}).get("p99")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(latencies_ms: Sequence[float]) -> Percentiles | None:
    if not latencies_ms:
        return None
    values = sorted(latencies_ms)
    return Percentiles(len(values), *(round(percentile(values, q), 2) for q in (50, 95, 99)), round(values[-1], 2))


def latencies_ms(prefix: str, published: array, processed: dict[str, float]) -> list[float]:
    """processed_at minus publish time, for event `<prefix><n>` published at `published[n]`.

    `processed_at` is the applying transaction's start (`now()`), so each figure is a close
    lower bound of publish-to-commit: it misses the few statements and the commit itself.
    """
    return [(processed[f"{prefix}{n}"] - at) * 1000 for n, at in enumerate(published) if f"{prefix}{n}" in processed]
