"""Turning one decoded ``POST /v1/events`` body into validated :class:`Event` records.

Accepts every spelling WIRE.md lists: lower-case methods, every ISO-8601 timestamp form (``Z`` or offsets,
0-9 fraction digits, missing/empty/null meaning "now"), numbers in exponent form, ``null`` or missing optional
fields. An event that cannot be understood is counted as rejected; it never fails the whole batch.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from .normalize import normalize_path

MAX_METHOD = 16
MAX_PATH = 2048
MAX_ROUTE = 2048
MAX_CONSUMER = 256
MAX_METADATA_BYTES = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INF = math.inf
_MILLISECOND = timedelta(milliseconds=1)

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


class Event(NamedTuple):
    """One validated event, ready to store. ``ts_ms`` is milliseconds since the epoch (UTC)."""

    ts_ms: int
    method: str
    path: str
    route: str
    status_code: int
    response_time_ms: float
    request_size: int
    response_size: int
    consumer: str | None
    metadata: str | None


class ParseResult(NamedTuple):
    """The events accepted from one body and the number rejected."""

    events: list[Event]
    rejected: int


def parse_timestamp(value: object, now_ms: int, min_ms: int, max_ms: int) -> int | None:
    """Milliseconds since the epoch for a WIRE.md timestamp, clamped to ``[min_ms, max_ms]``.

    Missing (``None``) or empty means ``now_ms``; a string that is not ISO-8601 gives ``None`` (reject).
    A timestamp without an offset is taken as UTC.
    """
    if value is None or value == "":
        return now_ms
    if not isinstance(value, str):
        return None
    ts = _fast_timestamp(value)
    if ts is None:
        ts = _regex_timestamp(value)
    if ts is None:
        return None
    if ts < min_ms:
        return min_ms
    if ts > max_ms:
        return now_ms
    return ts


def _fast_timestamp(value: str) -> int | None:
    """The C-speed path: ``datetime.fromisoformat`` (which on Python 3.11+ reads every WIRE.md spelling)."""
    if len(value) < 19 or value[10] not in "Tt " or value[4] != "-" or value[13] != ":":
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _MILLISECOND


def _regex_timestamp(value: str) -> int | None:
    """The general path: 0-9 fraction digits, ``Z`` or ``+hh:mm``/``+hhmm`` offsets, or none (UTC)."""
    m = _TIMESTAMP.match(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7)
    millis = int((frac + "00")[:3]) if frac else 0
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return seconds * 1000 + millis


def _int_field(value: object, default: int | None) -> int | None:
    """A non-negative integer from an int or an integral float; ``default`` for null/missing."""
    if type(value) is int:  # the common case first
        return value if value >= 0 else None
    if value is None:
        return default
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    return None


def parse_event(raw: object, now_ms: int, min_ms: int, max_ms: int) -> Event | None:
    """One :class:`Event` from a decoded JSON value, or ``None`` when it must be rejected."""
    if not isinstance(raw, dict):
        return None
    method = raw.get("method")
    path = raw.get("path")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD:
        return None
    if not isinstance(path, str) or not path:
        return None
    status = _int_field(raw.get("status_code"), None)
    if status is None or not 100 <= status <= 999:
        return None
    rt: Any = raw.get("response_time_ms")  # narrowed by the exact type checks below
    kind = type(rt)
    if kind is float:
        if not 0 <= rt < _INF:  # also refuses NaN
            return None
    elif kind is not int or rt < 0:  # bool is not int here: type() is exact
        return None
    request_size = _int_field(raw.get("request_size"), 0)
    response_size = _int_field(raw.get("response_size"), 0)
    if request_size is None or response_size is None:
        return None
    ts = parse_timestamp(raw.get("timestamp"), now_ms, min_ms, max_ms)
    if ts is None:
        return None
    consumer = raw.get("consumer_id")
    if consumer is not None:
        if not isinstance(consumer, str):
            return None
        consumer = consumer[:MAX_CONSUMER] or None
    metadata_raw = raw.get("metadata")
    metadata: str | None = None
    if metadata_raw is not None:
        if not isinstance(metadata_raw, dict):
            return None
        if metadata_raw:
            metadata = json.dumps(metadata_raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
            if len(metadata) > MAX_METADATA_BYTES:
                metadata = None
    path = path[:MAX_PATH]
    route = raw.get("route")
    if isinstance(route, str) and route:
        route = route[:MAX_ROUTE]
    elif route is None or route == "":
        route = normalize_path(path)
    else:
        return None
    # positional: noticeably cheaper than keywords on this hot path (order as declared in Event)
    return Event(ts, method.upper(), path, route, status, float(rt), request_size, response_size, consumer, metadata)


def parse_batch(body: object, now_ms: int, max_age_ms: int, max_skew_ms: int) -> ParseResult | None:
    """Validates a decoded body; ``None`` when it is not a JSON array (a 400), else accepted and rejected."""
    if not isinstance(body, list):
        return None
    min_ms = now_ms - max_age_ms
    max_ms = now_ms + max_skew_ms
    events: list[Event] = []
    rejected = 0
    for raw in body:
        event = parse_event(raw, now_ms, min_ms, max_ms)
        if event is None:
            rejected += 1
        else:
            events.append(event)
    return ParseResult(events, rejected)
