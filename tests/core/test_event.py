"""Sanitising: each event is repaired or dropped alone, and never stops the valid events around it."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peekapi import PeekApiClient, RequestEvent, hash_consumer_id
from peekapi.batch import build_batches
from peekapi.event import (
    COMPACT_FIELDS,
    DroppedEvent,
    encode_compact,
    encode_event,
    encode_general,
    format_timestamp,
    resolve_compact,
)
from tests.support.ingest import IngestServer
from tests.support.reliability import report

NOW = 1_764_200_000.5
EVENT_OK = {"method": "GET", "path": "/a", "status_code": 200, "response_time_ms": 1.0}


def encode(raw: object, limit: int = 65_536) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_event(raw, NOW, limit))
    return decoded


def test_truncation_and_case() -> None:
    out = encode(
        {
            "method": "patch" * 10,
            "path": "/" + "p" * 5000,
            "status_code": 200,
            "response_time_ms": 1,
            "consumer_id": "c" * 1000,
        }
    )
    assert out["method"] == ("PATCH" * 10)[:16]
    assert len(out["path"]) == 2048 and len(out["consumer_id"]) == 256


def test_timestamp_is_added_in_utc_iso8601() -> None:
    out = encode({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
    assert datetime.fromisoformat(out["timestamp"]) == datetime.fromtimestamp(NOW, tz=timezone.utc)
    kept = encode(
        {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1, "timestamp": "2026-01-01T00:00:00Z"}
    )
    assert kept["timestamp"] == "2026-01-01T00:00:00+00:00"  # the same time, as Python spells it


@settings(max_examples=1000, deadline=None)
@given(
    st.floats(0, 4e9)
    | st.integers(0, 4 * 10**9).map(float).flatmap(lambda s: st.sampled_from([s, s - 5e-7, s + 5e-7])),
    st.floats(-2, 2) | st.floats(-4e9, 4e9),
)
def test_timestamps_are_isoformat_to_the_microsecond_whatever_came_before(epoch: float, shift: float) -> None:
    # The batcher keeps the last second it formatted: what it formatted before (often the second before or
    # after) must not change the text, and the microseconds round as datetime rounds them (half to even),
    # carrying into the next second.
    format_timestamp(max(epoch + shift, 0.0))
    assert format_timestamp(epoch) == datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def test_oversized_event_loses_metadata_first_then_is_dropped() -> None:
    big = {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1, "metadata": {"x": "y" * 2000}}
    out = encode(big, limit=1024)
    assert "metadata" not in out and out["path"] == "/"
    with pytest.raises(DroppedEvent) as info:
        encode({**big, "path": "/" + "z" * 2000}, limit=1024)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    "bad",
    [
        "GET /",
        42,
        None,
        {"method": "GET", "path": "/"},
        {"method": "GET", "path": "/", "status_code": "abc", "response_time_ms": 1},
        {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": float("nan")},
        {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": float("inf")},
        {"method": "GET", "path": "/", "status_code": 200.5, "response_time_ms": 1},
        {"method": "GET", "path": "/", "status_code": True, "response_time_ms": 1},
    ],
)
def test_unrepairable_events_are_dropped(bad: object) -> None:
    with pytest.raises(DroppedEvent) as info:
        encode_event(bad, NOW, 65_536)
    assert info.value.reason == "invalid"


def test_repairs() -> None:
    out = encode(
        {
            "method": b"get",
            "path": "/caf\udce9",
            "status_code": "404",
            "response_time_ms": "-3",
            "request_size": float("nan"),
            "response_size": "12",
            "consumer_id": 7,
            "metadata": {"bad": float("nan")},
            "route": "",
        }
    )
    assert out["method"] == "GET" and out["status_code"] == 404 and out["response_time_ms"] == 0.0
    assert out["request_size"] == 0 and out["response_size"] == 12 and out["consumer_id"] == "7"
    assert "metadata" not in out and "route" not in out
    assert out["path"].startswith("/caf")
    unserialisable = encode(
        {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1, "metadata": {"when": object()}}
    )
    assert "metadata" not in unserialisable
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert "metadata" not in encode(
        {"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1, "metadata": loop}
    )


def test_request_event_dataclass() -> None:
    out = encode(RequestEvent("get", "/u/1", 201, 3.25, 10, 20, "c", {"k": 1}, route="/u/{id}"))
    assert out == {
        "method": "GET",
        "path": "/u/1",
        "status_code": 201,
        "response_time_ms": 3.25,
        "request_size": 10,
        "response_size": 20,
        "consumer_id": "c",
        "metadata": {"k": 1},
        "timestamp": out["timestamp"],
        "route": "/u/{id}",
    }


def test_malformed_events_do_not_poison_their_batch(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = PeekApiClient({**options, "batch_size": 10})
    good = [{"method": "GET", "path": f"/ok/{i}", "status_code": 200, "response_time_ms": 1} for i in range(8)]
    client.track(good[0])
    client.track("not an event")  # type: ignore[arg-type]
    client.track(good[1])
    client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": float("nan")})
    client.track({**good[2], "metadata": {"obj": object()}})
    for event in good[3:]:
        client.track(event)
    with caplog.at_level("WARNING", logger="peekapi"):
        assert client.flush(5) is False  # the good ones delivered, the bad ones dropped: not all delivered
    assert "flush(): event(s) dropped, not delivered: 2 invalid" in caplog.text
    paths = sorted(e["path"] for e in ingest.events())
    report(
        "8 good and 3 bad events in one batch",
        tracked=client.stats()["tracked"],
        received=len(paths),
        dropped_invalid=client.stats()["dropped"]["invalid"],
    )
    assert paths == sorted(e["path"] for e in good)
    assert client.stats()["dropped"]["invalid"] == 2
    client.shutdown(1)


WIRE_FIELDS = ["method", "path", "status_code", "response_time_ms", "request_size", "response_size", "consumer_id",
               "metadata", "timestamp", "route"]  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary())
fields = st.dictionaries(
    st.sampled_from([*WIRE_FIELDS, "extra"]),
    st.one_of(scalars, st.dictionaries(st.text(), scalars, max_size=3), st.lists(scalars, max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(fields)
def test_any_input_yields_valid_wire_json_or_a_counted_drop(raw: dict[str, Any]) -> None:
    try:
        data = encode_event(raw, NOW, 4096)
    except DroppedEvent as exc:
        assert exc.reason in {"invalid", "too_large"}
        return
    assert len(data) <= 4096
    out = json.loads(data.decode("utf-8"))
    assert set(out) <= set(WIRE_FIELDS)
    assert isinstance(out["method"], str) and len(out["method"]) <= 16 and out["method"] == out["method"].upper()
    assert isinstance(out["path"], str) and len(out["path"]) <= 2048
    assert isinstance(out["status_code"], int) and 0 <= out["status_code"] <= 999
    assert isinstance(out["response_time_ms"], float) and math.isfinite(out["response_time_ms"])
    assert out["response_time_ms"] >= 0
    assert isinstance(out["request_size"], int) and out["request_size"] >= 0
    assert isinstance(out["response_size"], int) and out["response_size"] >= 0
    assert out["consumer_id"] is None or (isinstance(out["consumer_id"], str) and len(out["consumer_id"]) <= 256)
    assert isinstance(out["timestamp"], str) and out["timestamp"]


plain_events = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["get", "POST", "Delete", "options", "\u017f" * 9, "x" * 20]),
        "path": st.text(max_size=40) | st.just("/" + "p" * 3000),
        "status_code": st.integers(-5, 1200),
        "response_time_ms": st.floats(allow_nan=True) | st.integers(-3, 10**6),
        "request_size": st.integers(-2, 10**9),
        "response_size": st.integers(-2, 10**9),
    },
    optional={
        "consumer_id": st.none() | st.text(max_size=300),
        "route": st.none() | st.text(max_size=30),
        "timestamp": st.sampled_from(["", "2026-01-01T00:00:00Z"]),
    },
)


@settings(max_examples=500, deadline=None)
@given(plain_events, st.floats(0, 2e9))
def test_fast_path_matches_the_general_path(raw: dict[str, Any], tracked_at: float) -> None:
    try:
        expected: bytes | str = encode_general(raw, tracked_at, 4096)
    except DroppedEvent as exc:
        expected = exc.reason
    try:
        actual: bytes | str = encode_event(raw, tracked_at, 4096)
    except DroppedEvent as exc:
        actual = exc.reason
    assert actual == expected


header_lists = st.lists(
    st.tuples(
        st.sampled_from([b"host", b"content-length", b"x-api-key", b"authorization", b"accept"]),
        st.sampled_from([b"", b"12", b"-3", b"oops", b"key-1", b"Bearer t", b"\xe9t\xe9"]) | st.none(),
    ),
    max_size=6,
)
compact_events = st.tuples(
    st.sampled_from(["GET", "HEAD", "post", "\u017f" * 9, "x" * 20]),
    st.text(max_size=40) | st.just("/" + "p" * 3000),
    st.integers(-5, 1200),
    st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1e4),
    st.integers(-2, 10**9),
    st.integers(-2, 10**9),
    st.none() | st.text(max_size=300) | header_lists,
    st.none() | st.text(max_size=30),
    st.floats(0, 2e9),
)


def _outcome(encode_one: Any) -> bytes | str:
    try:
        result: bytes = encode_one()
    except DroppedEvent as exc:
        return exc.reason
    return result


@settings(max_examples=500, deadline=None)
@given(compact_events)
def test_a_compact_event_encodes_like_its_resolved_dict_on_every_path(compact: tuple[Any, ...]) -> None:
    # What a middleware hands over is encoded by its own fast path (directly from the buffer entry in
    # build_batches, or through encode_event): the same bytes, or the same drop, as the general path gives the
    # event it stands for once its header list is resolved.
    at = compact[-1]
    resolved = dict(zip(COMPACT_FIELDS, resolve_compact(compact)[:-1], strict=True))
    expected = _outcome(lambda: encode_general(resolved, at, 4096))
    assert _outcome(lambda: encode_compact(compact, 4096)) == expected
    drops: list[str] = []
    batches = build_batches(
        [compact], max_count=10, max_bytes=1 << 20, max_event_bytes=4096, on_drop=lambda r, n, why: drops.append(r)
    )
    if isinstance(expected, bytes):
        assert [batch.body for batch in batches] == [b"[" + expected + b"]"] and not drops
    else:
        assert batches == [] and drops == [expected]


odd_header_lists = st.lists(
    st.tuples(
        st.sampled_from([b"content-length", b"x-api-key", b"authorization", b"host", "x-api-key"]),
        st.sampled_from([b"7", b" 12 ", b"+3", b"1_0", b"9" * 5000, "12", "key-2", "", 12, None]),
    )
    | st.sampled_from([(b"x-api-key", b"k", b"extra"), ([b"x-api-key"], b"k"), "ab", 5, (b"a",), [b"x-api-key", b"k"]]),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(odd_header_lists, st.integers(0, 99))
def test_odd_header_lists_resolve_as_a_dict_of_them_would(headers: list[Any], received: int) -> None:
    # The encoder picks the three headers it reads out of the list; it must read what dict(headers) would have
    # (the last of repeated names; nothing at all from a list that is not one of pairs of hashable names).
    compact = ("GET", "/h", 200, 1.5, received, 0, headers, None, NOW)
    try:
        found = dict(headers)
    except (TypeError, ValueError):
        found = {}
    size = received
    if found.get(b"content-length") is not None:
        try:
            declared = int(found[b"content-length"])
        except ValueError:  # not a number (nor a digit string over int()'s limit): the size stays
            declared = -1
        if declared >= 0:
            size = declared
    api_key, authorization = found.get(b"x-api-key"), found.get(b"authorization")
    consumer = None
    if api_key:
        consumer = api_key.decode("latin-1") if isinstance(api_key, bytes) else str(api_key)
    elif authorization:
        text = authorization.decode("latin-1") if isinstance(authorization, bytes) else str(authorization)
        consumer = hash_consumer_id(text)
    expected = {"method": "GET", "path": "/h", "status_code": 200, "response_time_ms": 1.5, "request_size": size,
                "response_size": 0, "consumer_id": consumer}  # fmt: skip
    actual = _outcome(lambda: encode_compact(compact, 65_536))
    assert actual == _outcome(lambda: encode_general(expected, NOW, 65_536))
    resolved = dict(zip(COMPACT_FIELDS, resolve_compact(compact)[:-1], strict=True))
    assert actual == _outcome(lambda: encode_general(resolved, NOW, 65_536))


@pytest.mark.parametrize(
    ("headers", "read", "size", "consumer"),
    [
        ([(b"host", b"h"), (b"content-length", b"12")], 0, 12, None),
        ([(b"transfer-encoding", b"chunked")], 30, 30, None),
        ([(b"content-length", b"oops")], 5, 5, None),
        ([(b"x-api-key", b"key-1"), (b"authorization", b"Bearer t")], 0, 0, "key-1"),
        ([(b"authorization", b"Bearer t")], 0, 0, hash_consumer_id("Bearer t")),
    ],
)
def test_a_compact_event_with_its_header_list_encodes_like_the_resolved_event(
    headers: list[tuple[bytes, bytes]], read: int, size: int, consumer: str | None
) -> None:
    at = 1_700_000_000.25
    compact = ("get", "/p", 201, 1.5, read, 7, headers, "/p", at)
    wire = json.loads(encode_compact(compact, 65_536))
    assert wire["request_size"] == size and wire["consumer_id"] == consumer
    expected = {"method": "GET", "path": "/p", "status_code": 201, "response_time_ms": 1.5, "request_size": size,
                "response_size": 7, "consumer_id": consumer, "route": "/p"}  # fmt: skip
    assert encode_compact(compact, 65_536) == encode_general(expected, at, 65_536)


@pytest.mark.parametrize("path", ["/p", "/" + "p" * 5000], ids=["fast path", "repaired"])
def test_a_compact_head_event_has_no_response_body(path: str) -> None:
    # The middleware counted what the application produced; for HEAD no server sends it.
    compact = ("HEAD", path, 200, 1.5, 0, 12, None, "/p", NOW)
    head = json.loads(encode_compact(compact, 65_536))
    assert (head["method"], head["response_size"]) == ("HEAD", 0)
    get = ("GET", *compact[1:])
    assert json.loads(encode_compact(get, 65_536))["response_size"] == 12
    # An event handed to track() is taken as it is.
    plain = {"method": "HEAD", "path": path, "status_code": 200, "response_time_ms": 1.5, "response_size": 12}
    assert encode(plain)["response_size"] == 12


@pytest.mark.parametrize(
    ("latency", "text"),
    [
        (1.23456789, "1.235"),
        (2.0, "2.0"),
        (2, "2.0"),
        (0.0004, "0.0"),
        (0.0015, "0.002"),
        (10.5, "10.5"),
        (999_999_999.9994, "999999999.999"),
        (1e9, "1000000000.0"),  # the longest our collector stores; longer ones are dropped
    ],
)
def test_the_latency_goes_out_to_the_microsecond_on_every_path(latency: float, text: str) -> None:
    fragment = f'"response_time_ms":{text},'.encode()
    plain = {"method": "GET", "path": "/l", "status_code": 200, "response_time_ms": latency}
    compact = ("GET", "/l", 200, float(latency), 0, 0, None, None, NOW)
    assert fragment in encode_event(plain, NOW, 4096)  # the fast path (or the general one, from 1e9 up)
    assert fragment in encode_general(plain, NOW, 4096)
    assert fragment in encode_compact(compact, 4096)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2026-06-01T11:59:00.123Z", "2026-06-01T11:59:00.123000+00:00"),
        ("2026-06-01T11:59:00.123456789Z", "2026-06-01T11:59:00.123456+00:00"),  # nine digits (Go)
        ("2026-06-01T13:59:00+02:00", "2026-06-01T11:59:00+00:00"),
        ("2026-06-01T06:29:00-0530", "2026-06-01T11:59:00+00:00"),
        ("2026-06-01 11:59:00", "2026-06-01T11:59:00+00:00"),  # no offset: UTC
        ("2026-06-01t11:59:00,5z", "2026-06-01T11:59:00.500000+00:00"),
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),  # a leap second
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999000+00:00"),
    ],
)
def test_a_given_timestamp_is_sent_in_utc_as_every_collector_reads_it(given: str, sent: str) -> None:
    """Whatever the SDK's Python version reads, it sends one spelling, which any collector's Python reads too."""
    wire = json.loads(encode_event({**EVENT_OK, "timestamp": given}, NOW, 4096))
    assert wire["timestamp"] == sent
    assert json.loads(encode_general({**EVENT_OK, "timestamp": given}, NOW, 4096))["timestamp"] == sent


@pytest.mark.parametrize(
    "given",
    ["yesterday", "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
     "0000-01-01T00:00:00Z", "2026-06-01T24:00:00Z", "2026-06-01", "x" * 80],
)  # fmt: skip
def test_a_timestamp_no_collector_takes_becomes_the_time_of_track(given: str) -> None:
    wire = json.loads(encode_event({**EVENT_OK, "timestamp": given}, NOW, 4096))
    assert wire["timestamp"] == format_timestamp(NOW)
