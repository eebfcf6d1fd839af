"""The overview's series where only hourly or daily figures are kept (no browser needed).

Minute figures older than a day are compacted into hourly ones, and hourly ones older than a week into daily ones.
The 24-hour view draws 15-minute buckets, so its previous day put each hour's requests in one bucket and none in
the three others: a sawtooth for steady traffic (the 30-day view's 6-hour buckets did the same past a week, in the
current line). Such hours and days are evened out over their buckets.
"""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

from peekapi_server.dashboard.overview import _series
from peekapi_server.dashboard.web import View
from peekapi_server.events import Event
from peekapi_server.store import Batch, Project, Store
from peekapi_server.store.base import DAY, HOUR, MINUTE, stored_resolution
from tests.server.conftest import db_url, pg_url, project, store

__all__ = ["db_url", "pg_url", "project", "store"]

NOW = 1_780_000_000 // HOUR * HOUR + 17 * MINUTE  # a fixed time, 17 minutes past an hour


def steady(start: int, end: int, every: int) -> list[Event]:
    """One request every ``every`` seconds in ``[start, end)``."""
    return [Event(ts * 1000, "GET", "/a", "/a", 200, 5.0, 0, 10, None, None) for ts in range(start, end, every)]


def test_the_previous_day_of_the_24_hour_view_is_drawn_as_steady_as_it_was(store: Store, project: Project) -> None:
    store.write_batches([Batch(project.id, None, steady(NOW - 2 * DAY, NOW, 5 * MINUTE))])
    store.maintain(NOW)  # minute figures older than a day become hourly ones
    view = View(project, "24h", NOW - DAY, NOW)
    data = _series(store, view, now=NOW)
    current, previous = data["current"], data["previous"]
    assert current["interval"] == previous["interval"] == 15 * MINUTE
    assert previous["evened_out"] is True and "evened_out" not in current  # the current day: minute figures
    assert len(previous["series"]) == len(current["series"])
    assert [p["t"] for p in previous["series"]] == [p["t"] - DAY for p in current["series"]]
    inner = [p["requests"] for p in previous["series"][4:-4]]  # the partial hours at either end aside
    assert inner and all(r == 3.0 for r in inner), inner  # 12 an hour, 3 per 15 minutes: no sawtooth
    assert sum(p["requests"] for p in previous["series"]) == pytest.approx(previous["totals"]["requests"])
    assert all(p["p50_ms"] == 5.0 and p["error_rate"] == 0.0 for p in previous["series"][4:-4])
    assert {p["requests"] for p in current["series"][1:-1]} == {3}


def test_the_30_day_view_is_even_where_only_days_are_kept(store: Store, project: Project) -> None:
    store.write_batches([Batch(project.id, None, steady(NOW - 20 * DAY, NOW, 30 * MINUTE))])
    store.maintain(NOW)  # hours older than a week become days
    data = _series(store, View(project, "30d", NOW - 30 * DAY, NOW), now=NOW)
    current = data["current"]
    assert current["interval"] == 6 * HOUR and current["evened_out"] is True
    old = [p["requests"] for p in current["series"] if NOW - 19 * DAY <= p["t"] < NOW - 8 * DAY]
    assert old and set(old) == {12.0}, old  # 48 a day, 12 per 6 hours: not 48 then three empty buckets
    assert sum(p["requests"] for p in current["series"]) == pytest.approx(current["totals"]["requests"])


def test_a_previous_period_kept_by_the_minute_is_read_as_it_is(store: Store, project: Project) -> None:
    store.write_batches([Batch(project.id, None, steady(NOW - 2 * HOUR, NOW, MINUTE))])
    data = _series(store, View(project, "1h", NOW - HOUR, NOW), now=NOW)
    assert "evened_out" not in data["previous"]
    assert data["previous"]["interval"] == MINUTE and data["previous"]["totals"]["requests"] == 60


def test_stored_resolution_follows_the_compaction_ages() -> None:
    hour_cut = (NOW - DAY) // HOUR * HOUR
    assert stored_resolution(hour_cut, NOW) == MINUTE
    assert stored_resolution(hour_cut - 1, NOW) == HOUR
    assert stored_resolution((NOW - 7 * DAY) // DAY * DAY - 1, NOW) == DAY
