"""Store contract: every test runs on SQLite and on a real PostgreSQL (the ``store`` fixture's two params).

Events are counted in and out: nothing lost, nothing doubled, rollups equal to the figures recomputed from the
raw events, percentiles within a few percent of the exact ones.
"""

from __future__ import annotations

import math
import random
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

from peekapi_server.events import Event
from peekapi_server.store import Batch, Project, ReadQuery, Store, StoreError, open_store
from peekapi_server.store.base import DAY, HOUR
from peekapi_server.store.sql import TABLES

NOW = int(time.time())


def make_events(n: int, seed: int = 1, ts: int | None = None, spread: int = 3600) -> list[Event]:
    rng = random.Random(seed)
    base = (ts if ts is not None else NOW - spread) * 1000
    out = []
    for _ in range(n):
        status = rng.choice([200, 200, 200, 201, 204, 301, 400, 404, 500, 503])
        route = rng.choice(["/users/{id}", "/orders", "/health", "/items/{id}/parts"])
        out.append(
            Event(
                ts_ms=base + rng.randrange(spread * 1000),
                method=rng.choice(["GET", "POST"]),
                path=route.replace("{id}", str(rng.randrange(1000))),
                route=route,
                status_code=status,
                response_time_ms=rng.lognormvariate(3, 1),
                request_size=rng.randrange(500),
                response_size=rng.randrange(5000),
                consumer=rng.choice(["alice", "bob", "carol", None]),
                metadata=None,
            )
        )
    return out


def window(**kw: object) -> ReadQuery:
    return ReadQuery(start=NOW - 2 * DAY, end=NOW + 60, interval=HOUR, **kw)  # type: ignore[arg-type]


def exact_q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == store.migrate()


def test_projects(store: Store) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    p = store.create_project(name, raw_retention_days=3, endpoint_cap=7)
    assert store.get_project(name) == p
    assert (p.raw_retention_days, p.endpoint_cap) == (3, 7)
    assert name in [x.name for x in store.list_projects()]
    with pytest.raises(StoreError, match="already exists"):
        store.create_project(name)
    with pytest.raises(StoreError, match="no project"):
        store.get_project("nope-" + name)
    with pytest.raises(StoreError):
        store.create_project("  ")


def test_credentials_are_hashed_scoped_and_revocable(store: Store, project: Project) -> None:
    cred, key = store.create_credential(project.name, "ingest")
    tcred, token = store.create_credential(project.name, "read")
    assert key.startswith("ak_live_") and token.startswith("rt_")
    assert store.authenticate(key, "ingest") == project.id
    assert store.authenticate(token, "read") == project.id
    # an ingest key cannot read, a read token cannot ingest
    assert store.authenticate(key, "read") is None
    assert store.authenticate(token, "ingest") is None
    assert store.authenticate(key[:-1] + ("x" if key[-1] != "x" else "y"), "ingest") is None
    # only a hash is stored
    rows = list(store.iter_rows("SELECT secret_hash FROM credentials WHERE id = ?", (cred.id,)))  # type: ignore[attr-defined]
    assert rows and key not in str(rows[0]) and len(rows[0][0]) == 64
    assert [c.id for c in store.list_credentials(project.name, "ingest")] == [cred.id]
    revoked = store.revoke_credential(cred.prefix, "ingest")
    assert revoked.revoked_at is not None
    assert store.authenticate(key, "ingest") is None
    assert store.authenticate(token, "read") == project.id
    store.revoke_credential(str(tcred.id), "read")
    assert store.authenticate(token, "read") is None
    with pytest.raises(StoreError):
        store.revoke_credential("ak_live_nosuchkey", "ingest")


