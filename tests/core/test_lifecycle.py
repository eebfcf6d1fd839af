"""Bounded memory, shutdown, flush and thread-safety, observed at the wire and in stats()."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from peekapi import PeekApiClient
from tests.support.ingest import Answer, IngestServer
from tests.support.reliability import report
from tests.support.wait import eventually


def event(i: int) -> dict[str, Any]:
    return {"method": "GET", "path": f"/m/{i}", "status_code": 200, "response_time_ms": 1.0}


def test_shutdown_delivers_every_batch_not_just_one(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 10, "flush_interval": 60})
    for i in range(95):
        client.track(event(i))
    assert client.shutdown(5)
    assert len(ingest.events()) == 95
    assert len(ingest.all_accepted_events()) == 95
    assert client.stats()["sent"] == 95


def test_shutdown_is_idempotent_and_later_tracks_are_counted(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient(options)
    client.track(event(1))
    assert client.shutdown(3)
    assert client.shutdown(3)
    client.track(event(2))
    client.shutdown(1)
    assert len(ingest.events()) == 1
    assert client.stats()["dropped"]["closed"] == 1
    assert client.flush(1) is False  # the event tracked after shutdown was dropped, not delivered


def test_shutdown_deadline_spools_what_a_slow_collector_did_not_take(
    ingest: IngestServer, options: dict[str, Any]
) -> None:
    ingest.default(Answer(200, delay=1.5))
    client = PeekApiClient({**options, "batch_size": 10, "flush_interval": 60, "request_timeout": 5})
    for i in range(50):
        client.track(event(i))
    started = time.monotonic()
    client.shutdown(0.5)
    assert time.monotonic() - started < 3.5
    stats = client.stats()
    report(
        "collector answering in 1.5 s, shutdown(0.5)",
        tracked=50,
        sent=stats["sent"],
        spooled=stats["spooled"],
        dropped=stats["dropped_total"],
    )
    assert stats["spooled"] >= 40
    assert stats["spooled"] + stats["sent"] == 50
    assert stats["dropped_total"] == 0
    # The spooled events, and the one in flight, reach the collector from the next process.
    ingest.default(200)
    again = PeekApiClient(options)
    events = ingest.wait_for(50, timeout=10)
    report(
        "next start", received=len({e["path"] for e in events}), doubled=len(events) - len({e["path"] for e in events})
    )
    assert sorted(e["path"] for e in events) == sorted(f"/m/{i}" for i in range(50))
    again.shutdown(2)


def test_memory_is_bounded_and_overflows_to_the_spool(ingest: IngestServer, options: dict[str, Any]) -> None:
    ingest.default(Answer(503))
    client = PeekApiClient(
        {
            **options,
            "batch_size": 10,
            "max_buffer_size": 50,
            "flush_interval": 0.05,
            "retry_base_delay": 0.2,
        }
    )
    for i in range(400):
        client.track(event(i))
        if i % 50 == 0:
            time.sleep(0.01)
    assert eventually(lambda: client.stats()["spooled"] > 0)
    stats = client.stats()
    assert stats["queue_depth"] + stats["in_flight"] <= 50
    client.shutdown(3)
    stats = client.stats()
    report(
        "503 throughout, memory of 50",
        tracked=stats["tracked"],
        sent=stats["sent"],
        spooled=stats["spooled"],
        dropped_buffer_full=stats["dropped"]["buffer_full"],
        dropped=stats["dropped_total"],
    )
    assert stats["tracked"] == 400
    assert stats["spooled"] + stats["sent"] + stats["dropped_total"] == 400
    assert stats["dropped"]["buffer_full"] == stats["dropped_total"]
    # Everything that was not dropped for a full memory is delivered by the next process.
    ingest.default(200)
    again = PeekApiClient(options)
    received = len(ingest.wait_for(400 - stats["dropped_total"], timeout=15))
    report("next start", received=received)
    assert received == 400 - stats["dropped_total"]
    again.shutdown(2)


def test_drops_when_memory_and_spool_are_both_full(options: dict[str, Any]) -> None:
    client = PeekApiClient(
        {
            **options,
            "endpoint": "http://127.0.0.1:9/e",
            "batch_size": 10,
            "max_buffer_size": 20,
            "max_storage_bytes": 1000,
            "flush_interval": 0.05,
        }
    )
    for i in range(300):
        client.track(event(i))
    client.shutdown(3)
    stats = client.stats()
    report(
        "collector down, memory 20, spool 1,000 bytes",
        tracked=stats["tracked"],
        sent=stats["sent"],
        spooled=stats["spooled"],
        dropped_spool_full=stats["dropped"]["spool_full"],
        dropped=stats["dropped_total"],
    )
    assert stats["tracked"] == 300
    assert stats["sent"] == 0
    assert stats["spooled"] + stats["dropped_total"] == 300
    assert stats["dropped"]["spool_full"] > 0


def test_track_from_many_threads_loses_nothing(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 50})

    def work(t: int) -> None:
        for i in range(500):
            client.track({**event(i), "path": f"/t/{t}/{i}"})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert client.flush(10)
    events = ingest.events()
    report(
        "8 threads x 500",
        tracked=4000,
        received=len({e["path"] for e in events}),
        doubled=len(events) - len({e["path"] for e in events}),
    )
    assert len(events) == 4000
    assert len({e["path"] for e in events}) == 4000
    assert len(ingest.all_accepted_events()) == 4000
    client.shutdown(2)


def test_track_never_raises(options: dict[str, Any]) -> None:
    client = PeekApiClient(options)

    class Evil(dict[str, Any]):
        def copy(self) -> dict[str, Any]:
            raise RuntimeError("boom")

        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

    client.track(Evil())
    client.track(None)  # type: ignore[arg-type]
    assert client.flush(3) is False  # both dropped
    report(
        "2 unreadable events", tracked=client.stats()["tracked"], dropped_invalid=client.stats()["dropped"]["invalid"]
    )
    assert client.stats()["dropped"]["invalid"] == 2
    client.shutdown(1)


def test_stats_snapshot_shape(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient(options)
    for i in range(3):
        client.track(event(i))
    client.flush(3)
    stats = client.stats()
    assert stats["tracked"] == 3 and stats["sent"] == 3 and stats["sent_batches"] == 1
    assert stats["queue_depth"] == 0 and stats["in_flight"] == 0
    assert set(stats["dropped"]) >= {"invalid", "too_large", "buffer_full", "rejected", "spool_full"}
    client.shutdown(1)


def test_a_slow_collector_makes_memory_overflow_to_the_spool_not_drop(
    ingest: IngestServer, options: dict[str, Any]
) -> None:
    ingest.default(Answer(200, delay=0.05))  # healthy, but 20 batches/s at most
    client = PeekApiClient({**options, "batch_size": 10, "max_buffer_size": 1000, "flush_interval": 60})
    for i in range(3000):
        client.track(event(i))
        if i % 10 == 0:
            time.sleep(0.001)
    assert eventually(lambda: client.stats()["spooled"] > 0)
    report(
        "collector answering in 50 ms",
        tracked=3000,
        spooled=client.stats()["spooled"],
        dropped=client.stats()["dropped_total"],
    )
    assert client.stats()["dropped_total"] == 0
    # Files are written in bulk, not one per batch.
    files = list(Path(options["storage_path"]).glob("*.jsonl"))
    assert 0 < len(files) < client.stats()["spooled"] / 10
    ingest.default(200)
    assert client.flush(20) is False  # some went to the spool (re-sent from there, below)
    received = len(ingest.wait_for(3000, timeout=20))
    report("back to full speed", received=received, resent=len(ingest.all_accepted_events()) - len(ingest.events()))
    assert received == 3000
    assert eventually(lambda: client.stats()["sent"] == 3000)
    assert len(ingest.all_accepted_events()) == 3000
    client.shutdown(2)
