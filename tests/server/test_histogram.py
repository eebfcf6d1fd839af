"""The log-bucket histogram: bounded relative error, and merging is adding counts."""

from __future__ import annotations

import math
import random

import pytest

from peekapi_server import histogram


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("value", [0.002, 0.5, 1.0, 3.7, 12.5, 99.9, 1234.0, 60_000.0, 3_600_000.0])
def test_bucket_value_is_within_three_percent(value: float) -> None:
    estimate = histogram.bucket_value(histogram.bucket_of(value))
    assert abs(estimate - value) / value <= math.sqrt(histogram.GAMMA) - 1 + 1e-9


def test_zero_negative_and_nan_land_in_bucket_zero() -> None:
    assert histogram.bucket_of(0.0) == 0
    assert histogram.bucket_of(-5.0) == 0
    assert histogram.bucket_of(float("nan")) == 0
    assert histogram.bucket_of(1e300) == histogram.MAX_BUCKET


def test_percentiles_of_merged_parts_match_exact_quantiles_within_a_few_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3.0, 1.2) for _ in range(20_000)]
    parts: list[dict[int, int]] = [{}, {}, {}]
    for i, v in enumerate(values):
        part = parts[i % 3]
        b = histogram.bucket_of(v)
        part[b] = part.get(b, 0) + 1
    pairs = [(b, n) for part in parts for b, n in part.items()]
    estimates = histogram.percentiles(pairs, (0.5, 0.95, 0.99), min(values), max(values))
    for q, est in zip((0.5, 0.95, 0.99), estimates, strict=True):
        exact = exact_quantile(values, q)
        assert est is not None
        assert abs(est - exact) / exact < 0.03, (q, est, exact)


def test_percentiles_without_data_are_none_and_clamping_makes_extremes_exact() -> None:
    assert histogram.percentiles([], (0.5, 0.99)) == [None, None]
    one = [(histogram.bucket_of(12.5), 1)]
    assert histogram.percentiles(one, (0.5, 0.99), 12.5, 12.5) == [12.5, 12.5]
