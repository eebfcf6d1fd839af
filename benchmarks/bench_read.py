"""Read-API latency over 10 million stored events: every read query x one-dimension filter, over HTTP.

    python benchmarks/bench_read.py                         # SQLite (a temporary file), 10M events
    python benchmarks/bench_read.py --keep /tmp/read.json   # keeps the data (/tmp/read.json.db); reused next time
    python benchmarks/bench_read.py --events 1000000        # a quicker run
    python benchmarks/bench_read.py --database "$PEEKAPI_TEST_POSTGRES_URL" --keep /tmp/read-pg.json

Generates the events straight into the store with SQL (30 days, 50 endpoints, all GET, 100 consumers, 5 % 5xx,
a long-tailed latency), builds their rollups the way the collector does (minute rollups for the last day,
hourly ones to 7 days, daily ones before: as the maintenance job's compaction leaves them), then starts
`peekapi serve` (which migrates an older schema first) and times read requests over loopback with keep-alive:
the overview (30 days in days, 7 days in hours, 24 hours in hours, 6 hours in minutes), the endpoints and
consumers tables, the status codes and the recent events (30 days and 24 hours each), each unfiltered and
filtered by endpoint, consumer, method and status class; windows end where the data ends. Prints a table of
medians (p90) over --repeat requests per cell (fewer once a cell has taken --budget seconds, at least 3).
Bounded: data generation is linear in --events (a few minutes for 10M on a 2-core machine), the timing at most
60 cells x (--budget + one request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

from peekapi_server import histogram
from peekapi_server.store import open_store
from peekapi_server.store.base import DAY, HOUR, MINUTE
from peekapi_server.store.sql import EVENT_COLUMNS, SqlStore

ENDPOINTS = 50
CONSUMERS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate_sql(dialect: str) -> str:
    """One day's events: ``n`` rows spread over ``[start, start + span)`` ms (parameters in order below)."""
    bucket = (
        f"CASE WHEN lat > {histogram.MIN_MS} THEN"
        f" LEAST(CAST(FLOOR(ln(lat / {histogram.MIN_MS}) / ln({histogram.GAMMA})) AS INTEGER) + 1,"
        f" {histogram.MAX_BUCKET}) ELSE 0 END"
    )
    if dialect == "sqlite":
        bucket = bucket.replace("LEAST(", "min(").replace("FLOOR(", "(")
        rnd = "(abs(random()) % 1000000)"
        seq = "WITH RECURSIVE seq(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM seq WHERE x < ? - 1)"
        src = "FROM seq"
    else:
        rnd = "(floor(random() * 1000000)::bigint)"
        seq = ""
        src = "FROM generate_series(0, ? - 1) AS seq(x)"
    inner = (
        f"SELECT x, {rnd} AS r1, {rnd} AS r2, {rnd} AS r3, {rnd} AS r4,"
        f" 1.0 + 20.0 * exp(2.0 * (({rnd} + {rnd} + {rnd}) / 3000000.0 - 0.5) * 3.0) AS lat {src}"
    )
    return (
        f"{seq} INSERT INTO events ({EVENT_COLUMNS})"
        f" SELECT ?, ? + CAST(x AS BIGINT) * ? / ?, ? + r1 % {ENDPOINTS},"
        f" CASE WHEN r2 % 10 = 0 THEN NULL ELSE ? + r2 % {CONSUMERS} END, 'GET', '/generated',"
        " CASE r3 % 20 WHEN 0 THEN 500 WHEN 1 THEN 404 WHEN 2 THEN 400 WHEN 3 THEN 201 ELSE 200 END,"
        f" lat, r4 % 2000, r4 % 20000, NULL, {bucket} FROM ({inner}) AS g"
    )


