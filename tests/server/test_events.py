"""Event validation: every spelling WIRE.md lists is understood; what cannot be is rejected, not fatal."""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest

from peekapi_server.events import parse_batch, parse_event, parse_timestamp

NOW = calendar.timegm((2026, 6, 1, 12, 0, 0, 0, 0, 0)) * 1000
LO = NOW - 31 * 86400 * 1000
HI = NOW + 300 * 1000
T = calendar.timegm((2026, 6, 1, 11, 59, 0, 0, 0, 0)) * 1000


def ev(**kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"method": "GET", "path": "/a", "status_code": 200, "response_time_ms": 1.0}
    e.update(kw)
    return e


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("2026-06-01T11:59:00.123Z", T + 123),  # Node, Ruby, Rust
        ("2026-06-01T11:59:00.123456+00:00", T + 123),  # Python with a fraction
        ("2026-06-01T11:59:00+00:00", T),  # Python when the fraction is zero
        ("2026-06-01T11:59:00Z", T),  # Go, no fraction
        ("2026-06-01T11:59:00.1Z", T + 100),  # Go, one digit
        ("2026-06-01T11:59:00.123456789Z", T + 123),  # Go, nine digits
        ("2026-06-01T11:59:00.000Z", T),  # PHP
        ("2026-06-01T13:59:00.5+02:00", T + 500),  # an offset
        ("2026-06-01T07:29:00-0430", T),  # an offset without a colon
        ("2026-06-01 11:59:00", T),  # no offset: UTC
    ],
)
def test_timestamp_spellings(spelling: str, expected: int) -> None:
    assert parse_timestamp(spelling, NOW, LO, HI) == expected


@pytest.mark.parametrize("missing", [None, ""])
def test_missing_or_empty_timestamp_means_now(missing: str | None) -> None:
    assert parse_timestamp(missing, NOW, LO, HI) == NOW


def test_far_timestamps_are_clamped() -> None:
    assert parse_timestamp("2030-01-01T00:00:00Z", NOW, LO, HI) == NOW
    assert parse_timestamp("2001-01-01T00:00:00Z", NOW, LO, HI) == LO


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "2026-06-01", 12345, "2026-02-30T00:00:00Z"])
def test_unreadable_timestamps_reject_the_event(bad: object) -> None:
    assert parse_event(ev(timestamp=bad), NOW, LO, HI) is None


def test_wire_quirks_are_accepted() -> None:
    body = (
        '[{"method":"get","path":"\\/users\\/42","status_code":2.0E2,"response_time_ms":1.0E-4,'
        '"request_size":null,"response_size":1e3,"consumer_id":null,"metadata":null}]'
    )
    result = parse_batch(json.loads(body), NOW, 31 * 86400 * 1000, 300_000)
    assert result is not None
    assert result.rejected == 0
    (e,) = result.events
    assert (e.method, e.path, e.route, e.status_code) == ("GET", "/users/42", "/users/{id}", 200)
    assert (e.response_time_ms, e.request_size, e.response_size) == (0.0001, 0, 1000)
    assert (e.consumer, e.metadata, e.ts_ms) == (None, None, NOW)


def test_route_wins_over_normalisation_and_metadata_is_kept() -> None:
    e = parse_event(ev(path="/u/7", route="/u/<int:uid>", metadata={"b": 1, "a": [1]}), NOW, LO, HI)
    assert e is not None
    assert e.route == "/u/<int:uid>"
    assert e.metadata == '{"a":[1],"b":1}'


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        ev(method=None),
        ev(method=""),
        ev(method="X" * 17),
        ev(path=None),
        ev(path=""),
        ev(status_code="200"),
        ev(status_code=True),
        ev(status_code=99),
        ev(status_code=200.5),
        ev(response_time_ms=None),
        ev(response_time_ms=-1),
        ev(response_time_ms="3"),
        ev(response_time_ms=True),
        ev(response_time_ms=float("nan")),
        ev(response_time_ms=float("inf")),
        ev(response_size=1.5),
        ev(response_size=False),
        ev(request_size=-1),
        ev(consumer_id=5),
        ev(metadata=[1]),
        ev(route=5),
    ],
)
def test_bad_events_are_rejected_one_by_one(bad: object) -> None:
    result = parse_batch([bad, ev()], NOW, 31 * 86400 * 1000, 300_000)
    assert result is not None
    assert (len(result.events), result.rejected) == (1, 1)


def test_a_body_that_is_not_an_array_is_refused() -> None:
    assert parse_batch({"method": "GET"}, NOW, 1, 1) is None


def test_long_fields_are_truncated() -> None:
    e = parse_event(ev(path="/" + "a" * 5000, consumer_id="c" * 300), NOW, LO, HI)
    assert e is not None
    assert len(e.path) == 2048
    assert e.consumer is not None and len(e.consumer) == 256
