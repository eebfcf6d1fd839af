"""The mergeable latency histogram: log-scale buckets whose counts simply add up.

A latency ``v`` milliseconds falls in bucket ``b = floor(log(v / MIN_MS) / log(GAMMA)) + 1`` (bucket 0 holds
everything at or below ``MIN_MS``). Every bucket spans a factor ``GAMMA`` so reporting its geometric midpoint is
off by at most ``sqrt(GAMMA) - 1`` (about 2.5 %) relative to any value in it. Because buckets are fixed, the
histograms of any set of rollup rows merge by adding counts per bucket: that is what the store does in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

GAMMA = 1.05
MIN_MS = 0.001
MAX_BUCKET = 600  # 0.001 ms * 1.05**600 is about 5e9 ms: far beyond any response time
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(latency_ms: float) -> int:
    """The bucket index of a latency in milliseconds (negative and NaN count as 0)."""
    if not latency_ms > MIN_MS:
        return 0
    b = int(math.log(latency_ms / MIN_MS) / _LOG_GAMMA) + 1
    return b if b < MAX_BUCKET else MAX_BUCKET


def bucket_value(bucket: int) -> float:
    """The representative latency (geometric midpoint) of a bucket, in milliseconds."""
    if bucket <= 0:
        return MIN_MS
    return float(MIN_MS * GAMMA ** (bucket - 0.5))


def percentiles(
    counts: Iterable[tuple[int, int]],
    quantiles: Iterable[float],
    lo: float | None = None,
    hi: float | None = None,
) -> list[float | None]:
    """Estimates quantiles (0..1) from ``(bucket, count)`` pairs; ``None`` each when there is no data.

    ``lo``/``hi`` (the exact minimum and maximum, when known) clamp the estimates, which makes p0/p100 exact.
    """
    merged: dict[int, int] = {}
    for bucket, count in counts:
        merged[bucket] = merged.get(bucket, 0) + int(count)
    total = sum(merged.values())
    qs = list(quantiles)
    if total <= 0:
        return [None for _ in qs]
    ordered = sorted(merged.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        seen = 0
        value = bucket_value(ordered[-1][0])
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                value = bucket_value(bucket)
                break
        if lo is not None:
            value = max(value, lo)
        if hi is not None:
            value = min(value, hi)
        out.append(value)
    return out