def test_every_event_is_stored_once_and_batch_ids_deduplicate(store: Store, project: Project) -> None:
    a, b, c = make_events(30, 1), make_events(20, 2), make_events(10, 3)
    r1 = store.write_batches(
        [Batch(project.id, "batch-a", a), Batch(project.id, "batch-a", a), Batch(project.id, None, c)]
    )
    assert r1 == (2, 1, 40)
    # a retry after a lost response: acknowledged, not stored again
    r2 = store.write_batches([Batch(project.id, "batch-a", a), Batch(project.id, "batch-b", b)])
    assert r2 == (1, 1, 20)
    assert store.count_events(project.id) == 60
    assert store.overview(project.id, window())["totals"]["requests"] == 60
    # the same batch id in another project is another batch
    other = store.create_project(f"other-{uuid.uuid4().hex[:8]}")
    assert store.write_batches([Batch(other.id, "batch-a", a)]).events_stored == 30


def test_concurrent_retries_of_one_batch_store_it_once(store: Store, project: Project) -> None:
    events = make_events(50, 9)
    results = []
    barrier = threading.Barrier(4)

    def send() -> None:
        barrier.wait()
        results.append(store.write_batches([Batch(project.id, "same-batch", events)]))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.batches_stored for r in results) == [0, 0, 0, 1]
    assert store.count_events(project.id) == 50


def test_rollups_equal_figures_recomputed_from_raw_events(store: Store, project: Project) -> None:
    events = make_events(2000, 4)
    for i in range(0, 2000, 100):
        store.write_batches([Batch(project.id, f"b{i}", events[i : i + 100])])
    totals = store.overview(project.id, window())["totals"]
    assert totals["requests"] == 2000
    assert totals["errors_4xx"] == sum(1 for e in events if 400 <= e.status_code < 500)
    assert totals["errors_5xx"] == sum(1 for e in events if e.status_code >= 500)
    assert totals["bytes_in"] == sum(e.request_size for e in events)
    assert totals["bytes_out"] == sum(e.response_size for e in events)
    latencies = [e.response_time_ms for e in events]
    assert totals["latency_min_ms"] == pytest.approx(min(latencies))
    assert totals["latency_max_ms"] == pytest.approx(max(latencies))
    assert totals["latency_avg_ms"] == pytest.approx(sum(latencies) / 2000)
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        assert abs(totals[key] - exact_q(latencies, q)) / exact_q(latencies, q) < 0.03
    series = store.overview(project.id, window())["series"]
    assert sum(p["requests"] for p in series) == 2000
    # minute series read the minute rollups, hour series the hour ones: both hold the same figures
    by_minute = store.overview(project.id, ReadQuery(start=NOW - 2 * DAY, end=NOW + 60, interval=60))["totals"]
    assert by_minute.pop("latency_avg_ms") == pytest.approx(totals.pop("latency_avg_ms"))
    assert by_minute == totals
    codes = {r["status_code"]: r["requests"] for r in store.status_codes(project.id, window())}
    assert codes == {s: sum(1 for e in events if e.status_code == s) for s in {e.status_code for e in events}}


