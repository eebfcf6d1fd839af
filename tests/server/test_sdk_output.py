"""Whatever the SDK sends, our collector stores: its encoder repairs or drops what the collector would reject.

The collector answers per-event rejections inside a 2xx (``{"accepted": N, "rejected": M}``), which SDKs do not
read (WIRE.md): an event the SDK sent and the collector rejected would be counted ``sent`` and never stored.
So every event is encoded by the SDK (``peekapi.event.encode_event``) and then parsed by the collector
(``peekapi_server.events.decode_body`` and ``parse_batch``, as its ingest does): either the SDK dropped it
(``DroppedEvent``, counted) or the collector takes it. Hostile values are generated (hypothesis) and listed
(the cases found by reviews).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peekapi.event import DroppedEvent, RequestEvent, encode_compact, encode_event
from peekapi_server.events import Event, decode_body, parse_batch

NOW = time.time()
NOW_MS = int(NOW * 1000)
MAX_AGE_MS, MAX_SKEW_MS = 400 * 86_400_000, 300_000  # times outside are clamped: clamping is not rejecting


def collector_takes(wire: bytes) -> Event:
    """The collector's reading of one event as the SDK sends it, in a batch body, the way its ingest reads it."""
    body, check_text = decode_body(b"[" + wire + b"]")
    result = parse_batch(body, NOW_MS, MAX_AGE_MS, MAX_SKEW_MS, check_text)
    assert result is not None and result.rejected == 0, f"{result}: {wire!r}"
    (event,) = result.events
    return event


def sent(raw: Any) -> Event | None:
    """The collector's reading of what the SDK sends for ``raw``, or None when the SDK dropped it."""
    try:
        wire = encode_event(raw, NOW, 65_536)
    except DroppedEvent:
        return None
    return collector_takes(wire)


def base(**fields: Any) -> dict[str, Any]:
    return {"method": "GET", "path": "/a", "status_code": 200, "response_time_ms": 1.0, **fields}


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"path": "/nul\x00x"}, lambda e: e.path == "/nul\ufffdx"),
        ({"consumer_id": "a\x00b"}, lambda e: e.consumer == "a\ufffdb"),
        ({"route": "/r/\x00"}, lambda e: e.route == "/r/\ufffd"),
        ({"path": ""}, lambda e: e.path == "/"),
        ({"request_size": 2**70}, lambda e: e.request_size == 0),
        ({"response_size": 2**40 + 1}, lambda e: e.response_size == 0),
        ({"response_size": 2**40}, lambda e: e.response_size == 2**40),
        ({"response_time_ms": 1e9}, lambda e: e.response_time_ms == 1e9),
        ({"timestamp": "yesterday"}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),
        ({"timestamp": "1960-01-01T00:00:00Z"}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),
        ({"timestamp": "1970-01-01T00:30:00+01:00"}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),  # 1969 in UTC
        ({"timestamp": "2026-02-30T00:00:00Z"}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),
        ({"timestamp": 1733000000}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),
        ({"timestamp": datetime(1900, 1, 1, tzinfo=timezone.utc)}, lambda e: abs(e.ts_ms - NOW_MS) < 2000),
        ({"timestamp": "2026-06-01T11:59:00.123456789Z"}, lambda e: e.ts_ms > 0),  # nine digits: kept
        ({"metadata": {"a": {"b": [{}]}}}, lambda e: e.metadata is not None),
        ({"method": "get"}, lambda e: e.method == "GET"),
        ({"method": b"patch"}, lambda e: e.method == "PATCH"),
    ],
)
def test_repaired_fields_are_stored(fields: dict[str, Any], check: Any) -> None:
    event = sent(base(**fields))
    assert event is not None and check(event), event


def test_metadata_nested_deeper_than_the_collector_stores_is_removed() -> None:
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"d": deep}
    event = sent(base(metadata=deep))
    assert event is not None and event.metadata is None


