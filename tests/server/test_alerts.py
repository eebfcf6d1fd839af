"""Alert rules evaluated over real traffic: events posted through the ingest endpoint of a real collector (on both
engines), passes run at a controllable clock, notifications counted in the outbox.

Time: minute ``k`` of a scenario is ``T0 + 60 k``, ``T0`` a whole hour three hours ago (the ingest keeps events that
old as they are); a pass "at minute k" runs at ``T0 + 60 k + SETTLE_SECONDS``, so it evaluates the window ending at
minute ``k``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from peekapi_server.alerts.admin import summaries
from peekapi_server.alerts.evaluate import SETTLE_SECONDS, evaluate_due, preview
from peekapi_server.alerts.rules import Rule
from peekapi_server.config import ServerConfig
from peekapi_server.store import Store, open_store
from tests.server.support import Collector, event, start_collector

T0 = (int(time.time()) - 3 * 3600) // 3600 * 3600
SETTINGS = ServerConfig(public_url="https://peek.example.com")


@pytest.fixture
def collector(db_url: str) -> Iterator[Collector]:
    c = start_collector(db_url)
    try:
        with c.store.alerts(True) as a:
            a.create_channel(c.project.id, "ops", "webhook", "https://example.com/hook", secret="whsec_x", now=T0)
        yield c
    finally:
        c.stop()
        c.store.close()


def at(minute: float) -> str:
    return datetime.fromtimestamp(T0 + minute * 60, timezone.utc).isoformat()


def traffic(c: Collector, minutes: range, per_minute: int, errors: int = 0, **fields: Any) -> None:
    """``per_minute`` requests in each minute, the first ``errors`` of them answered 500."""
    events = [
        event(timestamp=at(m + i / per_minute), status_code=500 if i < errors else 200, **fields)
        for m in minutes
        for i in range(per_minute)
    ]
    for i in range(0, len(events), 1000):
        assert c.post(events[i : i + 1000]).status == 200
    c.drain()


def add_rule(c: Collector, **spec: Any) -> int:
    rule = Rule.of({"name": "r", "channels": ["ops"], **spec})
    with c.store.alerts(True) as a:
        return a.create_rule(c.project.id, rule.name, rule.dumps(), T0).id


def run(store: Store, minutes: range) -> None:
    for k in minutes:
        evaluate_due(store, SETTINGS, T0 + 60 * k + SETTLE_SECONDS)


def sent(c: Collector, rule_id: int) -> list[tuple[str, int, str]]:
    """(type, minute, group) of every queued notification of the rule, oldest first."""
    with c.store.alerts(False) as a:
        items = a.outbox(rule_id, limit=1000)
    out = []
    for item in reversed(items):
        p = json.loads(item.payload)
        out.append((p["type"].removeprefix("alert."), (p["at"] - T0) // 60, p["group"]))
    return out


def transitions(c: Collector, rule_id: int) -> list[tuple[int, str]]:
    with c.store.alerts(False) as a:
        return [((h.at - T0) // 60, h.state) for h in reversed(a.history(rule_id, 1000))]


SPIKE = {"metric": "error_rate", "comparison": "above", "threshold": 10, "window_seconds": 300}


def test_an_error_spike_fires_once_after_for_and_resolves_once(collector: Collector) -> None:
    traffic(collector, range(10), 20)
    traffic(collector, range(10, 20), 20, errors=10)  # 50 % errors
    traffic(collector, range(20, 40), 20)
    rule = add_rule(collector, **SPIKE, for_seconds=120, recovery=5, min_requests=50)
    run(collector.store, range(1, 41))
    # the window ending at minute 11 ([6, 11)) holds 10 failures of 100: 10 %, not above 10; the one ending at
    # 12 holds 20 %: pending, and firing two minutes later; the one ending at 24 still holds 10 % (above the
    # recovery of 5 %), the one ending at 25 none
    assert transitions(collector, rule) == [(12, "pending"), (14, "firing"), (25, "resolved")]
    assert sent(collector, rule) == [("firing", 14, ""), ("resolved", 25, "")]
    with collector.store.alerts(False) as a:
        (item,) = [i for i in a.outbox(rule) if '"alert.firing"' in i.payload]
    payload = json.loads(item.payload)
    assert payload["value"] == 40.0 and payload["threshold"] == 10.0  # [9, 14): 40 failures of 100
    assert payload["rule"]["project"] == collector.project.name and payload["state"] == "firing"
    assert payload["url"].startswith("https://peek.example.com/alerts/rule?") and f"id={rule}" in payload["url"]
    assert item.message_id.startswith("msg_")
    run(collector.store, range(1, 41))  # passes again over the same minutes: nothing new
    assert len(sent(collector, rule)) == 2


def test_a_flapping_signal_does_not_flap_the_alert(collector: Collector) -> None:
    # the error rate alternates 15 % / 8 % around the threshold of 10 every minute, then drops to 0
    for m in range(20):
        traffic(collector, range(m, m + 1), 100, errors=15 if m % 2 == 0 else 8)
    traffic(collector, range(20, 26), 100)
    hysteresis = add_rule(collector, **{**SPIKE, "window_seconds": 60}, recovery=5)
    waiting = add_rule(collector, **{**SPIKE, "window_seconds": 60, "name": "with for"}, for_seconds=120)
    run(collector.store, range(1, 27))
    # fires at the first 15 %, holds while the rate stays above the recovery of 5 %, resolves once it is 0
    assert sent(collector, hysteresis) == [("firing", 1, ""), ("resolved", 21, "")]
    # never breaching for two minutes in a row: pending and back, never firing
    assert sent(collector, waiting) == []
    assert {state for _, state in transitions(collector, waiting)} == {"pending", "inactive"}


def test_inactivity_fires_and_resolves(collector: Collector) -> None:
    traffic(collector, range(10), 5)
    traffic(collector, range(40, 45), 5)
    rule = add_rule(
        collector,
        name="silence on the wire",
        metric="requests",
        comparison="below",
        threshold=1,
        window_seconds=900,
    )
    run(collector.store, range(1, 46))
    # the 15-minute window ending at 25 is the first without a request; the one ending at 41 has one again
    assert sent(collector, rule) == [("firing", 25, ""), ("resolved", 41, "")]


def test_a_silenced_rule_sends_nothing(collector: Collector) -> None:
    traffic(collector, range(30), 20, errors=10)
    silenced = add_rule(collector, **SPIKE)
    later = add_rule(collector, **SPIKE, name="silenced a while")
    traffic(collector, range(30, 40), 20)
    with collector.store.alerts(True) as a:
        a.silence_rule(silenced, T0 + 3600 * 24)
        a.silence_rule(later, T0 + 60 * 20)
    run(collector.store, range(1, 41))
    assert sent(collector, silenced) == []
    assert [s for _, s in transitions(collector, silenced)] == ["firing", "resolved"]  # its states still move
    # still firing when its silence ends: notified then, and its resolution too
    assert sent(collector, later) == [("firing", 20, ""), ("resolved", 34, "")]  # [29, 34): 10 %, not above 10


def test_one_alert_per_group(collector: Collector) -> None:
    traffic(collector, range(20), 10, path="/a", route="/a")
    traffic(collector, range(20), 10, errors=5, path="/b/1", route="/b/{id}", method="POST")
    rule = add_rule(collector, **SPIKE, group_by="endpoint", min_requests=10)
    run(collector.store, range(1, 21))
    assert sent(collector, rule) == [("firing", 1, "POST /b/{id}")]
    with collector.store.alerts(False) as a:
        assert {g: s.state for g, s in a.states(rule).items()} == {"POST /b/{id}": "firing"}


def test_a_rule_that_never_breached_says_where_it_stands(collector: Collector) -> None:
    traffic(collector, range(10), 20)
    quiet = add_rule(collector, **SPIKE)
    per_endpoint = add_rule(collector, **SPIKE, name="per endpoint", group_by="endpoint")
    run(collector.store, range(1, 11))
    with collector.store.alerts(True) as a:
        (only,) = a.states(quiet).values()  # its one group, evaluated and stored although never breached
        assert (only.state, only.value, only.evaluated_at) == ("inactive", 0.0, T0 + 600)
        assert a.states(per_endpoint) == {}  # per group: only groups that breached are stored
        fresh = a.create_rule(collector.project.id, "fresh", Rule.of({**SPIKE, "name": "fresh"}).dumps(), T0 + 630)
    by_id = {s.stored.id: s for s in summaries(collector.store, collector.project.id)}
    assert by_id[quiet].evaluated_at == by_id[per_endpoint].evaluated_at == T0 + 600
    assert by_id[quiet].value == 0.0 and by_id[per_endpoint].state == "inactive"
    assert by_id[fresh.id].evaluated_at is None  # created after the last pass: not evaluated yet
    with collector.store.alerts(True) as a:  # an edit starts its states again: not evaluated since
        a.update_rule(quiet, "quiet", Rule.of({**SPIKE, "name": "quiet"}).dumps(), T0 + 640)
    assert {s.stored.id: s for s in summaries(collector.store, collector.project.id)}[quiet].evaluated_at is None


def test_a_spike_against_the_previous_window(collector: Collector) -> None:
    traffic(collector, range(10), 10)
    traffic(collector, range(10, 12), 40)  # four times the traffic
    traffic(collector, range(12, 20), 10)
    rule = add_rule(
        collector,
        metric="requests_per_minute",
        comparison="increase",
        threshold=100,
        window_seconds=120,
        baseline="previous",
    )
    run(collector.store, range(4, 20))
    # the window ending at 11 (minutes 9 and 10: 25/min) against the one before (10/min): +150 %; the one
    # ending at 13 (40/min) against 25/min: +60 %, back under 100: resolved
    assert sent(collector, rule) == [("firing", 11, ""), ("resolved", 13, "")]


def test_the_preview_replays_the_last_day(collector: Collector) -> None:
    traffic(collector, range(10), 20)
    traffic(collector, range(10, 20), 20, errors=10)
    traffic(collector, range(20, 30), 20)
    rule = Rule.of({"name": "p", **SPIKE})
    p = preview(collector.store, collector.project.id, rule, T0 + 30 * 60, hours=1)
    assert len(p.points) == 12 and p.threshold == 10.0
    values = dict(p.points)
    assert values[T0 + 15 * 60] == 50.0 and values[T0 + 5 * 60] == 0.0 and values[T0 - 20 * 60] is None
    assert p.firings == [(T0 + 15 * 60, T0 + 25 * 60)]


@pytest.mark.postgres
def test_two_collector_processes_evaluate_each_minute_once(pg_url: str) -> None:
    """Several processes (each its own store and connection pool, as `--workers` runs them) passing at once:
    every transition is decided, and notified, exactly once."""
    c = start_collector(pg_url)
    stores = [open_store(pg_url) for _ in range(3)]
    try:
        with c.store.alerts(True) as a:
            a.create_channel(c.project.id, "ops", "webhook", "https://example.com/hook", secret="whsec_x", now=T0)
        traffic(c, range(10), 20)
        traffic(c, range(10, 20), 20, errors=10)
        traffic(c, range(20, 40), 20)
        rules = [add_rule(c, **SPIKE, name=f"r{i}", recovery=5) for i in range(5)]
        threads = [threading.Thread(target=run, args=(s, range(1, 41))) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for rule in rules:
            assert sent(c, rule) == [("firing", 12, ""), ("resolved", 25, "")], rule
            assert transitions(c, rule) == [(12, "firing"), (25, "resolved")]
    finally:
        for s in stores:
            s.close()
        c.stop()
        c.store.close()


def test_reminders_while_firing(collector: Collector) -> None:
    traffic(collector, range(20), 20, errors=10)
    traffic(collector, range(20, 30), 20)
    rule = add_rule(collector, **{**SPIKE, "window_seconds": 60}, repeat_seconds=300)
    run(collector.store, range(1, 31))
    # fired at 1, reminded every 5 minutes while it lasts, resolved once the errors stop
    assert sent(collector, rule) == [
        ("firing", 1, ""), ("reminder", 6, ""), ("reminder", 11, ""), ("reminder", 16, ""), ("resolved", 21, ""),
    ]  # fmt: skip