def test_filters_match_raw_events(store: Store, project: Project) -> None:
    events = make_events(1500, 5)
    store.write_batches([Batch(project.id, None, events)])
    cases = [
        ({"endpoint": "/users/{id}"}, lambda e: e.route == "/users/{id}"),
        ({"method": "post"}, lambda e: e.method == "POST"),
        ({"endpoint": "/orders", "method": "GET"}, lambda e: e.route == "/orders" and e.method == "GET"),
        ({"consumer": "alice"}, lambda e: e.consumer == "alice"),
        ({"status_class": 5}, lambda e: 500 <= e.status_code < 600),
        ({"status_class": 4, "consumer": "bob"}, lambda e: 400 <= e.status_code < 500 and e.consumer == "bob"),
    ]
    for filters, keep in cases:
        chosen = [e for e in events if keep(e)]
        totals = store.overview(project.id, window(**filters))["totals"]
        assert totals["requests"] == len(chosen), filters
        assert totals["bytes_out"] == sum(e.response_size for e in chosen), filters
        p95 = exact_q([e.response_time_ms for e in chosen], 0.95)
        assert abs(totals["p95_ms"] - p95) / p95 < 0.03, filters
        assert len(store.recent_events(project.id, window(limit=1000, **filters))) == min(len(chosen), 1000)
    # an endpoint's hourly series reads the per-endpoint rollups, its minute series the per-dimension ones
    for filters in ({"endpoint": "/orders"}, {"method": "GET"}):
        hourly = store.overview(project.id, window(**filters))["totals"]
        minutely = store.overview(project.id, ReadQuery(start=NOW - 2 * DAY, end=NOW + 60, interval=60, **filters))
        assert minutely["totals"].pop("latency_avg_ms") == pytest.approx(hourly.pop("latency_avg_ms"))
        assert minutely["totals"] == hourly
    short = ReadQuery(start=NOW - 2 * 3600, end=NOW + 60)  # under a day: the per-dimension rows
    fine = {(r["method"], r["route"], r["requests"], r["p95_ms"]) for r in store.endpoints_table(project.id, short)}
    coarse = {
        (r["method"], r["route"], r["requests"], r["p95_ms"]) for r in store.endpoints_table(project.id, window())
    }
    assert fine == coarse and len(fine) == 8
    assert store.overview(project.id, window(endpoint="/nope"))["totals"]["requests"] == 0
    assert store.overview(project.id, window(consumer="nobody"))["totals"]["requests"] == 0


def test_endpoints_and_consumers_tables(store: Store, project: Project) -> None:
    events = make_events(800, 6)
    store.write_batches([Batch(project.id, None, events)])
    table = store.endpoints_table(project.id, window())
    assert sum(r["requests"] for r in table) == 800
    expected = {(e.method, e.route) for e in events}
    assert {(r["method"], r["route"]) for r in table} == expected
    assert [r["requests"] for r in table] == sorted((r["requests"] for r in table), reverse=True)
    row = next(r for r in table if (r["method"], r["route"]) == ("GET", "/orders"))
    assert row["requests"] == sum(1 for e in events if (e.method, e.route) == ("GET", "/orders"))
    consumers = {r["consumer"]: r["requests"] for r in store.consumers_table(project.id, window())}
    assert consumers == {c: sum(1 for e in events if e.consumer == c) for c in ("alice", "bob", "carol", None)}
    assert len(store.endpoints_table(project.id, window(limit=2))) == 2


def test_endpoint_cap_sends_the_overflow_to_other(store: Store) -> None:
    p = store.create_project(f"cap-{uuid.uuid4().hex[:8]}", endpoint_cap=3)
    events = [e._replace(route=f"/r{i % 6}", method="GET") for i, e in enumerate(make_events(60, 7))]
    store.write_batches([Batch(p.id, None, events[:30])])
    store.write_batches([Batch(p.id, None, events[30:])])
    table = {r["route"]: r["requests"] for r in store.endpoints_table(p.id, window())}
    assert len(table) == 4 and "(other)" in table
    assert sum(table.values()) == 60
    assert table["(other)"] == 30


def test_recent_events_page_newest_first_and_export_everything(store: Store, project: Project) -> None:
    events = make_events(120, 8)
    events[0] = events[0]._replace(metadata='{"k":"v"}')
    store.write_batches([Batch(project.id, None, events)])
    page = store.recent_events(project.id, window(limit=50))
    assert len(page) == 50
    assert [r["ts_ms"] for r in page] == sorted((r["ts_ms"] for r in page), reverse=True)
    exported = list(store.iter_events(project.id, window(), chunk=17))
    assert len(exported) == 120
    assert len({r["id"] for r in exported}) == 120
    assert sorted(r["ts_ms"] for r in exported) == sorted(e.ts_ms for e in events)
    assert any(r["metadata"] == '{"k":"v"}' for r in exported)


