"""Rules written as text (the dashboard's form fields, the command line's options) and the preview's geometry:
every rule field read back the same, each wrong field named, the chart's lines, gaps and firing spans."""

from __future__ import annotations

import pytest

from peekapi_server.alerts.rules import Rule, Scope
from peekapi_server.alerts.text import format_duration, parse_duration, parse_time, rule_fields, rule_from_fields

pytest.importorskip("jinja2")
pytest.importorskip("starlette")

from peekapi_server.dashboard.alert_chart import HEIGHT, LEFT, TOP, chart


def test_durations_read_back() -> None:
    assert [parse_duration(t, "x") for t in ("90", "90s", "5m", "1h", "2d", " 3 M ")] == [
        90,
        90,
        300,
        3600,
        172800,
        180,
    ]
    for seconds in (0, 45, 60, 90, 300, 3600, 5400, 86400, 129600):
        assert parse_duration(format_duration(seconds), "x") == seconds
    assert format_duration(90) == "90s" and format_duration(5400) == "90m" and format_duration(129600) == "36h"
    for bad in ("", "5 minutes", "-1m", "1.5h", "m"):
        with pytest.raises(ValueError, match=r"^for must be a duration"):
            parse_duration(bad, "for")


def test_times_are_utc_unless_they_say_otherwise() -> None:
    assert parse_time("2026-12-04T18:00") == 1796407200
    assert parse_time("2026-12-04T19:00+01:00") == 1796407200
    with pytest.raises(ValueError, match=r"^until must be a time"):
        parse_time("tomorrow")


def test_every_field_of_a_rule_reads_back_the_same() -> None:
    rule = Rule(
        name="5xx per endpoint",
        metric="error_rate_5xx",
        comparison="increase",
        threshold=50.5,
        window_seconds=900,
        baseline="week",
        scope=Scope(endpoint="/users/{id}", method="GET", status_class=5, consumer="alice"),
        group_by="endpoint",
        min_requests=20,
        for_seconds=90,
        recovery=10.0,
        no_data="alert",
        channels=("ops", "mail"),
        repeat_seconds=3600,
    ).checked()
    fields = rule_fields(rule)
    assert fields["window"] == "15m" and fields["for"] == "90s" and fields["threshold"] == "50.5"
    assert rule_from_fields(fields, ["ops", "mail"]) == rule
    plain = Rule.of({"name": "n", "metric": "p95_ms", "comparison": "above", "threshold": 250})
    assert rule_from_fields(rule_fields(plain)) == plain
    assert rule_from_fields({"name": "n", "metric": "p95_ms", "comparison": "above", "threshold": "250"}) == plain


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": ""}, "threshold is required"),
        ({"threshold": "lots"}, "threshold must be a number"),
        ({"threshold": "nan"}, "threshold must be a finite number"),
        ({"window": "5 min"}, "window must be a duration"),
        ({"window": "90s"}, "window_seconds must be whole minutes"),
        ({"min_requests": "-3"}, "min_requests must be a whole number"),
        ({"status_class": "6"}, "scope.status_class must be 1 to 5"),
        ({"metric": "cpu"}, "metric must be one of"),
        ({"recovery": "9"}, "recovery must not be above the threshold"),
        ({"name": " "}, "name must be 1 to 100"),
    ],
)
def test_a_wrong_field_is_named(change: dict[str, str], message: str) -> None:
    fields = {"name": "r", "metric": "error_rate", "comparison": "above", "threshold": "5", **change}
    with pytest.raises(ValueError, match=message):
        rule_from_fields(fields)


def test_the_preview_chart_draws_runs_gaps_levels_and_spans() -> None:
    start = 1_800_000_000
    points = [(start + 60 * i, v) for i, v in enumerate([1.0, 2.0, None, 4.0, None, 8.0, 10.0])]
    c = chart(points, [(start + 300, start + 360), (start + 400, None)], 5.0, 3.0, start=start, end=start + 420)
    assert (c.values, c.total) == (5, 25.0)
    assert len(c.lines) == 2 and len(c.dots) == 1  # 1-2, (4 alone), 8-10
    assert c.threshold_y is not None and c.recovery_y is not None and c.recovery_y > c.threshold_y  # lower is below
    assert [(s.start, s.end) for s in c.spans] == [(start + 300, start + 360), (start + 400, None)]
    assert c.y_ticks[0].label == "0" and c.y_ticks[-1].label == "20"  # 10 x 1.05 rounded up to 20
    assert c.y_ticks[-1].at == TOP and c.y_ticks[0].at == HEIGHT - 26
    first_x = float(c.lines[0].split()[0].split(",")[0])
    assert first_x == LEFT
    # nothing at all still draws an axis; a change below zero gets a negative axis
    empty = chart([], [], None, None, start=start, end=start + 60)
    assert empty.lines == [] and empty.values == 0 and empty.y_ticks[-1].label == "1"
    falling = chart([(start, -30.0), (start + 60, 10.0)], [], 20.0, None, start=start, end=start + 60)
    assert falling.y_ticks[0].label == "-50" and falling.recovery_y is None