def populate(store: SqlStore, project_id: int, events: int, start_all: int) -> None:
    dialect = store.dialect
    with store.transaction() as tx:
        for i in range(ENDPOINTS):
            tx.run(
                "INSERT INTO endpoints (project_id, method, route) VALUES (?, 'GET', ?)", (project_id, f"/r{i}/{{id}}")
            )
        for i in range(CONSUMERS):
            tx.run("INSERT INTO consumers (project_id, name) VALUES (?, ?)", (project_id, f"consumer-{i}"))
        e_lo = int(tx.rows("SELECT MIN(id) FROM endpoints WHERE project_id = ?", (project_id,))[0][0])
        c_lo = int(tx.rows("SELECT MIN(id) FROM consumers WHERE project_id = ?", (project_id,))[0][0])
    sql = generate_sql(dialect)
    per_day = events // 30
    for day in range(30):
        t0 = time.time()
        day_start = (start_all + day * DAY) * 1000
        n = per_day if day < 29 else events - 29 * per_day
        # as the maintenance job leaves them: minute rows for 1 day, hourly ones to 7 days, daily ones before
        res = MINUTE if day >= 29 else HOUR if day >= 23 else DAY
        with store.transaction() as tx:
            params = (project_id, day_start, DAY * 1000, n, e_lo, c_lo)
            tx.run(sql, (n, *params) if dialect == "sqlite" else (*params, n))  # where the row count goes
            store.rollup_from(
                tx,
                "events WHERE project_id = ? AND ts >= ? AND ts < ?",
                (project_id, day_start, day_start + DAY * 1000),
                res,
            )
        print(f"  day {day + 1:2}/30: {n:,} events in {time.time() - t0:.1f} s", flush=True)
    refresh = getattr(store, "refresh_views", None)
    if refresh is not None:  # schema version 4 on: the views up to this hour, as the maintenance job does
        t0 = time.time()
        with store.transaction() as tx:
            refresh(tx, project_id, int(time.time()))
        print(f"  views filled in {time.time() - t0:.1f} s", flush=True)


def get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
    return elapsed, json.loads(body)


#: The filters of the matrix: one dimension each (every generated event is a GET, so the method filter keeps
#: them all: the worst case for it).
FILTERS: dict[str, str] = {
    "-": "",
    "endpoint": "&endpoint=" + urllib.parse.quote("/r7/{id}"),
    "consumer": "&consumer=consumer-7",
    "method": "&method=GET",
    "status": "&status_class=5xx",
}


def queries(end: int) -> dict[str, str]:
    """Query name -> path without filters; every window ends where the generated data ends (``end``)."""
    month = urllib.parse.urlencode({"from": end - 30 * DAY, "to": end})
    week = urllib.parse.urlencode({"from": end - 7 * DAY, "to": end})
    day = urllib.parse.urlencode({"from": end - DAY, "to": end})
    six = urllib.parse.urlencode({"from": end - 6 * HOUR, "to": end})
    return {
        "overview 30d (days)": f"/v1/overview?{month}",
        "overview 7d (hours)": f"/v1/overview?{week}",
        "overview 24h (hours)": f"/v1/overview?{day}",
        "overview 6h (minutes)": f"/v1/overview?{six}",
        "endpoints 30d": f"/v1/endpoints?{month}",
        "endpoints 24h": f"/v1/endpoints?{day}",
        "consumers 30d": f"/v1/consumers?{month}",
        "consumers 24h": f"/v1/consumers?{day}",
        "status-codes 30d": f"/v1/status-codes?{month}",
        "status-codes 24h": f"/v1/status-codes?{day}",
        "recent 30d": f"/v1/events/recent?{month}&limit=50",
        "recent 24h": f"/v1/events/recent?{day}&limit=50",
    }


def generate(url: str, events: int) -> dict[str, object]:
    """Creates a project with ``events`` generated events in the database at ``url``; returns what a later run
    needs to read them (database URL, read token, where the data ends, the event count)."""
    store = open_store(url)
    assert isinstance(store, SqlStore)
    project = store.create_project(f"read-{uuid.uuid4().hex[:8]}", raw_retention_days=31)
    _, token = store.create_credential(project.name, "read")
    start_all = int(time.time()) // DAY * DAY - 30 * DAY  # whole days, so daily rollups fall inside the range
    t0 = time.time()
    print(f"generating {events:,} events over 30 days into {url.split(':', 1)[0]} ...", flush=True)
    populate(store, project.id, events, start_all)
    stored = store.count_events(project.id)
    print(f"stored {stored:,} events in {time.time() - t0:.0f} s", flush=True)
    store.close()
    return {"database": url, "token": token, "end": start_all + 30 * DAY, "events": stored}


