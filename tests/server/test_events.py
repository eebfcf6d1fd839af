"""Event validation: every spelling WIRE.md lists is understood; what cannot be is rejected, not fatal."""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest

from peekapi_server.events import Event, Rejection, decode_body, parse_batch, parse_event, parse_timestamp

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
    assert isinstance(parse_event(ev(timestamp=bad), NOW, LO, HI), Rejection)


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
    assert isinstance(e, Event)
    assert e.route == "/u/<int:uid>"
    assert e.metadata == '{"a":[1],"b":1}'


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        ev(method=None),
        ev(method=["GET"]),
        ev(method={"a": 1}),
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
    assert isinstance(e, Event)
    assert len(e.path) == 2048
    assert e.consumer is not None and len(e.consumer) == 256


def _good() -> str:
    return json.dumps(ev(path="/good"))


def _hostile(**fields: str) -> str:
    """One event's JSON text: ``fields`` are raw JSON fragments over a valid event's."""
    raw = {"method": '"GET"', "path": '"/x"', "status_code": "200", "response_time_ms": "1", **fields}
    return "{" + ",".join(f'"{k}":{v}' for k, v in raw.items()) + "}"


# Each is one event's JSON text, exactly as a client could send it; every one must be rejected alone.
HOSTILE = {
    "lone surrogate in path": _hostile(path='"/x\\ud800"'),
    "lone low surrogate in route": _hostile(route='"/\\udc00"'),
    "lone surrogate in consumer": _hostile(consumer_id='"c\\ud834"'),
    "lone surrogate in a metadata value": _hostile(metadata='{"a":"\\ud800"}'),
    "lone surrogate in a metadata key": _hostile(metadata='{"\\udfff":1}'),
    "surrogate in method": _hostile(method='"G\\ud800"'),
    "NUL in path": _hostile(path='"/x\\u0000y"'),
    "NUL in route": _hostile(route='"\\u0000"'),
    "NUL in consumer": _hostile(consumer_id='"\\u0000"'),
    "NUL in method": _hostile(method='"GE\\u0000T"'),
    "space in method": _hostile(method='"GE T"'),
    "size beyond 64 bits": _hostile(request_size="18446744073709551616"),
    "size beyond 1 TiB": _hostile(response_size="1099511627777"),
    "size of 5000 digits": _hostile(response_size="9" * 5000),
    "latency 1e308": _hostile(response_time_ms="1e308"),
    "latency 1e999 (infinity)": _hostile(response_time_ms="1e999"),
    "latency NaN": _hostile(response_time_ms="NaN"),
    "latency Infinity": _hostile(response_time_ms="Infinity"),
    "status beyond 64 bits": _hostile(status_code="1e30"),
    "NaN in metadata": _hostile(metadata='{"a":NaN}'),
    "timestamp before 1970": _hostile(timestamp='"1969-12-31T23:59:59Z"'),
    "timestamp in year 1": _hostile(timestamp='"0001-01-01T00:00:00Z"'),
    "timestamp after 9999 in UTC": _hostile(timestamp='"9999-12-31T23:59:59-05:00"'),
    "timestamp in year 10000": _hostile(timestamp='"10000-01-01T00:00:00Z"'),
    "metadata 40 deep": _hostile(metadata='{"a":' * 40 + "1" + "}" * 40),
    "metadata 500 deep in a list": _hostile(metadata='{"a":' + "[" * 500 + "]" * 500 + "}"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_event_is_rejected_alone(name: str) -> None:
    body = ("[" + HOSTILE[name] + "," + _good() + "]").encode()
    decoded, check = decode_body(body)
    result = parse_batch(decoded, NOW, 31 * 86400 * 1000, 300_000, check)
    assert result is not None
    assert (len(result.events), result.rejected) == (1, 1), result
    assert result.events[0].path == "/good"
    assert isinstance(result.first_rejection, Rejection) and result.first_rejection


def test_bytes_that_are_not_utf8_reject_only_their_event() -> None:
    bad = b'{"method":"GET","path":"/x\xff\xed\xa0\x80","status_code":200,"response_time_ms":1}'
    decoded, check = decode_body(b"[" + bad + b"," + _good().encode() + b"]")
    result = parse_batch(decoded, NOW, 31 * 86400 * 1000, 300_000, check)
    assert result is not None and (len(result.events), result.rejected) == (1, 1)


def test_valid_unicode_is_kept_exactly() -> None:
    escaped = r'"path":"/caf\u00e9/\ud83d\ude00","consumer_id":"\u00fc"'  # JSON escapes, a surrogate pair among them
    raw = '"route":"/\u65e5"'  # UTF-8 bytes as they are
    text = '[{"method":"GET",' + escaped + "," + raw + ',"status_code":200,"response_time_ms":1}]'
    decoded, check = decode_body(text.encode())
    assert check
    result = parse_batch(decoded, NOW, 31 * 86400 * 1000, 300_000, check)
    assert result is not None and result.rejected == 0
    (e,) = result.events
    assert (e.path, e.consumer, e.route) == ("/caf\u00e9/\U0001f600", "\u00fc", "/\u65e5")


def test_a_plain_ascii_body_skips_the_text_checks_only_when_it_cannot_hold_bad_text() -> None:
    assert decode_body(b'[{"path":"/a"}]')[1] is False
    assert decode_body(b'[{"path":"/a\\u0041"}]')[1] is True
    assert decode_body('[{"path":"/é"}]'.encode())[1] is True


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b"not json", b'[{"a":1}', b"[1] [2]"])
def test_bodies_that_are_not_json_or_nest_too_deep_are_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_body(body)
