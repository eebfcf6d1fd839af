"""The latency distribution of a view: the store's fine histogram folded into a few readable bins.

The store keeps latencies in log buckets 5 % wide (``peekapi_server.histogram``); a chart of hundreds of such
buckets is noise to a reader. Here they are folded into bins on the 1-2-5 sequence (0.1 ms, 0.2, 0.5, 1, 2, 5 ...
60 s and above), each bucket counted in the bin its representative value falls in, and trimmed to the bins
between the first and the last that hold anything. Pure functions; never raise on any input of the store's shape.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from peekapi_server.histogram import bucket_value

# Upper edges of the bins, in ms: 0.1, 0.2, 0.5, 1, 2, 5, ... 50,000; the last bin is everything above.
EDGES: tuple[float, ...] = tuple(m * 10.0**e for e in range(-1, 5) for m in (1.0, 2.0, 5.0))


@dataclass(frozen=True)
class Bin:
    """Requests whose latency was above ``lo`` and at most ``hi`` ms (``hi`` None: no upper edge)."""

    lo: float
    hi: float | None
    count: int
    share: float  # of all the requests in the distribution, 0..1

    def as_json(self) -> dict[str, object]:
        """The bin as the endpoint page's JSON twin gives it."""
        return {"label": self.label, "lo_ms": self.lo, "hi_ms": self.hi, "requests": self.count}

    @property
    def label(self) -> str:
        """The bin's range in words, e.g. ``"2-5 ms"``, ``"500 ms-1 s"``, ``"1-2 s"``, ``"> 50 s"``."""
        if self.hi is None:
            return f"> {_duration(self.lo)}"
        if self.lo == 0:
            return f"≤ {_duration(self.hi)}"
        if (self.lo >= 1000) != (self.hi >= 1000):  # across the unit: both units shown
            return f"{_duration(self.lo)}-{_duration(self.hi)}"
        lo = self.lo / 1000 if self.lo >= 1000 else self.lo
        return f"{_number(lo)}-{_duration(self.hi)}"


def _number(value: float) -> str:
    return f"{value:g}"


def _duration(ms: float) -> str:
    return f"{_number(ms / 1000)} s" if ms >= 1000 else f"{_number(ms)} ms"


def bins(histogram: Iterable[tuple[int, int]]) -> list[Bin]:
    """The 1-2-5 bins of ``(bucket, count)`` pairs, from the first non-empty bin to the last; [] when empty."""
    counts = [0] * (len(EDGES) + 1)
    for bucket, count in histogram:
        if count > 0:
            counts[bisect.bisect_left(EDGES, bucket_value(bucket))] += count
    total = sum(counts)
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return []
    out = []
    for i in range(used[0], used[-1] + 1):
        lo = EDGES[i - 1] if i > 0 else 0.0
        hi = EDGES[i] if i < len(EDGES) else None
        out.append(Bin(lo, hi, counts[i], counts[i] / total))
    return out
