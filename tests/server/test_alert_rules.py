"""Rules and channels are checked when they are made: every bad field is a ValueError that names it."""

from __future__ import annotations

from typing import Any

import pytest

from peekapi_server.alerts.evaluate import Reading, judge
from peekapi_server.alerts.rules import Channel, Rule, new_webhook_secret, readable

GOOD: dict[str, Any] = {"name": "errors", "metric": "error_rate", "comparison": "above", "threshold": 5}


def test_a_rule_round_trips_through_json() -> None:
    rule = Rule.of({**GOOD, "scope": {"method": "get", "status_class": 5}, "channels": ["ops"], "recovery": 2})
    assert rule.scope.method == "GET" and rule.recovery_threshold == 2.0
    assert Rule.loads(rule.dumps()) == rule
    assert rule.describe() == "error_rate above 5% over 5 min"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "latency"}, "metric must be one of"),
        ({"comparison": "over"}, "comparison must be one of"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": True}, "threshold must be a finite number"),
        ({"threshold": 150}, "rate threshold is a percentage"),
        ({"window_seconds": 90}, "window_seconds must be whole minutes"),
        ({"window_seconds": 0}, "window_seconds must be whole minutes"),
        ({"for_seconds": -1}, "for_seconds must be a whole number"),
        ({"recovery": 9}, "recovery must not be above the threshold"),
        ({"comparison": "below", "recovery": 1}, "recovery must not be below the threshold"),
        ({"comparison": "increase", "threshold": 0}, "percentage above 0"),
        ({"group_by": "status"}, "group_by must be"),
        ({"metric": "consumers", "group_by": "endpoint"}, "cannot be grouped"),
        ({"no_data": "maybe"}, "no_data must be"),
        ({"repeat_seconds": 30}, "repeat_seconds must be 0 or 60"),
        ({"scope": {"status_class": 6}}, "scope.status_class"),
        ({"scope": {"method": "GET /"}}, "scope.method"),
        ({"scope": {"endpoint": ""}}, "scope.endpoint"),
        ({"scope": {"path": "/x"}}, "scope may only hold"),
        ({"channels": ["a", "a"]}, "distinct channel names"),
        ({"name": ""}, "name must be"),
        ({"colour": "red"}, "unknown rule field"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule.of({**GOOD, **change})


def test_channels_are_checked() -> None:
    assert Channel("mail", "email", " a@example.com,b@example.org ").checked().target == "a@example.com, b@example.org"
    assert Channel("hook", "webhook", "https://example.com/h").checked().kind == "webhook"
    for bad in (Channel("x", "email", "not an address"), Channel("x", "slack", "ftp://x"), Channel("", "webhook", "https://x"),
                Channel("x", "pager", "https://x")):  # fmt: skip
        with pytest.raises(ValueError):
            bad.checked()
    assert Channel("hook", "webhook", "http://10.0.0.9/h").checked().kind == "webhook"  # an internal receiver
    for kind in ("slack", "discord"):  # their webhook URL is the credential: https only
        with pytest.raises(ValueError, match="https URL"):
            Channel("x", kind, "http://hooks.example.com/services/T0/B0/x").checked()
    assert new_webhook_secret().startswith("whsec_") and new_webhook_secret() != new_webhook_secret()


def test_judging_a_window() -> None:
    rate = Rule.of({**GOOD, "min_requests": 10, "recovery": 2})
    assert judge(rate, Reading(100, 7.0)).breach is True
    assert judge(rate, Reading(100, 3.0)).breach is False and not judge(rate, Reading(100, 3.0)).recovered
    assert judge(rate, Reading(100, 2.0)).recovered is True
    assert judge(rate, Reading(5, 90.0)).breach is None  # too few requests: hold
    assert judge(rate, None).breach is None  # no data: keep
    assert judge(Rule.of({**GOOD, "no_data": "alert"}), None).breach is True
    quiet = Rule.of({**GOOD, "metric": "requests", "comparison": "below", "threshold": 1})
    assert judge(quiet, None).breach is True  # no requests at all: a count of 0
    spike = Rule.of({**GOOD, "metric": "requests_per_minute", "comparison": "increase", "threshold": 50})
    assert judge(spike, Reading(30, 30.0), Reading(10, 10.0)).value == 200.0
    assert judge(spike, Reading(30, 30.0), None).breach is None  # nothing to compare with


@pytest.mark.parametrize(
    ("value", "text"),
    [(52010.0, "52,010"), (5.0, "5"), (0.25, "0.25"), (12.3456, "12.35"), (1e6, "1,000,000"), (-1500.4, "-1,500")],
)
def test_figures_for_people_have_no_exponent(value: float, text: str) -> None:
    assert readable(value) == text


def test_a_rules_description_spells_its_threshold_for_people() -> None:
    spec = {"name": "r", "metric": "requests", "comparison": "above", "threshold": 52010, "window_seconds": 300}
    assert Rule.of(spec).describe() == "requests above 52,010 over 5 min"
