"""The main job, end to end on one machine: SDK -> loopback endpoint, with counts in and out.

Tracks a burst of events through a real client to a loopback HTTP endpoint and prints what arrived and the
client's counters. (Grows into: collector on SQLite + example app + dashboard read API as those land.)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.ingest import IngestServer

from peekapi import PeekApiClient


def main() -> int:
    sink = IngestServer().start()
    with tempfile.TemporaryDirectory() as spool:
        client = PeekApiClient({"api_key": "ak_demo", "endpoint": sink.url, "storage_path": spool})
        started = time.perf_counter()
        count = 10_000
        for i in range(count):
            client.track(
                {
                    "method": "GET",
                    "path": f"/users/{i % 50}",
                    "status_code": 200 if i % 10 else 500,
                    "response_time_ms": 1.0 + i % 7,
                }
            )
        client.shutdown(10)
        elapsed = time.perf_counter() - started
    received = sink.events()
    sink.stop()
    print(
        f"tracked {count} events, endpoint received {len(received)} in {len(sink.accepted())} batches ({elapsed:.2f} s)"
    )
    print("client stats:", client.stats())
    return 0 if len(received) == count else 1


if __name__ == "__main__":
    raise SystemExit(main())