def test_compaction_keeps_figures_and_retention_removes_old_data(store: Store) -> None:
    now = int(time.time())
    p = store.create_project(f"ret-{uuid.uuid4().hex[:8]}", raw_retention_days=5, rollup_retention_days=60)
    old = make_events(300, 10, ts=now - 40 * DAY, spread=2 * DAY)  # beyond raw retention, compacts to days
    mid = make_events(300, 11, ts=now - 4 * DAY, spread=DAY)  # compacts to hours, raw kept
    ancient = make_events(50, 12, ts=now - 90 * DAY, spread=DAY)  # beyond rollup retention
    store.write_batches([Batch(p.id, "old", old), Batch(p.id, "mid", mid), Batch(p.id, "ancient", ancient)])
    span = ReadQuery(start=now - 100 * DAY, end=now + 60, interval=DAY)
    before = store.overview(p.id, span)["totals"]
    endpoints_before = {(r["method"], r["route"]): r["requests"] for r in store.endpoints_table(p.id, span)}
    # batch ids older than 50 s count as expired 100 s from now; the store may hold other tests' projects
    result = store.maintain(now + 100, batch_id_retention=50)
    assert result.events_deleted >= 350
    assert result.rollups_compacted > 0
    assert result.rollups_deleted > 0
    assert result.batch_ids_deleted >= 3
    assert store.count_events(p.id) == 300
    after = store.overview(p.id, span)["totals"]
    kept = old + mid
    assert before["requests"] == 650
    assert after["requests"] == 600
    assert after["errors_4xx"] == sum(1 for e in kept if 400 <= e.status_code < 500)
    assert after["errors_5xx"] == sum(1 for e in kept if e.status_code >= 500)
    assert after["bytes_in"] == sum(e.request_size for e in kept)
    assert after["bytes_out"] == sum(e.response_size for e in kept)
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        exact = exact_q([e.response_time_ms for e in kept], q)
        assert abs(after[key] - exact) / exact < 0.03
    endpoints_after = {(r["method"], r["route"]): r["requests"] for r in store.endpoints_table(p.id, span)}
    assert sum(endpoints_after.values()) == 600
    assert set(endpoints_after) <= set(endpoints_before)
    # a second run loses nothing, and aged data is held only as hour and day rows
    store.maintain(now + 100)
    assert store.count_events(p.id) == 300
    rows = store.iter_rows(  # type: ignore[attr-defined]
        "SELECT res, MIN(ts) FROM rollups WHERE project_id = ? GROUP BY res ORDER BY res", (p.id,)
    )
    assert [int(r[0]) for r in rows] == [HOUR, DAY]
    # after retention deleted its batch id, a re-sent batch is a new batch
    assert store.write_batches([Batch(p.id, "mid", mid[:1])]).batches_stored == 1


def test_retention_deletes_in_chunks(store: Store) -> None:
    p = store.create_project(f"chunks-{uuid.uuid4().hex[:8]}", raw_retention_days=1)
    old = make_events(250, 14, ts=int(time.time()) - 5 * DAY, spread=DAY)
    store.write_batches([Batch(p.id, None, old)])
    # several chunks, the last one partial
    assert store.maintain(int(time.time()), delete_chunk=100).events_deleted >= 250
    assert store.count_events(p.id) == 0


def test_compaction_preserves_percentiles(store: Store, project: Project) -> None:
    events = make_events(1000, 13, ts=NOW - 10 * DAY, spread=DAY)
    store.write_batches([Batch(project.id, None, events)])
    span = ReadQuery(start=NOW - 12 * DAY, end=NOW, interval=DAY)
    before = store.overview(project.id, span)["totals"]
    store.maintain(NOW, compact_minutes_after=DAY, compact_hours_after=5 * DAY)
    after = store.overview(project.id, span)["totals"]
    assert after.pop("latency_avg_ms") == pytest.approx(before.pop("latency_avg_ms"))  # float sums reorder
    assert after == before
    rows = list(store.iter_rows("SELECT DISTINCT res FROM rollups WHERE project_id = ?", (project.id,)))  # type: ignore[attr-defined]
    assert [int(r[0]) for r in rows] == [DAY]


