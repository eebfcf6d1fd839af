"""Scale-out: several collectors on one PostgreSQL database, the same batches sent to all of them at once."""

from __future__ import annotations

import threading

import pytest

from tests.server.support import Collector, event, start_collector


@pytest.mark.postgres
def test_collectors_sharing_postgresql_store_each_batch_once(pg_url: str) -> None:
    first = start_collector(pg_url)
    second = start_collector(pg_url, like=first)
    collectors = [first, second]
    try:
        batches = [[event(path=f"/items/{i}/{j}", status_code=200 + j % 3) for j in range(50)] for i in range(40)]
        errors: list[str] = []

        def send(c: Collector, start: int) -> None:
            # each collector gets every batch (in a different order): every batch arrives twice, concurrently
            for k in range(len(batches)):
                i = (start + k) % len(batches)
                r = c.post(batches[i], {"x-peekapi-batch-id": f"shared-{i}"})
                if r.status != 200 or r.json()["accepted"] != 50:
                    errors.append(f"{c.url}: {r.status}")

        threads = [threading.Thread(target=send, args=(c, n * 20)) for n, c in enumerate(collectors)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in collectors:
            c.drain()
        assert errors == []
        assert first.store.count_events(first.project.id) == 40 * 50
        overview = second.get("/v1/overview").json()["totals"]
        assert overview["requests"] == 2000
        codes = {r["status_code"]: r["requests"] for r in first.get("/v1/status-codes").json()["status_codes"]}
        assert codes == {200: 680, 201: 680, 202: 640}
    finally:
        for c in collectors:
            c.stop()
            c.store.close()
