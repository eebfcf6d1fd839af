"""The dimension-first views (schema version 4) answer exactly what the full-dimension tables give.

Every read (overview series and totals, endpoints, consumers, status codes) filtered by nothing or by one
dimension is compared with the same figures recomputed here from ``rollups`` and ``hist`` alone, on both
engines: on unaligned, aligned and short windows, with events before and after the views' mark (written late,
so the write path adds them to the views), after a migration from version 3 (the backfill) and after
compaction to hours and days.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from peekapi_server import histogram
from peekapi_server.store import Batch, Project, ReadQuery, Store
from peekapi_server.store.base import DAY, HOUR, MINUTE
from peekapi_server.store.reads import _figures
from peekapi_server.store.schema import MIGRATIONS, VIEWS, render, view_tables
from peekapi_server.store.sql import SqlStore
from tests.server.test_store import NOW, make_events

FILTERS: list[dict[str, Any]] = [
    {},
    {"endpoint": "/users/{id}"},
    {"method": "POST"},
    {"method": "GET"},
    {"endpoint": "/orders", "method": "GET"},
    {"consumer": "alice"},
    {"status_class": 5},
    {"status_class": 2},
    {"consumer": "bob", "status_class": 4},  # two dimensions: the minute tables only
]
HOUR0 = NOW // HOUR * HOUR


def rows(store: Store, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
    """Rows of a read-only statement on the store's database."""
    assert isinstance(store, SqlStore)
    return list(store.iter_rows(sql, params))


def windows() -> list[tuple[int, int, int]]:
    """(start, end, series interval): unaligned, whole hours, short, and ending before the views' mark."""
    return [
        (NOW - 2 * DAY - 1234, NOW + 60, HOUR),
        (HOUR0 - 3 * DAY, HOUR0 + HOUR, DAY),
        (NOW - 30 * DAY, NOW + 60, DAY),
        (NOW - 40 * DAY - 77, NOW - 3 * DAY, HOUR),
        (NOW - 5400 - 17, NOW - 100, MINUTE),
        (NOW - 5400 - 17, NOW - 100, HOUR),
        (HOUR0 - 2 * HOUR - 600, HOUR0 - 1800, HOUR),
    ]


