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


def test_a_running_collector_applies_retention_and_compaction(db_url: str) -> None:
    c = start_collector(db_url, maintenance_interval_seconds=0.2)
    try:
        p = c.store.create_project(f"{c.project.name}-ret", raw_retention_days=3)
        c.store.write_batches([Batch(p.id, None, [old_event(10)] * 4 + [old_event(0.5)] * 2)])
        assert c.store.count_events(p.id) == 6
        deadline = time.monotonic() + 15
        while c.store.count_events(p.id) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.store.count_events(p.id) == 2
        rows = c.store.iter_rows(  # type: ignore[attr-defined]
            "SELECT res, SUM(n) FROM rollup_totals WHERE project_id = ? GROUP BY res ORDER BY res", (p.id,)
        )
        assert [(int(r), int(n)) for r, n in rows] == [(60, 2), (86400, 4)]
    finally:
        c.stop()
        c.store.close()
