"""The maintenance job runs inside a collector: retention and compaction happen without anyone asking."""

from __future__ import annotations

import time

from peekapi_server.events import Event
from peekapi_server.store import Batch
from peekapi_server.store.base import DAY
from tests.server.support import start_collector


def old_event(age_days: float) -> Event:
    ts = int((time.time() - age_days * DAY) * 1000)
    return Event(ts, "GET", "/a", "/a", 200, 5.0, 0, 10, None, None)


def rollup_totals(store: object, project_id: int) -> list[tuple[int, int]]:
    rows = store.iter_rows(  # type: ignore[attr-defined]
        "SELECT res, SUM(n) FROM rollup_totals WHERE project_id = ? GROUP BY res ORDER BY res", (project_id,)
    )
    return [(int(r), int(n)) for r, n in rows]


def test_a_running_collector_applies_retention_and_compaction(db_url: str) -> None:
    c = start_collector(db_url, maintenance_interval_seconds=0.2)
    try:
        p = c.store.create_project(f"{c.project.name}-ret", raw_retention_days=3)
        c.store.write_batches([Batch(p.id, None, [old_event(10)] * 4 + [old_event(0.5)] * 2)])
        assert c.store.count_events(p.id) == 6
        # deletion and compaction commit in separate transactions: wait for a run to have done both
        deadline = time.monotonic() + 60  # a run over every project of a database other tests filled, on a busy machine
        while time.monotonic() < deadline:
            count, totals = c.store.count_events(p.id), rollup_totals(c.store, p.id)
            if count == 2 and totals == [(60, 2), (86400, 4)]:
                break
            time.sleep(0.05)
        assert count == 2
        assert totals == [(60, 2), (86400, 4)]
    finally:
        c.stop()
        c.store.close()
