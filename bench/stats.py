"""Percentiles and summaries of latency samples (seconds in, milliseconds out)."""

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples: Sequence[float]) -> dict[str, Any]:
    """count, mean, p50, p90, p95, p99, max in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "mean_ms": 1000 * statistics.fmean(ordered),
        "p50_ms": 1000 * percentile(ordered, 0.50),
        "p90_ms": 1000 * percentile(ordered, 0.90),
        "p95_ms": 1000 * percentile(ordered, 0.95),
        "p99_ms": 1000 * percentile(ordered, 0.99),
        "max_ms": 1000 * ordered[-1],
    }


PLOT_FRACTIONS = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0]


def curve_ms(samples: Sequence[float]) -> list[tuple[float, float]]:
    """(fraction, latency ms) points of the distribution, for plots."""
    ordered = sorted(samples)
    if not ordered:
        return []
    fractions = sorted({*PLOT_FRACTIONS, *(n / 100 for n in range(1, 100))})
    return [(f, 1000 * (percentile(ordered, f) if f > 0 else ordered[0])) for f in fractions]
