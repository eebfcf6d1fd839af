"""Turning one decoded ``POST /v1/events`` body into validated :class:`Event` records.

Accepts every spelling WIRE.md lists: lower-case methods, every ISO-8601 timestamp form (``Z`` or offsets,
0-9 fraction digits, missing/empty/null meaning "now"), numbers in exponent form, ``null`` or missing optional
fields. Every event is judged alone: one that cannot be understood, or could not be stored exactly (text that is
not valid UTF-8 or holds NUL, numbers out of range, timestamps outside 1970..9999, metadata nested too deep), is
rejected with a reason and counted; it never fails the whole batch, and nothing a client sends can make a write fail.
"""

from __future__ import annotations

import calendar
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from peekapi.event import MAX_METADATA_DEPTH, depth_ok

from .normalize import normalize_path

MAX_METHOD = 16
MAX_PATH = 2048
MAX_ROUTE = 2048
MAX_CONSUMER = 256
MAX_METADATA_BYTES = 65_536
#: Request and response sizes above this (1 TiB) are rejected: no request is that large, and the rollups add them up
#: in 64-bit integers.
MAX_SIZE = 2**40
#: Latencies above this (10**9 ms, about 11.6 days) are rejected: the rollups add them up.
MAX_LATENCY_MS = 1e9
#: Timestamps must fall in [1970-01-01, 10000-01-01) before clamping.
MAX_TIMESTAMP_MS = 253_402_300_800_000
#: HTTP method: an RFC 9110 token.
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Methods known to be tokens, so the common case skips the pattern.
_COMMON_METHODS = frozenset(
    m for name in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS") for m in (name, name.lower())
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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


def parse_timestamp(value: object, now_ms: int, min_ms: int, max_ms: int) -> int | None:
    """Milliseconds since the epoch for a WIRE.md timestamp, clamped to ``[min_ms, max_ms]``.

    Missing (``None``) or empty means ``now_ms``; a string that is not ISO-8601, or a time before 1970 or from
    the year 10000 on (in UTC), gives ``None`` (reject). A timestamp without an offset is taken as UTC.
    """
    if value is None or value == "":
        return now_ms
    if not isinstance(value, str):
        return None
    ts = _fast_timestamp(value)
    if ts is None:
        ts = _regex_timestamp(value)
    if ts is None or not 0 <= ts < MAX_TIMESTAMP_MS:
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


def _size(value: object) -> int | None:
    """A size in bytes from an int or an integral float in ``[0, MAX_SIZE]``; 0 for null/missing, else ``None``."""
    if type(value) is int:  # the common case first
        return value if 0 <= value <= MAX_SIZE else None
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_SIZE:
        return int(value)
    return None  # bool, str, an int subclass, NaN, a fraction, out of range, or the parser's marker


def _status(value: object) -> int | None:
    """A status code from an int or an integral float in ``[100, 999]``, else ``None``."""
    if type(value) is int or (isinstance(value, float) and value.is_integer()):
        code = int(value)
        return code if 100 <= code <= 999 else None
    return None


def text_ok(value: str) -> bool:
    """True when ``value`` can be stored exactly as text: valid UTF-8 (no lone surrogates) without NUL."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _metadata(raw: object, check_text: bool) -> str | Rejection | None:
    """The stored form of ``metadata`` (not null): compact JSON text, ``None`` when empty or over the size limit."""
    if not isinstance(raw, dict):
        return Rejection("metadata is not an object")
    if not raw:
        return None
    if not depth_ok(raw, MAX_METADATA_DEPTH):
        return Rejection(f"metadata nested deeper than {MAX_METADATA_DEPTH}")
    try:
        text = json.dumps(raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # the parser's marker for NaN/Infinity or an unbounded integer
        return Rejection("metadata holds a number out of range")
    if check_text and not text_ok(text):
        return Rejection("metadata is not valid UTF-8 text")
    return text if len(text) <= MAX_METADATA_BYTES else None


class Rejection(str):
    """Why an event was rejected (a short, fixed phrase that never echoes the client's data)."""

    __slots__ = ()


def parse_event(raw: object, now_ms: int, min_ms: int, max_ms: int, check_text: bool = True) -> Event | Rejection:
    """One :class:`Event` from a decoded JSON value, or the :class:`Rejection` saying why it is refused.

    ``check_text=False`` skips the UTF-8/NUL checks of strings, for bodies known to hold neither (see
    :func:`needs_text_check`). Never raises.
    """
    if not isinstance(raw, dict):
        return Rejection("event is not an object")
    method = raw.get("method")
    path = raw.get("path")
    if type(method) is not str or (
        method not in _COMMON_METHODS and (not 0 < len(method) <= MAX_METHOD or _METHOD.fullmatch(method) is None)
    ):
        return Rejection(f"method is not an HTTP method of 1 to {MAX_METHOD} characters")
    if not isinstance(path, str) or not path:
        return Rejection("path is missing or not a string")
    status = _status(raw.get("status_code"))
    if status is None:
        return Rejection("status_code is not an integer from 100 to 999")
    rt: Any = raw.get("response_time_ms")  # narrowed by the exact type checks below
    kind = type(rt)
    if kind is not float and kind is not int:  # bool is not int here: type() is exact
        return Rejection("response_time_ms is not a number")
    if not 0 <= rt <= MAX_LATENCY_MS:  # also refuses NaN
        return Rejection(f"response_time_ms is not from 0 to {MAX_LATENCY_MS:.0e}")
    request_size = _size(raw.get("request_size"))
    response_size = _size(raw.get("response_size"))
    if request_size is None or response_size is None:
        return Rejection(f"request_size or response_size is not an integer from 0 to {MAX_SIZE}")
    ts = parse_timestamp(raw.get("timestamp"), now_ms, min_ms, max_ms)
    if ts is None:
        return Rejection("timestamp is not an ISO-8601 time from 1970 to 9999")
    consumer = raw.get("consumer_id")
    if consumer is not None:
        if not isinstance(consumer, str):
            return Rejection("consumer_id is not a string")
        consumer = consumer[:MAX_CONSUMER] or None
    metadata = raw.get("metadata")
    if metadata is not None:
        metadata = _metadata(metadata, check_text)
        if isinstance(metadata, Rejection):
            return metadata
    path = path[:MAX_PATH]
    route = raw.get("route")
    if isinstance(route, str) and route:
        route = route[:MAX_ROUTE]
    elif route is None or route == "":
        route = normalize_path(path)
    else:
        return Rejection("route is not a string")
    if check_text and not (text_ok(path) and text_ok(route) and (consumer is None or text_ok(consumer))):
        return Rejection("path, route or consumer_id is not valid UTF-8 text without NUL")
    # positional: noticeably cheaper than keywords on this hot path (order as declared in Event)
    return Event(ts, method.upper(), path, route, status, float(rt), request_size, response_size, consumer, metadata)


class ParseResult(NamedTuple):
    """The events accepted from one body, the number rejected, and why the first rejected one was."""

    events: list[Event]
    rejected: int
    first_rejection: Rejection | None = None


def needs_text_check(body: str) -> bool:
    """Whether strings decoded from the JSON text ``body`` may hold a lone surrogate or NUL.

    They can only come from a ``\\u`` escape, or from non-ASCII text (a body decoded with surrogateescape).
    """
    return "\\u" in body or not body.isascii()


def parse_batch(
    body: object, now_ms: int, max_age_ms: int, max_skew_ms: int, check_text: bool = True
) -> ParseResult | None:
    """Validates a decoded body; ``None`` when it is not a JSON array (a 400), else accepted and rejected."""
    if not isinstance(body, list):
        return None
    min_ms = now_ms - max_age_ms
    max_ms = now_ms + max_skew_ms
    events: list[Event] = []
    rejected = 0
    first: Rejection | None = None
    for raw in body:
        event = parse_event(raw, now_ms, min_ms, max_ms, check_text)
        if type(event) is Event:
            events.append(event)
        else:
            rejected += 1
            if first is None:
                first = Rejection(event)
    return ParseResult(events, rejected, first)


class _OutOfRange:
    """What the parser puts where a number cannot be represented (NaN, Infinity, an integer past 20 digits)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<number out of range>"


_OUT_OF_RANGE = _OutOfRange()


def _constant(_: str) -> _OutOfRange:
    return _OUT_OF_RANGE


def _bounded_int(digits: str) -> int | _OutOfRange:
    return int(digits) if len(digits) <= 20 else _OUT_OF_RANGE


_DECODER = json.JSONDecoder(parse_constant=_constant)
_BOUNDED_DECODER = json.JSONDecoder(parse_constant=_constant, parse_int=_bounded_int)


def decode_body(data: bytes) -> tuple[object, bool]:
    """The JSON value of a request body, and whether its strings need :func:`text_ok` checks.

    Bytes that are not UTF-8 become lone surrogates (so only the events holding them are rejected); ``NaN``,
    ``Infinity`` and integers of more than 20 digits become a marker that every field check refuses. Raises
    :class:`ValueError` (with a message for the client) when the body is not JSON or nests too deep to parse.
    """
    text = data.decode("utf-8", "surrogateescape")
    try:
        try:
            value = _DECODER.decode(text)
        except ValueError as exc:
            if "digits" not in str(exc):  # not int()'s limit on digits: plainly not JSON
                raise
            value = _BOUNDED_DECODER.decode(text)
    except RecursionError:
        raise ValueError("body is nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    return value, needs_text_check(text)