def serve(url: str) -> tuple[subprocess.Popen[bytes], int]:
    """Starts ``peekapi serve`` on ``url`` (which migrates the schema first) and waits until it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "peekapi.cli", "serve", "--port", str(port), "--database", url]
    server = subprocess.Popen([*cmd, "--log-level", "warning"], env={**os.environ})
    deadline = time.time() + 1800  # a migration that backfills new rollups from 10M events' rows takes a while
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return server, port
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.terminate()
                raise
            time.sleep(0.2)


def time_matrix(port: int, state: dict[str, object], repeat: int, budget: float, only: str | None) -> None:
    """Times every query x filter: the median and p90 of ``repeat`` requests (fewer when a cell has used
    ``budget`` seconds, at least 3) after one warm-up request."""
    token = str(state["token"])
    end = int(str(state["end"]))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    _, body = get(conn, queries(end)["overview 30d (days)"], token)
    totals = body["totals"]
    assert isinstance(totals, dict)
    print(
        f"overview totals: {totals['requests']:,} requests,"
        f" p50 {totals['p50_ms']:.1f} ms, p99 {totals['p99_ms']:.1f} ms"
    )
    if totals["requests"] != state["events"]:
        raise RuntimeError(f"overview counted {totals['requests']} of {state['events']} events")
    print(
        f"\nmedian (p90) ms over up to {repeat} requests; filters: " + ", ".join(f"{k}{v}" for k, v in FILTERS.items())
    )
    print(f"| query | {' | '.join(FILTERS)} |")
    print(f"|---|{'---:|' * len(FILTERS)}")
    worst = 0.0
    for name, path in queries(end).items():
        if only and only not in name:
            continue
        cells = []
        for suffix in FILTERS.values():
            get(conn, path + suffix, token)  # warm-up
            times: list[float] = []
            t0 = time.time()
            while len(times) < repeat and (len(times) < 3 or time.time() - t0 < budget):
                times.append(get(conn, path + suffix, token)[0] * 1000)
            times.sort()
            median = statistics.median(times)
            worst = max(worst, median)
            cells.append(f"{median:.1f} ({times[int(0.9 * (len(times) - 1))]:.0f})")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    conn.close()
    print(f"\nslowest median: {worst:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file, or PATH.db with --keep)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events to store (10,000,000)")
    parser.add_argument("--repeat", type=int, default=21, help="requests per query and filter (21)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per cell after 3 requests (5)")
    parser.add_argument("--only", help="time only the queries whose name contains this")
    parser.add_argument(
        "--keep",
        metavar="PATH",
        help="keep the generated data and note how to read it in PATH (JSON); if PATH exists, reuse that data",
    )
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="peekapi-bench-")
    try:
        state: dict[str, object]
        if args.keep and os.path.exists(args.keep):
            with open(args.keep) as f:
                state = json.load(f)
            print(f"reusing {state['events']:,} events in {str(state['database']).split(':', 1)[0]} ({args.keep})")
        else:
            default = f"sqlite:///{os.path.abspath(args.keep)}.db" if args.keep else f"sqlite:///{tmp}/read.db"
            state = generate(args.database or default, args.events)
            if args.keep:
                with open(args.keep, "w") as f:
                    json.dump(state, f)
        t0 = time.time()
        server, port = serve(str(state["database"]))
        print(f"collector up in {time.time() - t0:.1f} s")
        try:
            time_matrix(port, state, args.repeat, args.budget, args.only)
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the temporary SQLite database (about 1 GB at 10M events)


if __name__ == "__main__":
    main()