def test_one_large_write_keeps_every_rollup_table_equal_to_the_raw_events(store: Store, project: Project) -> None:
    """Many batches in one call (as the writer groups them), with ids already stored, repeated within the call
    and not ASCII, and events crowded into a few minutes so rollup keys repeat inside one transaction."""
    events = make_events(4000, 11, ts=NOW - 300, spread=240)
    store.write_batches([Batch(project.id, "früh-0", events[:5])])
    batches = [Batch(project.id, f"früh-{i}", events[i * 5 : i * 5 + 5]) for i in range(700)]
    batches += [Batch(project.id, "früh-3", events[15:20]), Batch(project.id, None, events[3500:])]
    result = store.write_batches(batches)
    assert result == (700, 2, 699 * 5 + 500)
    assert store.count_events(project.id) == 4000
    store.maintain(NOW + HOUR)  # moves the views' mark past the events (no compaction: they are minutes old)
    e_in = "SELECT {cols}, {figures} FROM events WHERE project_id = ? GROUP BY {cols}"
    for table, (keys, values) in TABLES.items():
        res = 60 if table in ("rollups", "hist", "rollup_totals", "hist_totals") else HOUR  # the others: hours
        res = DAY if table.endswith("_days") else 60 if table.endswith("_minutes") else res
        res = 7 * DAY if table.endswith("_weeks") else res
        key_sql = {
            "endpoint_id": "endpoint_id",
            "consumer_id": "COALESCE(consumer_id, 0)",
            "status_code": "status_code",
            "bucket": "bucket",
            "method": "(SELECT e.method FROM endpoints e WHERE e.id = events.endpoint_id)",  # the endpoint's
        }
        group = ", ".join([f"(ts / {res * 1000}) * {res}", *(key_sql[k] for k in keys)])
        if values == ("n",):
            figures = "COUNT(*)"
        else:
            figures = (
                "COUNT(*), SUM(CASE WHEN status_code >= 400 AND status_code < 500 THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END), SUM(response_time_ms), MIN(response_time_ms),"
                " MAX(response_time_ms), SUM(request_size), SUM(response_size)"
            )
        expected = {
            tuple(r[: len(keys) + 1]): r[len(keys) + 1 :]
            for r in store.iter_rows(e_in.format(cols=group, figures=figures), (project.id,))
        }
        stored = {
            tuple(r[: len(keys) + 1]): r[len(keys) + 1 :]
            for r in store.iter_rows(
                f"SELECT {', '.join(('ts', *keys, *values))} FROM {table} WHERE project_id = ? AND res = ?",
                (project.id, res),
            )
        }
        assert stored.keys() == expected.keys(), table
        for key, figs in stored.items():
            assert [float(x) for x in figs] == pytest.approx([float(x) for x in expected[key]]), (table, key)


def test_a_new_sqlite_database_is_private_to_its_owner(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'state' / 'peekapi.db'}")
    try:
        s.create_project("private")
    finally:
        s.close()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for path in (tmp_path / "state").iterdir():  # the database, and its -wal and -shm files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_credential_is_revoked_by_the_start_of_its_prefix_when_that_names_one(store: Store, project: Project) -> None:
    first, _ = store.create_credential(project.name, "ingest")
    second, _ = store.create_credential(project.name, "ingest")
    for short in ("", "ak_live_", "ak_live_abc"):  # an unset shell variable must not revoke anything
        with pytest.raises(StoreError, match="at least 12 characters"):
            store.revoke_credential(short, "ingest")
    assert store.revoke_credential(first.prefix[:15], "ingest").id == first.id
    assert store.revoke_credential(second.prefix, "ingest").id == second.id  # the whole prefix, as listed
    with pytest.raises(StoreError, match="no ingest key matches"):
        store.revoke_credential("ak_live_zzzzz", "ingest")
