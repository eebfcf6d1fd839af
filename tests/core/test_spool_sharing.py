"""Several processes sharing one spool directory (gunicorn workers): through an outage, a restart, a crash.

Spool files are claimed by an atomic rename, so two processes never send the same spooled batch; a file is
deleted only when every batch in it was acknowledged. Checked at the wire, event id by event id.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.children import Child, spool_files
from tests.support.ingest import Answer, IngestServer
from tests.support.reliability import report

pytestmark = pytest.mark.slow

OUTAGE = {"batch_size": 10, "flush_interval": 60, "retry_base_delay": 0.01}


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["metadata"]["id"] for e in events]


def series(tag: str, count: int) -> set[str]:
    return {f"{tag}-{i}" for i in range(count)}


def ready_files(storage: Path) -> list[Path]:
    return [p for p in spool_files(storage) if p.name.endswith(".jsonl")]


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spawn(ingest: IngestServer, storage: Path) -> Iterator[Any]:
    started: list[Child] = []
    assert ingest._server is not None  # answer without Nagle's 40 ms delay (see test_process.without_nagle)
    ingest._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]

    def start(name: str, *args: str, env: dict[str, str] | None = None, **options: Any) -> Child:
        child = Child(name, *args, endpoint=ingest.url, storage=storage, options=options, env=env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def spool_through_an_outage(spawn: Any, tags: str, count: int, chunk: int, **options: Any) -> None:
    """One process per tag tracks ``count`` events while the collector answers 503; all of them end spooled."""
    writers = [spawn("outage", tag, str(count), str(chunk), "shutdown", **OUTAGE, **options) for tag in tags]
    for writer in writers:
        stats = writer.expect_json("stats", timeout=30)
        assert writer.expect("shutdown") == "True"
        assert stats["spooled"] == count, stats
        assert stats["sent"] == 0 and stats["dropped_total"] == 0, stats
        assert writer.wait(10) == 0


def test_three_processes_share_one_spool_through_an_outage_and_a_restart(
    spawn: Any, ingest: IngestServer, storage: Path
) -> None:
    ingest.default(Answer(503))
    spool_through_an_outage(spawn, "abc", 500, 10)
    files = ready_files(storage)
    assert len(files) >= 100, len(files)  # many files: the recoverers below really compete for claims
    assert spool_files(storage) == files  # no claim or temporary file left behind
    assert ingest.accepted() == []
    tried = {r.batch_id for r in ingest.requests}

    # The collector is back; three processes start together on the same spool.
    ingest.default(Answer(200, delay=0.002))
    recoverers = [spawn("recover", "go", flush_interval=60) for _ in range(3)]
    for recoverer in recoverers:
        recoverer.expect("waiting")
    for recoverer in recoverers:
        recoverer.send("go")
    recovered = [recoverer.expect_json("stats", timeout=30)["recovered"] for recoverer in recoverers]
    for recoverer in recoverers:
        assert recoverer.wait(10) == 0
    print(f"\nevents recovered by each of the three processes: {recovered}")

    expected = series("a", 500) | series("b", 500) | series("c", 500)
    on_the_wire = ids(ingest.all_accepted_events())
    doubled = sorted(k for k, n in Counter(on_the_wire).items() if n > 1)
    report(
        "3 writers, then 3 recoverers",
        tracked=len(expected),
        spool_files=len(files),
        received=len(expected & set(on_the_wire)),
        lost=len(expected - set(on_the_wire)),
        doubled=len(on_the_wire) - len(set(on_the_wire)),
        recoverers_that_sent=sum(1 for n in recovered if n),
    )
    assert not doubled, f"sent twice: {doubled[:10]}"
    assert set(on_the_wire) == expected
    assert sorted(ids(ingest.events())) == sorted(on_the_wire)
    batch_ids = [r.batch_id for r in ingest.accepted()]
    assert len(batch_ids) == len(set(batch_ids)), "a spooled batch was sent by two processes"
    assert set(batch_ids) <= tried  # the same batch id as in the outage, after the trip through the spool
    assert sum(recovered) == len(expected)
    assert sum(1 for n in recovered if n) >= 2, recovered  # they did share the work
    assert spool_files(storage) == []


def test_running_processes_recover_a_shared_spool_once_the_collector_is_back(
    spawn: Any, ingest: IngestServer, storage: Path
) -> None:
    ingest.default(Answer(503))
    workers = {tag: spawn("worker", **OUTAGE) for tag in "abc"}
    for worker in workers.values():
        worker.expect("ready")
    for tag, worker in workers.items():
        worker.send(f"track {tag} 0 300 10")
    for worker in workers.values():
        stats = worker.expect_json("stats", timeout=30)
        assert stats["spooled"] == 300 and stats["sent"] == 0, stats
    assert len(ready_files(storage)) >= 60

    # The collector is back: the next live delivery of each process sets it recovering the shared spool, while
    # it keeps serving traffic.
    ingest.default(Answer(200, delay=0.002))
    for tag, worker in workers.items():
        worker.send(f"track {tag} 300 100 10")
    for worker in workers.values():
        worker.expect_json("stats", timeout=30)
    deadline = time.monotonic() + 20
    while spool_files(storage) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(storage) == [], "the spool was not recovered by the running processes"
    recovered = []
    for worker in workers.values():
        worker.send("shutdown")
        assert worker.expect("shutdown") == "True"
        recovered.append(worker.expect_json("stats")["recovered"])
        assert worker.wait(10) == 0
    print(f"\nevents recovered by each running process: {recovered}")

    expected = series("a", 400) | series("b", 400) | series("c", 400)
    on_the_wire = ids(ingest.all_accepted_events())
    doubled = sorted(k for k, n in Counter(on_the_wire).items() if n > 1)
    report(
        "3 running processes",
        tracked=len(expected),
        recovered=sum(recovered),
        received=len(expected & set(on_the_wire)),
        lost=len(expected - set(on_the_wire)),
        doubled=len(on_the_wire) - len(set(on_the_wire)),
    )
    assert not doubled, f"sent twice: {doubled[:10]}"
    assert set(on_the_wire) == expected
    batch_ids = [r.batch_id for r in ingest.accepted()]
    assert len(batch_ids) == len(set(batch_ids))
    assert sum(recovered) == 900


def test_an_idle_process_recovers_its_spool_periodically_once_the_collector_is_back(
    spawn: Any, ingest: IngestServer, storage: Path
) -> None:
    ingest.default(Answer(503))
    worker = spawn("worker", env={"CHILD_RECOVERY_INTERVAL": "0.5"}, **OUTAGE)
    worker.expect("ready")
    worker.send("track i 0 100 10")
    assert worker.expect_json("stats")["spooled"] == 100
    ingest.default(Answer(200))  # back; the process gets no more traffic of its own
    ingest.wait_for(100, timeout=4)
    worker.send("shutdown")
    worker.expect("shutdown")
    recovered = worker.expect_json("stats")["recovered"]
    on_the_wire = ids(ingest.all_accepted_events())
    report(
        "idle process, collector back",
        tracked=100,
        recovered=recovered,
        received=len(set(on_the_wire)),
        doubled=len(on_the_wire) - len(set(on_the_wire)),
    )
    assert recovered == 100
    assert worker.wait(10) == 0
    assert sorted(ids(ingest.all_accepted_events())) == sorted(series("i", 100))
    assert spool_files(storage) == []


def test_a_claim_left_by_a_killed_process_is_taken_over(spawn: Any, ingest: IngestServer, storage: Path) -> None:
    ingest.default(Answer(503))
    # One flush of 300 events: the first batch is tried 5 times and spooled, the 29 waiting behind it go to
    # disk together: a spool file of many batches (all 30 batched at once).
    spool_through_an_outage(spawn, "k", 300, 300)
    assert max(len(p.read_bytes().splitlines()) for p in ready_files(storage)) > 5

    ingest.default(Answer(200, delay=0.1))
    first = spawn("recover", flush_interval=60)
    first.expect("started")
    ingest.wait_for(60, timeout=10)  # part of the big file is delivered, the rest still claimed
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert any(".claim-" in p.name for p in spool_files(storage))
    delivered_before = {r.batch_id for r in ingest.accepted()}

    ingest.default(Answer(200))
    second = spawn("recover", flush_interval=60)
    second.expect("done")
    assert second.wait(10) == 0

    assert sorted(ids(ingest.events())) == sorted(series("k", 300))  # exactly once at a deduplicating collector
    # On the wire, the dead process's unacknowledged claim is re-sent: only batches already delivered come
    # again, each under its own batch id, so the collector can tell.
    counts = Counter(r.batch_id for r in ingest.accepted())
    print(f"\nbatches re-sent after the kill (same batch id): {sum(counts.values()) - len(counts)}")
    deduplicated = ids(ingest.events())
    report(
        "claim of a SIGKILLed process taken over",
        tracked=300,
        received=len(set(deduplicated)),
        doubled=len(deduplicated) - len(set(deduplicated)),
        resent_batches=sum(counts.values()) - len(counts),
    )
    assert {b for b, n in counts.items() if n > 1} <= delivered_before
    assert spool_files(storage) == []


def test_corrupt_and_truncated_lines_are_skipped_counted_and_the_rest_recovered(
    spawn: Any, ingest: IngestServer, storage: Path
) -> None:
    ingest.default(Answer(503))
    spool_through_an_outage(spawn, "g", 300, 300)
    big = max(ready_files(storage), key=lambda p: len(p.read_bytes().splitlines()))
    lines = big.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    cut = lines[-1]
    lost = {i for i in series("g", 300) if f'"{i}"'.encode() in cut}
    assert len(lost) == 10
    damaged = [
        lines[0],
        b"\xff\xfe not json at all \x00\n",  # garbage bytes
        *lines[1:2],
        b'{"v":1,"id":"0123","events":"not a list"}\n',  # valid JSON, not a batch
        *lines[2:-1],
        cut[: len(cut) // 2],  # the last line cut short, as by a crash mid-write
    ]
    big.write_bytes(b"".join(damaged))

    ingest.default(Answer(200))
    recoverer = spawn("recover", flush_interval=60)
    stats = recoverer.expect_json("stats")
    assert recoverer.wait(10) == 0
    report(
        "3 damaged lines in a spool file",
        spooled=300,
        recovered=stats["recovered"],
        dropped_spool_corrupt=stats["dropped"]["spool_corrupt"],
        lost_in_the_cut_line=len(lost),
    )
    assert stats["dropped"]["spool_corrupt"] == 3
    assert stats["recovered"] == 290
    on_the_wire = ids(ingest.all_accepted_events())
    assert len(on_the_wire) == len(set(on_the_wire)) == 290
    assert set(on_the_wire) == series("g", 300) - lost
    assert spool_files(storage) == []