@pytest.mark.parametrize(
    "fields",
    [
        {"status_code": 0},
        {"status_code": 99},
        {"status_code": 1000},
        {"response_time_ms": 1e300},
        {"response_time_ms": 1e9 + 1},
        {"response_time_ms": float("nan")},
        {"method": ""},
        {"method": "GE T"},
        {"method": "GET\x00"},
        {"method": 1},
    ],
)
def test_what_cannot_be_repaired_is_dropped_by_the_sdk(fields: dict[str, Any]) -> None:
    with pytest.raises(DroppedEvent) as caught:
        encode_event(base(**fields), NOW, 65_536)
    assert caught.value.reason == "invalid"


def test_a_middlewares_compact_event_with_a_nul_in_its_path_is_repaired() -> None:
    compact = ("GET", "/x\x00y", 404, 1.5, 0, 9, None, None, NOW)
    assert collector_takes(encode_compact(compact, 65_536)).path == "/x\ufffdy"
    odd_status = ("GET", "/x", 42, 1.5, 0, 9, None, None, NOW)
    with pytest.raises(DroppedEvent):
        encode_compact(odd_status, 65_536)


def test_a_tuple_given_to_track_is_not_taken_for_a_middlewares_compact_event() -> None:
    looks_compact = ("GET", "/x", 200, 1.5, 0, 9, None, None, 1_733_000_000_000)  # epoch ms last
    with pytest.raises(DroppedEvent, match="RequestEvent or a mapping"):
        encode_event(looks_compact, NOW, 65_536)


@pytest.mark.parametrize("size", [10**400, -(10**400), 2**1030])
def test_an_integer_size_past_any_float_is_set_to_0_not_dropped(size: int) -> None:
    event = sent(base(request_size=size, response_size=size))
    assert event is not None and (event.request_size, event.response_size) == (0, 0)
    compact = ("POST", "/x", 200, 1.5, size, 9, [(b"content-length", str(size).encode())], None, NOW)
    assert collector_takes(encode_compact(compact, 65_536)).request_size == 0


def test_a_valid_timestamp_is_sent_as_given() -> None:
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    wire = json.loads(encode_event(base(timestamp=stamp), NOW, 65_536))
    assert wire["timestamp"] == stamp


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
)
texts = st.one_of(st.text(max_size=3000), st.text(alphabet="\x00/%aé\ud800", max_size=20), scalars)
timestamps = st.one_of(
    scalars,
    st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,12})?(Z|[+-]\d{2}:?\d{2})?\Z"),
)
events = st.fixed_dictionaries(
    {
        "method": st.one_of(st.sampled_from(["GET", "post", "M-SEARCH"]), texts),
        "path": texts,
        "status_code": st.one_of(st.integers(min_value=-5, max_value=1200), scalars),
        "response_time_ms": st.one_of(st.floats(min_value=-10, max_value=2e9), scalars),
    },
    optional={
        "request_size": st.one_of(st.integers(min_value=-1, max_value=2**41), scalars),
        "response_size": st.one_of(st.integers(min_value=-1, max_value=2**41), scalars),
        "consumer_id": texts,
        "route": texts,
        "timestamp": timestamps,
        "metadata": st.one_of(
            scalars,
            st.recursive(
                st.dictionaries(st.text(max_size=5), scalars, max_size=3),
                lambda c: st.dictionaries(st.text(max_size=3), c, max_size=2),
                max_leaves=40,
            ),
        ),
    },
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_every_event_the_sdk_sends_is_stored(raw: dict[str, Any]) -> None:
    sent(raw)  # asserts that the collector takes it, unless the SDK dropped it
    if isinstance(raw.get("path"), str) and isinstance(raw.get("method"), str):
        fields = {k: v for k, v in raw.items() if k in RequestEvent.__dataclass_fields__}
        sent(RequestEvent(**fields))  # the same through the dataclass


@pytest.mark.parametrize("path", [None, 12, ["/a"]])
def test_a_path_that_is_not_text_is_dropped(path: Any) -> None:
    with pytest.raises(DroppedEvent, match="path must be a string"):
        encode_event(base(path=path), NOW, 65_536)
