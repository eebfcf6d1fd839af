"""The disk spool: outages, bounded size, file modes, recovery at start-up, garbage in files, broken disks."""

from __future__ import annotations

import json
import resource
import signal
import stat
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peekapi import PeekApiClient
from peekapi.batch import Batch
from peekapi.spool import Spool, decode_line, encode_line
from tests.support.ingest import IngestServer
from tests.support.reliability import report
from tests.support.wait import eventually


def event(i: int) -> dict[str, Any]:
    return {"method": "GET", "path": f"/e/{i}", "status_code": 200, "response_time_ms": 1.0}


def down_options(options: dict[str, Any]) -> dict[str, Any]:
    return {**options, "endpoint": "http://127.0.0.1:9/v1/events"}


def spool_files(path: str) -> list[Path]:
    return sorted(Path(path).glob("*.jsonl"))


def test_outage_spools_then_next_start_delivers_exactly_once(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**down_options(options), "batch_size": 10})
    for i in range(35):
        client.track(event(i))
    assert client.shutdown(5)
    assert client.stats()["spooled"] == 35
    files = spool_files(options["storage_path"])
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    spooled_ids = {json.loads(line)["id"] for f in files for line in f.read_text().splitlines()}

    again = PeekApiClient(options)
    events = ingest.wait_for(35, timeout=10)
    assert sorted(e["path"] for e in events) == sorted(f"/e/{i}" for i in range(35))
    assert len(ingest.all_accepted_events()) == 35
    # The batch ids survive the trip through the spool.
    assert {r.batch_id for r in ingest.accepted()} == spooled_ids
    recovered = eventually(lambda: again.stats()["recovered"] == 35)
    report(
        "outage, then the next start",
        tracked=35,
        spooled=client.stats()["spooled"],
        recovered=again.stats()["recovered"],
        received=len(ingest.events()),
        resent=len(ingest.all_accepted_events()) - len(ingest.events()),
    )
    assert recovered
    again.shutdown(2)
    assert spool_files(options["storage_path"]) == []


def test_spool_directory_is_created_private(options: dict[str, Any], tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "spool"
    client = PeekApiClient({**down_options(options), "storage_path": str(nested)})
    client.track(event(1))
    client.shutdown(3)
    assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    assert len(spool_files(str(nested))) == 1


def test_spool_size_is_bounded_and_overflow_is_counted(options: dict[str, Any]) -> None:
    client = PeekApiClient({**down_options(options), "batch_size": 10, "max_storage_bytes": 4000})
    for i in range(200):
        client.track(event(i))
    client.shutdown(5)
    stats = client.stats()
    total = sum(f.stat().st_size for f in Path(options["storage_path"]).iterdir())
    report(
        "spool capped at 4,000 bytes",
        tracked=200,
        spooled=stats["spooled"],
        dropped_spool_full=stats["dropped"]["spool_full"],
        spool_bytes=total,
    )
    assert total <= 4000
    assert stats["spooled"] > 0
    assert stats["dropped"]["spool_full"] == 200 - stats["spooled"]


def test_spool_disabled_with_zero_bytes(options: dict[str, Any]) -> None:
    client = PeekApiClient({**down_options(options), "max_storage_bytes": 0})
    client.track(event(1))
    client.shutdown(3)
    assert client.stats()["dropped"]["spool_disabled"] == 1
    assert not Path(options["storage_path"]).exists()


def test_full_disk_is_counted_not_raised(options: dict[str, Any]) -> None:
    # A file-size limit makes the kernel fail the spool's write with EFBIG, as a full disk fails it with ENOSPC.
    # The limit is this process's: the spool must be written from here.
    client = PeekApiClient({**down_options(options), "batch_size": 50})
    for i in range(50):
        client.track(event(i))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, hard))
    try:
        client.shutdown(3)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    stats = client.stats()
    report(
        "write fails (EFBIG)",
        tracked=stats["tracked"],
        spooled=stats["spooled"],
        dropped_spool_error=stats["dropped"]["spool_error"],
    )
    assert client.stats()["dropped"]["spool_error"] == 50
    assert spool_files(options["storage_path"]) == []