def reference(store: Store, project_id: int, q: ReadQuery, key: Callable[[Sequence[Any]], object]) -> dict[object, Any]:
    """Figures per ``key`` of a rollup row (ts, endpoint_id, consumer_id, status_code), from ``rollups`` and
    ``hist`` alone: rows of any resolution whose time is in ``[q.start, q.end)``, filtered as ``q`` says."""
    ids = None
    if q.endpoint is not None or q.method is not None:
        ids = {
            int(r[0])
            for r in rows(store, "SELECT id, method, route FROM endpoints WHERE project_id = ?", (project_id,))
            if (q.endpoint is None or r[2] == q.endpoint) and (q.method is None or r[1] == q.method)
        }
    consumer = None
    if q.consumer is not None:
        found = list(
            rows(store, "SELECT id FROM consumers WHERE project_id = ? AND name = ?", (project_id, q.consumer))
        )
        consumer = int(found[0][0]) if found else -1

    def keep(r: Sequence[Any]) -> bool:
        return (
            (ids is None or int(r[1]) in ids)
            and (consumer is None or int(r[2]) == consumer)
            and (q.status_class is None or int(r[3]) // 100 == q.status_class)
        )

    where = "WHERE project_id = ? AND ts >= ? AND ts < ?"
    params = (project_id, q.start, q.end)
    sums: dict[object, list[Any]] = {}
    for r in rows(
        store,
        "SELECT ts, endpoint_id, consumer_id, status_code, n, err4, err5, lat_sum, lat_min, lat_max, bytes_in,"
        f" bytes_out FROM rollups {where}",
        params,
    ):
        if not keep(r):
            continue
        s = sums.setdefault(key(r), [0, 0, 0, 0.0, None, None, 0, 0])
        for i in (0, 1, 2, 3, 6, 7):
            s[i] += r[4 + i]
        s[4] = r[8] if s[4] is None else min(s[4], r[8])
        s[5] = r[9] if s[5] is None else max(s[5], r[9])
    buckets: dict[object, dict[int, int]] = {}
    for r in rows(store, f"SELECT ts, endpoint_id, consumer_id, status_code, bucket, n FROM hist {where}", params):
        if keep(r):
            b = buckets.setdefault(key(r), {})
            b[int(r[4])] = b.get(int(r[4]), 0) + int(r[5])
    return {k: _figures(s, sorted(buckets.get(k, {}).items())) for k, s in sums.items()}


def same(got: Mapping[Any, Any], want: Mapping[Any, Any]) -> None:
    """Equal figures; the average latency within float rounding (sums added in another order)."""
    assert got.keys() == want.keys()
    for k, found in got.items():
        mine, other = dict(found), dict(want[k])
        avg, other_avg = mine.pop("latency_avg_ms"), other.pop("latency_avg_ms")
        assert avg == pytest.approx(other_avg, rel=1e-9), k
        assert mine == other, k


def check_every_read(store: Store, project: Project) -> int:
    """Compares every read with the reference; returns the number of comparisons made."""
    pid = project.id
    names = {
        int(r[0]): (str(r[1]), str(r[2]))
        for r in rows(store, "SELECT id, method, route FROM endpoints WHERE project_id = ?", (pid,))
    }
    consumers = {
        int(r[0]): str(r[1]) for r in rows(store, "SELECT id, name FROM consumers WHERE project_id = ?", (pid,))
    }
    checked = 0
    for start, end, iv in windows():
        for f in FILTERS:
            q = ReadQuery(start=start, end=end, interval=iv, limit=1000, **f)
            ov = store.overview(pid, q)
            series = {p["t"]: {k: v for k, v in p.items() if k != "t"} for p in ov["series"] if p["requests"]}
            same(series, reference(store, pid, q, lambda r, iv=iv: int(r[0]) // iv * iv))  # type: ignore[misc]
            total = reference(store, pid, q, lambda r: "all")
            if total:
                same({"all": ov["totals"]}, total)
            else:
                assert ov["totals"]["requests"] == 0
            table = {
                (e["method"], e["route"]): {k: v for k, v in e.items() if k not in ("method", "route")}
                for e in store.endpoints_table(pid, q)
            }
            same(table, reference(store, pid, q, lambda r: names[int(r[1])]))
            table = {
                c["consumer"]: {k: v for k, v in c.items() if k != "consumer"} for c in store.consumers_table(pid, q)
            }
            same(table, reference(store, pid, q, lambda r: consumers.get(int(r[2]))))
            codes = {c["status_code"]: c["requests"] for c in store.status_codes(pid, q)}
            assert codes == {k: v["requests"] for k, v in reference(store, pid, q, lambda r: int(r[3])).items()}
            hist = store.latency_histogram(pid, q)  # the totals' histogram, bucket by bucket
            assert sum(n for _, n in hist) == ov["totals"]["requests"]
            lo, hi = ov["totals"]["latency_min_ms"], ov["totals"]["latency_max_ms"]
            p50, p95, p99 = histogram.percentiles(hist, (0.5, 0.95, 0.99), lo, hi)
            assert (p50, p95, p99) == (ov["totals"]["p50_ms"], ov["totals"]["p95_ms"], ov["totals"]["p99_ms"])
            checked += 6
    return checked


def view_rows(store: Store, project_id: int) -> int:
    """Rows in the version-4 views of the project."""
    return sum(
        int(rows(store, f"SELECT COUNT(*) FROM {table} WHERE project_id = ?", (project_id,))[0][0])
        for name in VIEWS
        for table, _, _ in view_tables(name)
    )


def test_views_answer_as_the_full_dimension_tables(store: Store, project: Project) -> None:
    old = make_events(3000, 21, ts=NOW - 3 * DAY, spread=3 * DAY - 2 * HOUR)
    store.write_batches([Batch(project.id, None, old)])
    store.write_batches([Batch(project.id, None, make_events(1500, 24, ts=NOW - 29 * DAY, spread=26 * DAY))])
    assert view_rows(store, project.id) == 0  # written after the mark (0 for a new project): not in the views
    store.maintain(NOW)  # moves the mark to this hour; minute rows older than a day become hours
    assert view_rows(store, project.id) > 0
    # late events (before the mark: the write adds them to the views) and current ones (after it)
    store.write_batches([Batch(project.id, None, make_events(800, 22, ts=NOW - 2 * DAY, spread=2 * DAY - HOUR))])
    store.write_batches([Batch(project.id, None, make_events(300, 23, ts=HOUR0, spread=max(1, NOW - HOUR0)))])
    assert check_every_read(store, project) == len(windows()) * len(FILTERS) * 6
    # hours older than a day compacted to days, in every table alike
    store.maintain(NOW, compact_minutes_after=HOUR, compact_hours_after=DAY)
    days = rows(store, "SELECT COUNT(*) FROM rollup_consumers WHERE project_id = ? AND res = ?", (project.id, DAY))
    assert int(next(iter(days))[0]) > 0
    check_every_read(store, project)


def test_migration_backfills_the_views(store: Store, project: Project) -> None:
    store.write_batches([Batch(project.id, None, make_events(2000, 31, ts=NOW - 2 * DAY, spread=2 * DAY))])
    assert isinstance(store, SqlStore)
    # the database as a version-3 collector left it, then versions 4, 6 and 7 (the views), as migrate() runs them
    with store.transaction() as tx:
        for name in VIEWS:
            for table, _, _ in view_tables(name):
                tx.run(f"DROP TABLE {table}")
        tx.run("DROP TABLE view_marks")
    assert any("CREATE TABLE view_marks" in statement for statement in MIGRATIONS[3])  # version 4
    assert any("CREATE TABLE rollup_consumers_minutes" in statement for statement in MIGRATIONS[5])  # version 6
    assert any("CREATE TABLE rollup_consumers_weeks" in statement for statement in MIGRATIONS[6])  # version 7
    with store.transaction() as tx:
        for statement in (*MIGRATIONS[3], *MIGRATIONS[5], *MIGRATIONS[6]):
            tx.run(render(statement, store.dialect))
    assert view_rows(store, project.id) > 0
    marks = rows(store, "SELECT upto FROM view_marks WHERE project_id = ?", (project.id,))
    assert int(marks[0][0]) > NOW  # after every stored row
    check_every_read(store, project)


def test_recent_events_filtered_by_one_dimension_page_as_a_plain_scan(store: Store, project: Project) -> None:
    """The scan of recent events starts where the rollups say the newest matches are: every page, rare and
    absent filters included, equals the same query over every raw event of the range."""
    store.write_batches([Batch(project.id, None, make_events(2000, 41, ts=NOW - 3 * DAY, spread=3 * DAY))])
    store.maintain(NOW)
    store.write_batches([Batch(project.id, None, make_events(300, 42, ts=NOW - 2 * DAY, spread=2 * DAY))])  # late
    store.write_batches([Batch(project.id, None, make_events(100, 43, ts=HOUR0, spread=max(1, NOW - HOUR0)))])
    # a rare consumer: three events, far apart
    rare = make_events(3, 44, ts=NOW - 2 * DAY, spread=2 * DAY)
    store.write_batches([Batch(project.id, None, [e._replace(consumer="rare") for e in rare])])
    filters: list[dict[str, Any]] = [
        {"consumer": "rare"},
        {"consumer": "alice"},
        {"status_class": 5},
        {"status_class": 1},  # none at all
        {"endpoint": "/orders"},
        {"method": "POST"},
        {"consumer": "bob", "status_class": 4},
    ]
    for start, end in ((NOW - 3 * DAY - 999, NOW + 60), (NOW - DAY - 1234, NOW - 4000)):
        for f in filters:
            ids = {
                int(r[0])
                for r in rows(store, "SELECT id, method, route FROM endpoints WHERE project_id = ?", (project.id,))
                if f.get("endpoint", r[2]) == r[2] and f.get("method", r[1]) == r[1]
            }
            want = [
                (int(r[0]), int(r[1]))
                for r in rows(
                    store,
                    "SELECT e.id, e.ts, e.status_code, c.name, e.endpoint_id FROM events e"
                    " LEFT JOIN consumers c ON c.id = e.consumer_id"
                    " WHERE e.project_id = ? AND e.ts >= ? AND e.ts < ? ORDER BY e.ts DESC, e.id DESC",
                    (project.id, start * 1000, end * 1000),
                )
                if int(r[4]) in ids
                and f.get("consumer", r[3]) == r[3]
                and ("status_class" not in f or int(r[2]) // 100 == f["status_class"])
            ]
            for limit in (1, 7, 50):
                got: list[tuple[int, int]] = []
                cursor = None
                while True:
                    page = store.recent_events(project.id, ReadQuery(start=start, end=end, limit=limit, **f), cursor)
                    got += [(int(e["id"]), int(e["ts_ms"])) for e in page]
                    if len(page) < limit:
                        break
                    cursor = (int(page[-1]["ts_ms"]), int(page[-1]["id"]))
                assert got == want, (start, end, f, limit)
