"""The event: what goes on the wire, and how a tracked object becomes its JSON bytes.

``RequestEvent`` is the public dataclass. ``encode_event`` runs in the background worker, never on the request
path: it sanitises one tracked object (a ``RequestEvent`` or a mapping) and returns its compact UTF-8 JSON, or
the reason it had to be dropped. One bad event never affects another: each is encoded on its own.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger("peekapi")

MAX_METHOD_LENGTH = 16
MAX_PATH_LENGTH = 2048
MAX_CONSUMER_ID_LENGTH = 256

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


def encode_event(raw: object, tracked_at: float, max_event_bytes: int) -> bytes:
    """Return the wire JSON of ``raw`` (a ``RequestEvent`` or a mapping), tracked at epoch ``tracked_at``.

    Repairs what it can: method upper-cased and cut to 16 characters, path to 2048, consumer id to 256,
    a missing timestamp set, sizes that are not counts set to 0, lone surrogates replaced, metadata that is not
    a JSON object (or does not serialise, or makes the event larger than ``max_event_bytes``) removed.
    Raises :class:`DroppedEvent` for what it cannot repair: not an event at all, a missing or non-numeric
    status or latency, NaN or infinite latency, or an event still over ``max_event_bytes`` without metadata.
    """
    event = _sanitise(raw, tracked_at)
    metadata = event.pop("metadata", None)
    if metadata is not None:
        try:
            encoded = _encode({**event, "metadata": metadata})
        except (TypeError, ValueError, RecursionError) as exc:
            logger.warning("peekapi: event metadata is not JSON-serialisable (%s); metadata removed", exc)
        else:
            if len(encoded) <= max_event_bytes:
                return encoded
            logger.warning(
                "peekapi: event of %d bytes is over max_event_bytes=%d; metadata removed",
                len(encoded),
                max_event_bytes,
            )
    encoded = _encode(event)
    if len(encoded) > max_event_bytes:
        raise DroppedEvent("too_large", f"event of {len(encoded)} bytes is over max_event_bytes={max_event_bytes}")
    return encoded


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
        "method": _text(method, 4 * MAX_METHOD_LENGTH).upper()[:MAX_METHOD_LENGTH],
        "path": _text(path, MAX_PATH_LENGTH),
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
            logger.warning("peekapi: event metadata must be a mapping, not %s; removed", type(metadata).__name__)
    return event


def _text(value: object, limit: int) -> str:
    if type(value) is not str:
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return value[:limit] if len(value) > limit else value


def _optional_text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = _text(value, limit)
    return text or None


def _status(value: object) -> int:
    if type(value) is int and 0 <= value <= 999:
        return value
    number = _number(value)
    if number is None or not number.is_integer() or not 0 <= number <= 999:
        raise DroppedEvent("invalid", f"status_code must be an integer HTTP status, got {value!r}")
    return int(number)


def _latency(value: object) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise DroppedEvent("invalid", f"response_time_ms must be a finite number, got {value!r}")
    return max(number, 0.0)


def _size(value: object) -> int:
    if type(value) is int and value >= 0:
        return value
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        return 0
    return int(number)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _timestamp(value: object, tracked_at: float) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat()
    if isinstance(value, str) and value:
        return value[:64]
    return format_timestamp(tracked_at)


def format_timestamp(epoch: float) -> str:
    """ISO-8601 UTC, as Python's ``isoformat()`` spells it (``...12:00:00.123456+00:00``)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()