def test_unwritable_spool_is_counted_not_raised(options: dict[str, Any], tmp_path: Path) -> None:
    # A regular file where the directory should be: fails for root too (ENOTDIR).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    client = PeekApiClient({**down_options(options), "storage_path": str(blocker / "spool")})
    client.track(event(1))
    assert client.shutdown(3) in (True, False)
    stats = client.stats()
    report(
        "spool path under a file (ENOTDIR)",
        tracked=stats["tracked"],
        spooled=stats["spooled"],
        dropped_spool_error=stats["dropped"]["spool_error"],
    )
    assert client.stats()["dropped"]["spool_error"] == 1


def test_corrupt_and_truncated_lines_are_skipped_and_counted(ingest: IngestServer, options: dict[str, Any]) -> None:
    directory = Path(options["storage_path"])
    directory.mkdir(parents=True)
    good = [encode_line(Batch.of([json.dumps(event(i)).encode()])) for i in range(3)]
    content = good[0] + b"{not json\n" + good[1] + b"\x00\xff garbage\n" + good[2] + good[0][: len(good[0]) // 2]
    (directory / "00000000000000000001-1-abcd.jsonl").write_bytes(content)
    client = PeekApiClient(options)
    events = ingest.wait_for(3, timeout=10)
    corrupt = eventually(lambda: client.stats()["dropped"]["spool_corrupt"] == 3)
    report(
        "3 good lines, 3 damaged",
        received=len(events),
        dropped_spool_corrupt=client.stats()["dropped"]["spool_corrupt"],
    )
    assert sorted(e["path"] for e in events) == ["/e/0", "/e/1", "/e/2"]
    assert corrupt
    client.shutdown(2)
    assert spool_files(str(directory)) == []


line_bytes = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\n" not in b),
    st.builds(lambda i: encode_line(Batch.of([json.dumps(event(i)).encode()]))[:-1], st.integers(0, 10**6)),
    st.sampled_from([b"[]", b"{}", b'{"id":"x","events":[]}', b'{"id":5,"events":[{}]}', b"null", b'"s"']),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line_bytes, max_size=12))
def test_spool_reads_every_valid_line_among_garbage(tmp_path: Path, lines: list[bytes]) -> None:
    directory = tmp_path / f"s{time.monotonic_ns()}"
    directory.mkdir()
    (directory / "00000000000000000001-1-abcd.jsonl").write_bytes(b"\n".join(lines))
    spool = Spool(directory, 10**6)
    claim = spool.claim()
    assert claim is not None
    expected = [b for b in (decode_line(line) for line in lines) if b is not None]
    assert [b.batch_id for b in claim.batches] == [b.batch_id for b in expected]
    assert claim.corrupt == sum(1 for line in lines if line.strip() and decode_line(line) is None)
    claim.done.update(b.batch_id for b in claim.batches)
    spool.finish(claim)
    assert list(directory.iterdir()) == []


def test_partially_delivered_claim_keeps_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    batches = [Batch.of([json.dumps(event(i)).encode()]) for i in range(3)]
    spool.append(batches)
    claim = spool.claim()
    assert claim is not None and len(claim.batches) == 3
    assert spool.claim() is None  # claimed: nobody else gets it
    claim.done.add(batches[0].batch_id)
    spool.finish(claim)
    rest = spool.claim()
    assert rest is not None
    assert [b.batch_id for b in rest.batches] == [b.batch_id for b in batches[1:]]


def test_a_dead_processes_claim_is_taken_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.append([Batch.of([json.dumps(event(1)).encode()])])
    ready = next(tmp_path.glob("*.jsonl"))
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    ready.rename(tmp_path / f"{ready.name}.claim-{dead_pid}")
    claim = spool.claim()
    assert claim is not None and len(claim.batches) == 1


def test_a_taken_over_claim_skips_the_batches_already_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    batches = [Batch.of([json.dumps(event(i)).encode()]) for i in range(3)]
    spool.append(batches)
    claim = spool.claim()
    assert claim is not None
    spool.acknowledge(claim, batches[0].batch_id)
    spool.acknowledge(claim, batches[1].batch_id)
    # The owner dies here, before finish(): its claim is abandoned.
    claim.path.rename(claim.path.with_name(claim.path.name.rsplit("-", 1)[0] + f"-{2**22 + 777}"))
    again = spool.claim()
    assert again is not None
    assert [b.batch_id for b in again.batches] == [batches[2].batch_id]
    spool.acknowledge(again, batches[2].batch_id)
    spool.finish(again)
    assert list(tmp_path.iterdir()) == []
