"""Alert rules and notification channels: what they say, checked when they are made, and their JSON form.

A rule watches one metric of a project's traffic over a window (evaluated every minute from the rollups):

- ``metric``: ``requests`` (over the window), ``requests_per_minute``, ``error_rate``, ``error_rate_5xx``,
  ``error_rate_4xx`` (percent, 0..100), ``p50_ms``, ``p95_ms``, ``p99_ms``, ``bytes`` (in and out, over the
  window) or ``consumers`` (distinct ones);
- ``scope``: the traffic it looks at: ``endpoint`` (a route), ``method``, ``status_class`` (1..5), ``consumer``;
  any left out means all;
- ``group_by``: ``endpoint`` or ``consumer`` for one alert per group, or none for one alert;
- ``comparison``: ``above`` / ``below`` an absolute ``threshold``, or ``increase`` / ``decrease`` by at least
  ``threshold`` percent against a ``baseline`` window: the ``previous`` one or the same window a ``week`` ago;
- ``window_seconds`` (whole minutes), ``min_requests`` (a rate or a change counts only with at least this many
  requests in the window; below, the rule holds its state), ``for_seconds`` (breaching this long before firing),
  ``recovery`` (the value must be back past it to resolve: hysteresis; default the threshold);
- ``no_data``: what a window without requests means for a metric that needs some: ``keep`` (hold the state),
  ``ok`` (not breaching) or ``alert`` (breaching). Counts (requests, bytes, consumers) are 0 then, so "no
  requests for 15 minutes" is ``requests below 1`` over a 15-minute window;
- ``channels`` (names of the project's channels), ``repeat_seconds`` (remind while firing; 0: never).

Everything here is pure: validation raises ``ValueError`` naming the field; nothing touches the store.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

Metric = Literal[
    "requests",
    "requests_per_minute",
    "error_rate",
    "error_rate_5xx",
    "error_rate_4xx",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "bytes",
    "consumers",
]
Comparison = Literal["above", "below", "increase", "decrease"]
Baseline = Literal["previous", "week"]
NoData = Literal["keep", "ok", "alert"]
GroupBy = Literal["endpoint", "consumer"]
ChannelKind = Literal["webhook", "slack", "discord", "email"]
_HTTPS_OR_LOOPBACK = r"https://|http://(localhost|127\.0\.0\.1|\[::1\])[:/]"
State = Literal["inactive", "pending", "firing", "resolved"]

METRICS: tuple[str, ...] = get_args(Metric)
COMPARISONS: tuple[str, ...] = get_args(Comparison)
CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKind)
#: Metrics that are a share of the window's requests: they need ``min_requests`` and mean nothing without any.
RATES = frozenset({"error_rate", "error_rate_5xx", "error_rate_4xx"})
#: Metrics that exist without requests (they are 0 then).
COUNTS = frozenset({"requests", "requests_per_minute", "bytes", "consumers"})
MAX_WINDOW = 7 * 86400
MAX_NAME = 100
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


@dataclass(frozen=True)
class Scope:
    """The traffic a rule looks at; ``None`` fields match everything."""

    endpoint: str | None = None
    method: str | None = None
    status_class: int | None = None
    consumer: str | None = None


@dataclass(frozen=True)
class Rule:
    """One alert rule as its author wrote it (see the module docstring). Build with :meth:`of` to validate."""

    name: str
    metric: Metric
    comparison: Comparison
    threshold: float
    window_seconds: int = 300
    baseline: Baseline = "previous"
    scope: Scope = field(default_factory=Scope)
    group_by: GroupBy | None = None
    min_requests: int = 0
    for_seconds: int = 0
    recovery: float | None = None
    no_data: NoData = "keep"
    channels: tuple[str, ...] = ()
    repeat_seconds: int = 0

    @classmethod
    def of(cls, data: dict[str, Any]) -> Rule:
        """A rule from its JSON form (or any mapping of its fields); ``ValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a rule must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rule field(s): {', '.join(unknown)}")
        values = dict(data)
        scope = values.get("scope") or {}
        if not isinstance(scope, dict) or set(scope) - {f.name for f in fields(Scope)}:
            raise ValueError("scope may only hold endpoint, method, status_class and consumer")
        values["scope"] = Scope(**scope)
        values["channels"] = tuple(values.get("channels") or ())
        try:
            rule = cls(**values)
        except TypeError as exc:
            raise ValueError(f"rule: {exc}") from None
        return rule.checked()

    def checked(self) -> Rule:
        """This rule with numbers normalised, or ``ValueError`` naming the first field that is wrong."""
        if not isinstance(self.name, str) or not 0 < len(self.name.strip()) <= MAX_NAME or not self.name.isprintable():
            raise ValueError(f"name must be 1 to {MAX_NAME} printable characters")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}")
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}")
        threshold = _number("threshold", self.threshold)
        window = _whole("window_seconds", self.window_seconds)
        if window < 60 or window % 60 or window > MAX_WINDOW:
            raise ValueError(f"window_seconds must be whole minutes from 60 to {MAX_WINDOW}")
        if self.baseline not in get_args(Baseline):
            raise ValueError("baseline must be 'previous' or 'week'")
        if self.group_by not in (None, *get_args(GroupBy)):
            raise ValueError("group_by must be 'endpoint', 'consumer' or none")
        if self.group_by is not None and self.metric == "consumers":
            raise ValueError("the consumers metric counts every consumer: it cannot be grouped")
        if self.no_data not in get_args(NoData):
            raise ValueError("no_data must be 'keep', 'ok' or 'alert'")
        min_requests = _whole("min_requests", self.min_requests)
        for_seconds = _whole("for_seconds", self.for_seconds)
        repeat = _whole("repeat_seconds", self.repeat_seconds)
        if for_seconds > MAX_WINDOW:
            raise ValueError(f"for_seconds must be at most {MAX_WINDOW} (a week)")
        if (repeat and repeat < 60) or repeat > 30 * 86400:
            raise ValueError("repeat_seconds must be 0 or 60 to 2592000 (30 days)")
        if self.comparison in ("increase", "decrease") and threshold <= 0:
            raise ValueError("an increase or decrease threshold is a percentage above 0")
        if self.metric in RATES and self.comparison in ("above", "below") and not 0 <= threshold <= 100:
            raise ValueError("a rate threshold is a percentage from 0 to 100")
        recovery = None if self.recovery is None else _number("recovery", self.recovery)
        if recovery is not None:
            # hysteresis: recovering means going back past the threshold, at least as far as it
            if self.comparison in ("above", "increase") and recovery > threshold:
                raise ValueError(f"recovery must not be above the threshold for '{self.comparison}'")
            if self.comparison == "below" and recovery < threshold:
                raise ValueError("recovery must not be below the threshold for 'below'")
            if self.comparison == "decrease" and recovery > threshold:
                raise ValueError("recovery must not be above the threshold for 'decrease' (a smaller drop)")
        scope = self.scope
        if scope.method is not None and not _METHOD.fullmatch(scope.method):
            raise ValueError("scope.method must be an HTTP method")
        if scope.status_class is not None and scope.status_class not in (1, 2, 3, 4, 5):
            raise ValueError("scope.status_class must be 1 to 5")
        for name in ("endpoint", "consumer"):
            value = getattr(scope, name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 2048 or "\0" in value):
                raise ValueError(f"scope.{name} must be a non-empty string")
        if not all(isinstance(c, str) and c for c in self.channels) or len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must be distinct channel names")
        return replace(
            self,
            name=self.name.strip(),
            threshold=threshold,
            window_seconds=window,
            min_requests=min_requests,
            for_seconds=for_seconds,
            repeat_seconds=repeat,
            recovery=recovery,
            scope=replace(scope, method=scope.method.upper() if scope.method else None),
        )

    @property
    def recovery_threshold(self) -> float:
        """Where the value must be back to for the alert to resolve."""
        return self.threshold if self.recovery is None else self.recovery

    def to_json(self) -> dict[str, Any]:
        """The JSON form :meth:`of` reads back (defaults included)."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Rule:
        return cls.of(json.loads(text))

    def describe(self) -> str:
        """The rule in words, e.g. ``error_rate above 5 over 5 min``."""
        unit = "%" if self.comparison in ("increase", "decrease") or self.metric in RATES else ""
        against = f" vs the {self.baseline} window" if self.comparison in ("increase", "decrease") else ""
        by = {"increase": "increases by", "decrease": "decreases by"}.get(self.comparison, self.comparison)
        return f"{self.metric} {by} {readable(self.threshold)}{unit}{against} over {self.window_seconds // 60} min"


@dataclass(frozen=True)
class Channel:
    """Where notifications go: a webhook (signed), a Slack or Discord incoming webhook, or email addresses."""

    name: str
    kind: ChannelKind
    target: str  # the URL, or the email addresses separated by commas

    def checked(self) -> Channel:
        """This channel, or ``ValueError`` naming what is wrong."""
        if not isinstance(self.name, str) or not 0 < len(self.name.strip()) <= MAX_NAME or not self.name.isprintable():
            raise ValueError(f"channel name must be 1 to {MAX_NAME} printable characters")
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"channel kind must be one of {', '.join(CHANNEL_KINDS)}")
        target = self.target.strip() if isinstance(self.target, str) else ""
        if self.kind == "email":
            addresses = [a.strip() for a in target.split(",") if a.strip()]
            if not addresses or not all(_EMAIL.fullmatch(a) for a in addresses):
                raise ValueError("an email channel's target is one or more addresses, separated by commas")
            target = ", ".join(addresses)
        elif not re.fullmatch(r"https?://[^\s]+", target) or len(target) > 2048:
            raise ValueError(f"a {self.kind} channel's target is an http(s) URL")
        elif self.kind in ("slack", "discord") and not re.match(_HTTPS_OR_LOOPBACK, target):
            # Their incoming-webhook URLs are https, and the URL is the credential: never sent in the clear
            # (plain http only to this machine, for a stand-in receiver).
            raise ValueError(f"a {self.kind} channel's target is an https URL (its incoming webhook's)")
        return replace(self, name=self.name.strip(), target=target)


def readable(value: float) -> str:
    """A figure for people (rule descriptions, notifications): never in exponent form from 0.001 to 10**15,
    thousands separated from 1,000 up (``52,010``), four significant digits below (``12.35``, ``0.25``)."""
    if abs(value) >= 1000 and abs(value) < 1e15:
        return f"{value:,.0f}"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more")
    return value
