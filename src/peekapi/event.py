"""The event: what goes on the wire, and how a tracked object becomes its JSON bytes.

``RequestEvent`` is the public dataclass. ``encode_event`` runs in the background worker, never on the request
path: it sanitises one tracked object (a ``RequestEvent`` or a mapping) and returns its compact UTF-8 JSON, or
the reason it had to be dropped. One bad event never affects another: each is encoded on its own.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .consumer import hash_consumer_id
from .stats import LogThrottle

logger = logging.getLogger("peekapi")

MAX_METHOD_LENGTH = 16
MAX_PATH_LENGTH = 2048
MAX_CONSUMER_ID_LENGTH = 256
# The ranges our collector stores (peekapi_server.events): an event outside them is repaired or dropped here,
# counted and logged, rather than sent and then rejected inside a 2xx answer, which SDKs do not read.
MAX_SIZE = 2**40  # bytes (1 TiB): a larger request or response size is not a count
MAX_LATENCY_MS = 1e9  # milliseconds (about 11.6 days)
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP method is an RFC 9110 token
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:[Zz]|([+-])(\d{2}):?(\d{2}))?"
)
MAX_METADATA_DEPTH = 32  # a mapping of scalars is 1 deep; the collector stores no deeper (it imports this)

_escape = json.encoder.encode_basestring  # the C escaper, non-ASCII kept as is (as ensure_ascii=False)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=True)


@dataclass
class RequestEvent:
    """One API request, as a middleware or a manual ``track()`` call reports it.

    ``timestamp`` (ISO-8601, UTC) is filled in with the time of ``track()`` when left empty. ``route`` is the
    route template the framework matched (a peekapi extension of the wire format); leave it None when none did.
    """

    method: str
    path: str
    status_code: int
    response_time_ms: float
    request_size: int = 0
    response_size: int = 0
    consumer_id: str | None = None
    metadata: dict[str, Any] | None = None
    timestamp: str = ""
    route: str | None = None


class DroppedEvent(Exception):
    """Raised by :func:`encode_event` when an event cannot be repaired; ``reason`` is the stats key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: The fields of a *compact event*: the tuple a middleware hands over instead of a dict (cheaper to build on
#: the request path), followed by its tracking time (epoch seconds).
#: A middleware may leave the request's headers to be read here, off the request path: its ``consumer_id`` is
#: then a header list (``[(name, value), ...]``, names lower-case bytes; values bytes as in ASGI, or str or None
#: from a WSGI environ) and its ``request_size`` the size known so far, both resolved by
#: :func:`resolve_compact` with the default consumer rule (a ``content-length`` in the list replaces the size).
COMPACT_FIELDS = (
    "method",
    "path",
    "status_code",
    "response_time_ms",
    "request_size",
    "response_size",
    "consumer_id",
    "route",
)
COMPACT_LENGTH = len(COMPACT_FIELDS) + 1


def encode_event(raw: object, tracked_at: float, max_event_bytes: int) -> bytes:
    """Return the wire JSON of ``raw`` (a ``RequestEvent`` or a mapping), tracked at ``tracked_at``. A middleware's
    compact event goes to :func:`encode_compact` instead (a tuple given to ``track()`` is not an event).

    Repairs what it can: method upper-cased and cut to 16 characters, path to 2048 (an empty one becomes
    ``/``), consumer id to 256, NUL characters and lone surrogates in text replaced, a missing timestamp set
    (one that is not an ISO-8601 time from 1970 to 9999 replaced by the time of ``track()``, with a warning),
    sizes that are not counts (negative, over 1 TiB, not numbers) set to 0, metadata that is not a JSON object
    (or does not serialise, nests deeper than 32, or makes the event larger than ``max_event_bytes``) removed.
    Raises :class:`DroppedEvent` for what it cannot repair: not an event at all, a method that is not an HTTP
    token, a missing or non-numeric status or latency, a status outside 100-999, a latency that is not a finite
    number of at most 1e9 ms, or an event still over ``max_event_bytes`` without metadata. What it sends, our
    collector stores.
    """
    return _encode_object(raw, tracked_at, max_event_bytes)


def _encode_object(raw: object, tracked_at: float, max_event_bytes: int) -> bytes:
    """:func:`encode_event` for a ``RequestEvent``, a mapping or anything else: the dict fast path, else the
    general path."""
    source = raw.__dict__ if type(raw) is RequestEvent else raw
    if type(source) is dict:
        fast = _encode_plain(source, tracked_at, max_event_bytes)
        if fast is not None:
            return fast
    return encode_general(raw, tracked_at, max_event_bytes)


def encode_general(raw: object, tracked_at: float, max_event_bytes: int) -> bytes:
    """:func:`encode_event` without its fast path: sanitise into a dict, then JSON-encode it."""
    event = _sanitise(raw, tracked_at)
    metadata = event.pop("metadata", None)
    if metadata is not None and not depth_ok(metadata, MAX_METADATA_DEPTH):
        _repaired("metadata", "event metadata nests deeper than %d; metadata removed", MAX_METADATA_DEPTH)
        metadata = None
    if metadata is not None:
        try:
            encoded = _encode({**event, "metadata": metadata})
        except (TypeError, ValueError, RecursionError) as exc:
            _repaired("metadata", "event metadata is not JSON-serialisable (%s); metadata removed", exc)
        else:
            if len(encoded) <= max_event_bytes:
                return encoded
            _repaired(
                "metadata",
                "event of %d bytes is over max_event_bytes=%d; metadata removed",
                len(encoded),
                max_event_bytes,
            )
    encoded = _encode(event)
    if len(encoded) > max_event_bytes:
        raise DroppedEvent("too_large", f"event of {len(encoded)} bytes is over max_event_bytes={max_event_bytes}")
    return encoded


def _encode_plain(raw: dict[str, Any], tracked_at: float, max_event_bytes: int) -> bytes | None:
    """The fast path for a well-formed dict event without metadata; None whenever the general path must decide."""
    if raw.get("metadata") is not None:
        return None
    timestamp = raw.get("timestamp")
    if timestamp:
        normalized = normalized_timestamp(timestamp) if type(timestamp) is str else None
        if normalized is None:
            return None
        timestamp_json = f'"{normalized}"'  # needs no escaping
    else:
        timestamp_json = _timestamp_json(tracked_at)
    latency = raw.get("response_time_ms")
    return _encode_fields(
        raw.get("method"),
        raw.get("path"),
        raw.get("status_code"),
        float(latency) if type(latency) is int else latency,
        raw.get("request_size", 0),
        raw.get("response_size", 0),
        raw.get("consumer_id"),
        raw.get("route"),
        timestamp_json,
        max_event_bytes,
    )


def encode_compact(raw: tuple[Any, ...], max_event_bytes: int) -> bytes:
    """:func:`encode_event` for a compact event (the middleware's tuple, its tracking time last), which callers
    holding one call directly: its fields straight to JSON, or, when anything needs repair or checking, the
    event resolved (:func:`resolve_compact`) into a dict for the general path. Raises :class:`DroppedEvent`."""
    method, path, status, latency, request_size, response_size, consumer, route, tracked_at = raw
    if type(consumer) is list:  # _resolved() written out: one call fewer per event
        request_size, consumer = _from_headers(consumer, request_size)
    if method == "HEAD":
        response_size = 0
    fast = _encode_fields(
        method,
        path,
        status,
        latency,
        request_size,
        response_size,
        consumer,
        route,
        _timestamp_json(tracked_at),
        max_event_bytes,
    )
    if fast is not None:
        return fast
    # Rare (an oversized path, an int latency, a bad consumer id): resolved again, as a dict, for the general path.
    return _encode_object(
        dict(zip(COMPACT_FIELDS, resolve_compact(raw)[:-1], strict=True)), tracked_at, max_event_bytes
    )


def _encode_fields(  # noqa: PLR0917 - positional on purpose: once per event, in the worker's hot loop
    method: Any,
    path: Any,
    status: Any,
    latency: Any,
    request_size: Any,
    response_size: Any,
    consumer: Any,
    route: Any,
    timestamp_json: str,
    max_event_bytes: int,
) -> bytes | None:
    """The wire JSON of well-typed fields, built directly (strings escaped by the json module's C escaper).

    ``timestamp_json`` is the timestamp as a JSON string already. Returns None whenever anything needs repair
    or checking, so that the general path decides: the output is then the same as the general path's.
    """
    if type(method) is not str or type(path) is not str or type(status) is not int or not 100 <= status <= 999:
        return None
    if type(latency) is not float or not 0.0 <= latency < 1e9:  # also false for NaN; larger ones: general path
        return None
    if type(request_size) is not int or type(response_size) is not int:
        return None
    if not (0 <= request_size <= MAX_SIZE and 0 <= response_size <= MAX_SIZE):  # else not counts: repaired
        return None
    # An empty path, or a NUL in it (a scanner's %00): the general path repairs them.
    if not 0 < len(path) <= MAX_PATH_LENGTH or "\x00" in path:
        return None
    method_json = _METHOD_JSON.get(method)
    if method_json is None:
        upper = method.upper()  # before the length check: upper-casing may lengthen it ("ß" -> "SS")
        if len(upper) > MAX_METHOD_LENGTH or _METHOD.fullmatch(upper) is None:
            return None
        method_json = _escape(upper)
        if len(_METHOD_JSON) < _FRAGMENTS_KEPT:
            _METHOD_JSON[method] = method_json
    if consumer is None:
        consumer_json = "null"
    elif type(consumer) is str and consumer and len(consumer) <= MAX_CONSUMER_ID_LENGTH and "\x00" not in consumer:
        consumer_json = _escape(consumer)
    else:
        return None
    if route is None:
        route_json: str | None = ""
    elif type(route) is str:
        route_json = _ROUTE_JSON.get(route)
        if route_json is None:
            if not route or len(route) > MAX_PATH_LENGTH or "\x00" in route:
                return None
            route_json = ',"route":' + _escape(route)
            if len(_ROUTE_JSON) < _FRAGMENTS_KEPT:
                _ROUTE_JSON[route] = route_json
    else:
        return None
    # The general path's repr() of the latency rounded to the microsecond: below 1e9 (12 digits at most), the
    # rounded text without its trailing zeros is that repr, at less than half the cost of repr() itself.
    latency_json = "%.3f" % latency  # noqa: UP031 - cheaper than an f-string or format() here
    if latency_json[-1] == "0":
        latency_json = latency_json.rstrip("0")
        if latency_json[-1] == ".":
            latency_json += "0"
    # Most sizes (and every status) are below 1000: their text from a table, instead of formatting the int.
    request_text = _SMALL_INT_TEXT[request_size] if request_size < 1000 else str(request_size)
    response_text = _SMALL_INT_TEXT[response_size] if response_size < 1000 else str(response_size)
    text = (
        f'{{"method":{method_json},"path":{_escape(path)},"status_code":{_SMALL_INT_TEXT[status]},'
        f'"response_time_ms":{latency_json},"request_size":{request_text},"response_size":{response_text},'
        f'"consumer_id":{consumer_json},"timestamp":{timestamp_json}{route_json}}}'
    )
    try:
        data = text.encode()
    except UnicodeEncodeError:
        return None
    return data if len(data) <= max_event_bytes else None


# JSON fragments of the values that repeat from event to event (a few methods, the app's route templates),
# kept once made; bounded, so that a stream of junk methods cannot grow them. Written by whichever thread
# encodes (a dict's get and set are atomic).
_FRAGMENTS_KEPT = 1024
_SMALL_INT_TEXT = tuple(str(number) for number in range(1000))  # "0" to "999"
_METHOD_JSON: dict[str, str] = {}  # a method as tracked -> its JSON, upper-cased (valid lengths only)
_ROUTE_JSON: dict[str, str] = {}  # a route template -> ',"route":<its JSON>' (valid ones only)


def resolve_compact(raw: tuple[Any, ...]) -> tuple[Any, ...]:
    """A compact event with what the middleware left to the background filled in.

    - ``consumer_id`` a header list: ``request_size`` becomes the Content-Length when the list has a valid one
      (else it stays as it is), and ``consumer_id`` the default rule's answer: ``x-api-key`` as is, else the
      hashed ``authorization``, else None.
    - A HEAD request: ``response_size`` 0. The application may produce the GET body for HEAD (Starlette does),
      but RFC 9110 (9.3.2) forbids sending it, and servers drop it (uvicorn, gunicorn, Django's; ``wsgiref``'s
      development server is an exception): what the middleware counted is not what went out. Compact events
      only; an event given to ``track()`` is taken as it is.
    """
    request_size, response_size, consumer = _resolved(raw[0], raw[4], raw[5], raw[6])
    return (*raw[:4], request_size, response_size, consumer, *raw[7:])


def _resolved(method: Any, request_size: Any, response_size: Any, consumer: Any) -> tuple[Any, Any, Any]:
    """``request_size``, ``response_size`` and ``consumer_id`` of a compact event, resolved (see
    :func:`resolve_compact`)."""
    if type(consumer) is list:
        request_size, consumer = _from_headers(consumer, request_size)
    if method == "HEAD":
        response_size = 0
    return request_size, response_size, consumer


def _from_headers(headers: Any, received: Any) -> tuple[Any, str | None]:
    """The request size and the default consumer id of a header list (see :func:`resolve_compact`).

    Reads what ``dict(headers)`` would hold (the last of repeated names), without making the dict: the list is
    scanned once for the three names read. Fails for exactly the lists ``dict()`` fails for.
    """
    length = api_key = authorization = None
    try:
        for name, value in headers:
            if name in _HEADERS_READ:
                if name == b"x-api-key":
                    api_key = value
                elif name == b"authorization":
                    authorization = value
                else:
                    length = value
    except (TypeError, ValueError):  # not a header list after all: no consumer, sizes as they are
        return received, None
    request_size = received if length is None else _declared_size(length, received)
    if api_key:
        return request_size, api_key.decode("latin-1") if isinstance(api_key, bytes) else str(api_key)
    if authorization:
        text = authorization.decode("latin-1") if isinstance(authorization, bytes) else str(authorization)
        return request_size, hash_consumer_id(text)
    return request_size, None


_HEADERS_READ = frozenset((b"content-length", b"x-api-key", b"authorization"))


def _declared_size(length: Any, received: Any) -> Any:
    """The request size a Content-Length header value declares; ``received`` when it declares none."""
    try:
        declared = int(length)
    except (TypeError, ValueError):
        return received
    return declared if declared >= 0 else received


def _encode(event: dict[str, Any]) -> bytes:
    text = _ENCODER.encode(event)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (bad unicode from a badly decoded header, say): replace them, keep the event.
        return text.encode("utf-8", "replace")


def _sanitise(raw: object, tracked_at: float) -> dict[str, Any]:
    if isinstance(raw, RequestEvent):
        source: Mapping[str, Any] = raw.__dict__
    elif isinstance(raw, Mapping):
        source = raw
    else:
        raise DroppedEvent("invalid", f"an event must be a RequestEvent or a mapping, not {type(raw).__name__}")
    try:
        method = source["method"]
        path = source["path"]
        status = source["status_code"]
        latency = source["response_time_ms"]
    except KeyError as exc:
        raise DroppedEvent("invalid", f"event is missing the required field {exc.args[0]!r}") from None
    event: dict[str, Any] = {
        "method": _method(method),
        "path": _path(path),
        "status_code": _status(status),
        "response_time_ms": _latency(latency),
        "request_size": _size(source.get("request_size")),
        "response_size": _size(source.get("response_size")),
        "consumer_id": _optional_text(source.get("consumer_id"), MAX_CONSUMER_ID_LENGTH),
        "timestamp": _timestamp(source.get("timestamp"), tracked_at),
    }
    route = source.get("route")
    if route is not None:
        route_text = _optional_text(route, MAX_PATH_LENGTH)
        if route_text:
            event["route"] = route_text
    metadata = source.get("metadata")
    if metadata is not None:
        if isinstance(metadata, Mapping):
            event["metadata"] = metadata
        else:
            _repaired("metadata", "event metadata must be a mapping, not %s; removed", type(metadata).__name__)
    return event


_repairs_logged = LogThrottle()


def _repaired(kind: str, message: str, *args: object) -> None:
    """Log a repair at WARNING: at most one line per ``kind`` every ``LOG_INTERVAL`` seconds, saying how many
    events were repaired the same way, unlogged, since the previous line."""
    count = _repairs_logged.allow(kind)
    if count == 1:
        logger.warning("peekapi: " + message, *args)
    elif count:
        logger.warning("peekapi: " + message + " (and %d more since the last such line)", *args, count - 1)


def _text(value: object, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters, NUL replaced (U+FFFD), as a database can store it."""
    if type(value) is not str:
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if len(value) > limit else value


def _path(value: object) -> str:
    if not isinstance(value, str | bytes):
        raise DroppedEvent("invalid", f"path must be a string, got {value!r}"[:200])
    return _text(value, MAX_PATH_LENGTH) or "/"


def _method(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise DroppedEvent("invalid", f"method must be a string, got {value!r}"[:200])
    method = value.upper()[:MAX_METHOD_LENGTH]
    if _METHOD.fullmatch(method) is None:
        raise DroppedEvent("invalid", f"method must be an HTTP method (a token), got {value!r}"[:200])
    return method


def _optional_text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = _text(value, limit)
    return text or None


def _status(value: object) -> int:
    if type(value) is int and 100 <= value <= 999:
        return value
    number = _number(value)
    if number is None or not number.is_integer() or not 100 <= number <= 999:
        raise DroppedEvent("invalid", f"status_code must be an HTTP status from 100 to 999, got {value!r}"[:200])
    return int(number)


def _latency(value: object) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number) or number > MAX_LATENCY_MS:
        raise DroppedEvent(
            "invalid", f"response_time_ms must be a number of milliseconds up to 1e9, got {value!r}"[:200]
        )
    return float(f"{max(number, 0.0):.3f}")  # to the microsecond: more is noise, and bytes on the wire


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):  # any size of int, before float() could overflow
        return int(value) if 0 <= value <= MAX_SIZE else 0
    number = _number(value)
    if number is None or not 0 <= number <= MAX_SIZE:  # also false for NaN
        return 0
    return int(number)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except (ValueError, OverflowError):  # not a number; an int past 1e308
            return None
    return None


def _timestamp(value: object, tracked_at: float) -> str:
    """The event's timestamp in UTC, as Python spells it: a valid one given (an ISO-8601 string or a datetime),
    else the time of ``track()`` (with a warning unless none was given)."""
    if isinstance(value, datetime):
        normalized = _utc_text(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    elif isinstance(value, str) and value:
        normalized = normalized_timestamp(value)
    elif value is None or value == "":
        return format_timestamp(tracked_at)
    else:
        normalized = None
    if normalized is not None:
        return normalized
    _repaired(
        "timestamp",
        "event timestamp %s is not an ISO-8601 time from 1970 to 9999; the time of track() is used",
        repr(value)[:80],
    )
    return format_timestamp(tracked_at)


def normalized_timestamp(value: str) -> str | None:
    """``value``, an ISO-8601 time, in UTC as Python spells it (``2026-06-01T11:59:00.123456+00:00``), which every
    collector reads whatever its Python version; None when it is not such a time from 1970 to 9999 (in UTC).

    Reads the spellings of WIRE.md (``Z`` or an offset, 0 to 9 fraction digits, ``T`` or a space, no offset
    meaning UTC) and whatever else ``datetime.fromisoformat`` reads in that layout. Never raises.
    """
    if len(value) > 64:
        return None
    if len(value) >= 19 and value[10] in "Tt " and value[4] == "-" and value[13] == ":":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return _utc_text(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(group) for group in match.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError:  # no such day, or year 0
        return None
    offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes)) if sign else timedelta()
    moment += timedelta(seconds=second - moment.second, microseconds=int((fraction or "0").ljust(6, "0")[:6]))
    return _utc_text(moment - offset if sign == "+" else moment + offset)


def _utc_text(moment: datetime) -> str | None:
    """An aware ``moment`` in UTC, ``isoformat()``-spelled, if it falls from 1970 to 9999; else None."""
    try:
        utc = moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None
    return utc.isoformat() if 1970 <= utc.year <= 9999 else None


def depth_ok(value: object, limit: int) -> bool:
    """Whether ``value`` nests mappings and lists at most ``limit`` deep (a mapping of scalars is 1 deep).

    The collector's own check on stored metadata (``peekapi_server.events``), so that both agree."""
    level: list[object] = [value]
    for _ in range(limit + 1):
        nested: list[object] = []
        for item in level:
            if isinstance(item, Mapping):
                nested.extend(item.values())
            elif isinstance(item, list | tuple):
                nested.extend(item)
        if not nested:
            return True
        level = nested
    return False


# The last second formatted: (that second as a float, its date and time of day as the start of a JSON string).
_second_cache: tuple[float, str] = (-1.0, "")
_DIGITS = tuple(f"{number:03d}" for number in range(1000))  # "000" to "999"


def format_timestamp(epoch: float) -> str:
    """ISO-8601 UTC, as Python's ``isoformat()`` spells it (``...12:00:00.123456+00:00``)."""
    return _timestamp_json(epoch)[1:-1]


def _timestamp_json(epoch: float) -> str:
    """:func:`format_timestamp` as a JSON string (it needs no escaping).

    The batcher calls this for every event it encodes, nearly always within the second of the one before: the
    date and time of day are kept per second, and the microseconds are put together from two 3-digit strings
    (a ``06d`` format spec costs more than the rest of the function). The same text for the same ``epoch``,
    whatever the cache holds: within the cached second the microseconds are computed as the slow path does.
    Thread-safe (the cache is one tuple, swapped whole); raises for a NaN or infinite ``epoch``.
    """
    global _second_cache
    start, prefix = _second_cache
    offset = epoch - start
    micro = round(offset * 1_000_000) if 0.0 <= offset < 1.0 else 1_000_000
    if micro >= 1_000_000:  # another second, or this one rounded up into the next
        second = math.floor(epoch)
        micro = round((epoch - second) * 1_000_000)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        prefix = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(second))
        _second_cache = (float(second), prefix)
    if not micro:
        return f'{prefix}+00:00"'
    return f'{prefix}.{_DIGITS[micro // 1000]}{_DIGITS[micro % 1000]}+00:00"'
