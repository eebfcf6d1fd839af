"""Rules and silences written as text: the dashboard's form fields and the command line's options.

Durations are written ``90s``, ``5m``, ``1h``, ``2d`` (a bare number is seconds); times are ISO 8601, UTC when
no offset is given. :func:`rule_from_fields` turns text fields into a checked :class:`~.rules.Rule` and
:func:`rule_fields` gives them back for an edit form. Pure functions: ``ValueError`` naming the field for any bad
value, nothing else raised, nothing touched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .rules import Rule

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d{1,9})\s*([smhd]?)")

#: The text fields of a rule, in form order (``channels`` is a list of names).
FIELDS = (
    "name",
    "metric",
    "comparison",
    "threshold",
    "window",
    "baseline",
    "endpoint",
    "method",
    "status_class",
    "consumer",
    "group_by",
    "min_requests",
    "for",
    "recovery",
    "no_data",
    "repeat",
)


def parse_duration(text: str, name: str) -> int:
    """Seconds from ``90s``, ``5m``, ``1h``, ``2d`` or a bare number of seconds; ``ValueError`` naming ``name``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{name} must be a duration such as 90s, 5m, 1h or 2d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: int) -> str:
    """The shortest exact form of ``seconds`` that :func:`parse_duration` reads back (``0s``, ``5m``, ``36h``)."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def format_number(value: float) -> str:
    """``value`` exactly, without a needless ``.0`` (``5``, ``0.25``, ``1e+20``)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def parse_time(text: str, name: str = "until") -> int:
    """Epoch seconds of an ISO 8601 time (``2026-12-04T18:00``; UTC unless it carries an offset)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be a time such as 2026-12-04T18:00 (UTC)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


def _whole(text: str, name: str) -> int:
    if not text.strip().isdigit() or len(text.strip()) > 9:
        raise ValueError(f"{name} must be a whole number, 0 or more")
    return int(text)


def rule_from_fields(fields: Mapping[str, str], channels: Sequence[str] = ()) -> Rule:
    """A checked rule from text fields named as :data:`FIELDS` (empty or missing: the default, or none for the
    scope, grouping and recovery); ``ValueError`` naming the first bad field."""

    def text(key: str) -> str:
        return (fields.get(key) or "").strip()

    data: dict[str, Any] = {
        "name": text("name"),
        "metric": text("metric"),
        "comparison": text("comparison"),
        "channels": list(channels),
    }
    if not text("threshold"):
        raise ValueError("threshold is required")
    data["threshold"] = _number(text("threshold"), "threshold")
    if text("recovery"):
        data["recovery"] = _number(text("recovery"), "recovery")
    for key, target in (("window", "window_seconds"), ("for", "for_seconds"), ("repeat", "repeat_seconds")):
        if text(key):
            data[target] = parse_duration(text(key), key)
    if text("min_requests"):
        data["min_requests"] = _whole(text("min_requests"), "min_requests")
    for key in ("baseline", "no_data"):
        if text(key):
            data[key] = text(key)
    data["group_by"] = text("group_by") or None
    scope: dict[str, Any] = {}
    for key in ("endpoint", "method", "consumer"):
        if text(key):
            scope[key] = text(key)
    if text("status_class"):
        raw = text("status_class").lower().removesuffix("xx")
        if raw not in ("1", "2", "3", "4", "5"):
            raise ValueError("scope.status_class must be 1 to 5")
        scope["status_class"] = int(raw)
    data["scope"] = scope
    return Rule.of(data)


def rule_fields(rule: Rule) -> dict[str, str]:
    """The text fields of ``rule`` that :func:`rule_from_fields` reads back into the same rule."""
    scope = rule.scope
    return {
        "name": rule.name,
        "metric": rule.metric,
        "comparison": rule.comparison,
        "threshold": format_number(rule.threshold),
        "window": format_duration(rule.window_seconds),
        "baseline": rule.baseline,
        "endpoint": scope.endpoint or "",
        "method": scope.method or "",
        "status_class": "" if scope.status_class is None else str(scope.status_class),
        "consumer": scope.consumer or "",
        "group_by": rule.group_by or "",
        "min_requests": str(rule.min_requests),
        "for": format_duration(rule.for_seconds),
        "recovery": "" if rule.recovery is None else format_number(rule.recovery),
        "no_data": rule.no_data,
        "repeat": format_duration(rule.repeat_seconds),
    }
