"""The latency distribution's bins: the store's fine histogram folded into 1-2-5 bins, trimmed, with shares."""

from __future__ import annotations

from peekapi_server.dashboard.distribution import EDGES, bins
from peekapi_server.histogram import bucket_of


def hist(*latencies: float) -> list[tuple[int, int]]:
    counts: dict[int, int] = {}
    for ms in latencies:
        counts[bucket_of(ms)] = counts.get(bucket_of(ms), 0) + 1
    return sorted(counts.items())


def test_latencies_land_in_their_bins_trimmed_to_the_used_range() -> None:
    out = bins(hist(3.0, 3.5, 4.0, 30.0, 1500.0))
    assert [b.label for b in out] == [
        "2-5 ms", "5-10 ms", "10-20 ms", "20-50 ms", "50-100 ms", "100-200 ms", "200-500 ms", "500 ms-1 s", "1-2 s",
    ]  # fmt: skip
    assert [b.count for b in out] == [3, 0, 0, 1, 0, 0, 0, 0, 1]
    assert sum(b.share for b in out) == 1.0
    assert out[0].share == 0.6


def test_the_open_ends_and_nothing() -> None:
    assert bins([]) == [] and bins([(10, 0)]) == []
    low, high = bins(hist(0.0005)), bins(hist(10 * 60_000.0))
    assert [(b.label, b.count) for b in low] == [("≤ 0.1 ms", 1)]
    assert [(b.label, b.count, b.hi) for b in high] == [("> 50 s", 1, None)]
    assert EDGES[0] == 0.1 and EDGES[-1] == 50_000.0


def test_a_fine_bucket_counts_once_even_at_an_edge() -> None:
    # every fine bucket of a wide spread lands in exactly one bin: no request lost or counted twice
    fine = [(b, 1) for b in range(601)]
    assert sum(b.count for b in bins(fine)) == 601
