"""The delivery process (``delivery="process"``): what it adds, and how the client copes when it cannot run.

Seen from a real collector: a killed application's delivery process still delivers what it was handed, its logs
and errors reach the application, and a delivery process that cannot start or dies falls back to threads with
nothing lost or doubled.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from peekapi import PeekApiClient
from peekapi.channel import Channel
from tests.core.test_process import HELD, assert_exactly_once, series, spawn  # noqa: F401 - spawn is a fixture
from tests.support.ingest import Answer, IngestServer
from tests.support.reliability import report
from tests.support.wait import eventually


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_sigkill_of_the_app_leaves_what_it_handed_over_to_the_delivery_process(
    spawn: Any,  # noqa: F811
    ingest: IngestServer,
) -> None:
    # Held back: nothing is sent before the kill (interval 60 s, batches of 1000).
    child = spawn("signals", "term", "500", delivery="process", **HELD)
    child.expect("tracked")
    time.sleep(0.5)  # the relay hands events over within 50 ms
    assert ingest.requests == []
    deliverers = children_of(child.pid)
    assert len(deliverers) == 1
    child.signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    ingest.wait_for(500, timeout=10)
    assert_exactly_once(ingest, series("term", 500))
    assert eventually(lambda: not alive(deliverers[0]), timeout=10), "the delivery process outlived its work"


def test_logs_and_errors_of_the_delivery_process_reach_the_app(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ingest.default(Answer(400))
    errors: list[Exception] = []
    client = PeekApiClient({**options, "delivery": "process", "on_error": errors.append})
    with caplog.at_level(logging.INFO, logger="peekapi"):
        client.track({"method": "GET", "path": "/a", "status_code": 200, "response_time_ms": 1.0})
        assert client.flush(5)
        assert client.shutdown(5)
    assert [type(e).__name__ for e in errors] == ["DeliveryError"]
    assert getattr(errors[0], "status", None) == 400 and getattr(errors[0], "events", None) == 1
    assert any("rejected" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert client.stats()["dropped"]["rejected"] == 1


def test_events_that_marshal_cannot_carry_are_encoded_in_the_app(ingest: IngestServer, options: dict[str, Any]) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    client = PeekApiClient({**options, "delivery": "process"})
    client.track({"method": "GET", "path": "/ok", "status_code": 200, "response_time_ms": 1.0})
    client.track({"method": "GET", "path": Odd(), "status_code": 200, "response_time_ms": 1.0})
    client.track({"method": "GET", "path": "/bad", "status_code": object(), "response_time_ms": 1.0})
    assert client.flush(5)
    assert sorted(e["path"] for e in ingest.events()) == ["/ok", "odd"]
    assert client.shutdown(5)
    stats = client.stats()
    assert stats["tracked"] == 3 and stats["sent"] == 2 and stats["dropped"]["invalid"] == 1


def test_only_the_relay_thread_writes_to_the_delivery_process(
    ingest: IngestServer, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGTERM handler runs shutdown() on the main thread in the middle of whatever the main thread was doing.
    # Were that a send on the channel (stats() once sent its request itself), the relay thread would wait for
    # the channel while shutdown() waits for the relay thread, and the events it had taken were in no count.
    senders: list[str] = []
    send = Channel.send

    def recording(self: Channel, kind: int, *args: Any, **kwargs: Any) -> None:
        senders.append(threading.current_thread().name)
        send(self, kind, *args, **kwargs)

    monkeypatch.setattr(Channel, "send", recording)
    client = PeekApiClient({**options, "delivery": "process", "flush_interval": 60, "batch_size": 1000})
    for i in range(20):
        client.track({"method": "GET", "path": f"/o/{i}", "status_code": 200, "response_time_ms": 1.0})
    assert eventually(lambda: client.stats()["queue_depth"] == 20)  # answered: its request went out
    assert client.flush(5)
    assert client.stats()["sent"] == 20
    assert client.shutdown(5)
    assert len(senders) >= 5  # CONFIG, EVENTS, STATS, FLUSH, STOP
    assert set(senders) == {"peekapi-relay"}


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable named like a Python interpreter that only runs ``body`` (a shell script)."""
    path = tmp_path / "python3-fake"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("body", ["exit 3", "sleep 0.2; exit 0"], ids=["exits", "says-nothing"])
def test_a_delivery_process_that_never_starts_falls_back_to_threads(
    ingest: IngestServer,
    options: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    body: str,
) -> None:
    monkeypatch.setattr(sys, "executable", fake_python(tmp_path, body))
    with caplog.at_level(logging.WARNING, logger="peekapi"):
        client = PeekApiClient({**options, "delivery": "process"})
        for i in range(300):
            client.track({"method": "GET", "path": f"/f/{i}", "status_code": 200, "response_time_ms": 1.0})
        assert client.flush(15)
        assert client.shutdown(5)
    assert sorted(e["path"] for e in ingest.events()) == sorted(f"/f/{i}" for i in range(300))
    assert client.stats()["sent"] == 300 and client.stats()["dropped_total"] == 0
    assert "while starting" in caplog.text


# What every stand-in below starts with: the socket it was given, and reading exactly ``count`` bytes of it.
FRAME_READER = """fd = int(sys.argv[-1])
def read(count):
    data = b""
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            sys.exit(4)
        data += chunk
    return data
"""

# Stand-ins for the delivery process, in Python: they read frames off the socket as the real one does, then die
# at a chosen point. {ready}: whether they first report ready; {until}: "mid-frame" (the configuration and five
# bytes of the first events frame) or "flush" (every frame up to the first FLUSH).
FAKE_DELIVERY = """#!{python}
import marshal, os, struct, sys
{reader}length, _kind = struct.unpack("!IB", read(5))
read(length)
if {ready}:
    body = marshal.dumps(None)
    os.write(fd, struct.pack("!IB", len(body), 10) + body)
if {until!r} == "mid-frame":
    read(5)
    sys.exit(3)
while True:
    length, kind = struct.unpack("!IB", read(5))
    read(length)
    if kind == 3:
        sys.exit(3)
"""


def fake_delivery(tmp_path: Path, *, ready: bool, until: str) -> str:
    path = tmp_path / "python3-fake-delivery"
    path.write_text(FAKE_DELIVERY.format(python=sys.executable, ready=ready, until=until, reader=FRAME_READER))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def track_padded(client: PeekApiClient, count: int) -> None:
    padding = "x" * 200  # 20,000 of these are about 5 MB of frames: more than the channel's buffers take
    for i in range(count):
        client.track({"method": "GET", "path": f"/m/{i}/{padding}", "status_code": 200, "response_time_ms": 1.0})


def through_a_delivery_process_dying_mid_frame(
    ingest: IngestServer, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, ready: bool
) -> tuple[list[str], Any]:
    """Track 20,000 padded events with a first delivery process that dies in its first frame; flush and shut
    down (both must succeed). Returns the paths that arrived and the client's stats."""
    monkeypatch.setattr(sys, "executable", fake_delivery(tmp_path, ready=ready, until="mid-frame"))
    client = PeekApiClient({**options, "delivery": "process", "max_buffer_size": 100_000})
    track_padded(client, 20_000)
    assert client.flush(30)
    assert client.shutdown(5)
    return [e["path"] for e in ingest.events()], client.stats()


def test_events_of_a_frame_cut_short_by_a_dying_delivery_process_are_kept(
    ingest: IngestServer, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, stats = through_a_delivery_process_dying_mid_frame(ingest, options, tmp_path, monkeypatch, ready=False)
    report(
        "dies mid-frame before ready",
        tracked=stats["tracked"],
        received=len(set(paths)),
        doubled=len(paths) - len(set(paths)),
        dropped=stats["dropped_total"],
    )
    assert len(paths) == 20_000 and len(set(paths)) == 20_000
    assert stats["sent"] == 20_000 and stats["dropped_total"] == 0


def test_a_ready_delivery_process_dying_mid_frame_loses_only_what_it_had_whole(
    ingest: IngestServer, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Frames it had whole (in the socket, unread) died with it: counted as process_lost. The frame it cut short
    # was never its: delivered by whoever comes next. Nothing twice.
    paths, stats = through_a_delivery_process_dying_mid_frame(ingest, options, tmp_path, monkeypatch, ready=True)
    report(
        "dies mid-frame once ready",
        tracked=stats["tracked"],
        received=len(set(paths)),
        doubled=len(paths) - len(set(paths)),
        lost_counted=stats["dropped"].get("process_lost", 0),
    )
    assert len(paths) == len(set(paths))
    assert stats["sent"] == len(paths) > 0
    # How much it had whole depends on how far the relay got before it died (often a frame or more, at times none).
    assert stats["sent"] + stats["dropped"].get("process_lost", 0) == 20_000 == stats["tracked"]
    assert stats["dropped_total"] == stats["dropped"].get("process_lost", 0)


@pytest.mark.slow
def test_a_delivery_process_that_stops_reading_does_not_hold_shutdown_past_its_deadline(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Stopped (SIGSTOP) with megabytes still to take, the delivery process leaves the relay waiting for room in
    # the channel. At the deadline the relay gives up: the frame it had not sent in full and the buffer are
    # spooled here, and the delivery process goes on alone with what it had whole once it resumes.
    before = set(children_of(os.getpid()))
    options = {**options, "max_storage_bytes": 50_000_000}
    client = PeekApiClient({**options, "delivery": "process", "max_buffer_size": 100_000, "flush_interval": 60})
    client.track({"method": "GET", "path": "/first", "status_code": 200, "response_time_ms": 1.0})
    assert client.flush(5)
    (deliverer,) = set(children_of(os.getpid())) - before
    os.kill(deliverer, signal.SIGSTOP)
    try:
        client.stats()  # a health check meanwhile: its request waits in the channel, to be read on resuming
        track_padded(client, 20_000)
        time.sleep(0.5)  # the relay fills the channel and waits for room
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="peekapi"):
            assert client.shutdown(2) is False
        assert time.monotonic() - started < 4.5  # deadline 2 s, a stall noticed within 1 s, then spooling; was 5 s
        assert "goes on alone" in caplog.text
        stats = client.stats()
        assert stats["spooled"] > 0 and stats["dropped_total"] == 0
        # What the delivery process had not settled when last heard of stays queued (there), in the count.
        assert stats["queue_depth"] > 0 and stats["in_flight"] == 0
        assert stats["tracked"] == stats["sent"] - stats["recovered"] + stats["spooled"] + stats["queue_depth"]
    finally:
        os.kill(deliverer, signal.SIGCONT)
    assert eventually(lambda: not alive(deliverer), timeout=20), "the resumed delivery process did not finish"
    later = PeekApiClient({**options, "delivery": "thread"})  # recovers the spool at start-up
    assert eventually(lambda: len(ingest.events()) >= 20_001, timeout=20)
    assert later.shutdown(5)
    paths = [e["path"] for e in ingest.events()]
    assert len(paths) == 20_001 and len(set(paths)) == 20_001


# Three starts: the first takes every frame up to the first FLUSH and dies before reporting ready; the second
# writes down the kinds of the frames it gets up to the FLUSH, then dies the same way; the third and later are
# the real delivery process.
SUCCESSION = """#!{python}
import os, struct, sys
starts = {starts!r}
started = len(open(starts).read()) if os.path.exists(starts) else 0
with open(starts, "a") as tally:
    tally.write("x")
if started >= 2:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
{reader}kinds = []
while not kinds or kinds[-1] != 3:
    length, kind = struct.unpack("!IB", read(5))
    read(length)
    kinds.append(kind)
if started == 1:
    with open({order!r}, "w") as out:
        out.write(",".join(map(str, kinds)))
sys.exit(3)
"""


def test_a_flush_left_unanswered_goes_to_the_replacement_after_the_events(
    ingest: IngestServer, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The events a dead delivery process had taken go back to the buffer: its replacement must get them before
    # the flush it re-sends, or it answers the flush before it has them.
    path, order = tmp_path / "python3-succession", tmp_path / "order"
    path.write_text(
        SUCCESSION.format(python=sys.executable, starts=str(tmp_path / "starts"), order=str(order), reader=FRAME_READER)
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(path))
    client = PeekApiClient({**options, "delivery": "process"})
    for i in range(500):
        client.track({"method": "GET", "path": f"/u/{i}", "status_code": 200, "response_time_ms": 1.0})
    assert client.flush(30)
    kinds = [int(k) for k in order.read_text().split(",")]  # CONFIG 1, EVENTS 2, FLUSH 3
    assert kinds[0] == 1 and kinds[-1] == 3 and 2 in kinds[1:-1], kinds
    assert sorted(e["path"] for e in ingest.events()) == sorted(f"/u/{i}" for i in range(500))
    assert client.shutdown(5)
    assert client.stats()["sent"] == 500 and client.stats()["dropped_total"] == 0


def test_no_python_executable_means_threads(
    ingest: IngestServer, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/usr/sbin/uwsgi")
    before = set(children_of(os.getpid()))
    with caplog.at_level(logging.INFO, logger="peekapi"):
        client = PeekApiClient({**options, "delivery": "process"})
    assert set(children_of(os.getpid())) <= before
    client.track({"method": "GET", "path": "/t", "status_code": 200, "response_time_ms": 1.0})
    assert client.flush(5)
    assert client.shutdown(5)
    assert [e["path"] for e in ingest.events()] == ["/t"]
    assert "not a Python interpreter" in caplog.text


def test_a_delivery_process_killed_mid_run_is_replaced_and_the_loss_counted(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="peekapi"):
        client = PeekApiClient({**options, "delivery": "process", "flush_interval": 60, "batch_size": 1000})
        for i in range(100):
            client.track({"method": "GET", "path": f"/k/{i}", "status_code": 200, "response_time_ms": 1.0})
        assert eventually(lambda: client.stats()["queue_depth"] == 100 and "delivery process" in caplog.text)
    started = re.search(r"delivery process (\d+) started", caplog.text)
    assert started is not None
    first = int(started.group(1))
    assert first in children_of(os.getpid())
    os.kill(first, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="peekapi"):
        assert eventually(lambda: client.stats()["dropped"]["process_lost"] == 100, timeout=10)
        for i in range(100, 150):
            client.track({"method": "GET", "path": f"/k/{i}", "status_code": 200, "response_time_ms": 1.0})
        assert client.flush(10)
    assert "ended unexpectedly" in caplog.text
    assert sorted(e["path"] for e in ingest.events()) == sorted(f"/k/{i}" for i in range(100, 150))
    assert client.shutdown(5)
    stats = client.stats()
    report(
        "SIGKILL of the delivery process",
        tracked=stats["tracked"],
        sent=stats["sent"],
        received=len(ingest.events()),
        lost_counted=stats["dropped"].get("process_lost", 0),
    )
    assert stats["tracked"] == 150 and stats["sent"] == 50 and stats["dropped_total"] == 100


def test_events_a_dying_delivery_process_had_spooled_are_not_counted_lost(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Its memory holds 300 (3/4 of 400): what comes on top goes to the spool at once. Killed while the endpoint
    # fails, it loses what it held in memory only; the spool is delivered by its replacement, and nothing is
    # counted both lost and sent.
    ingest.default(Answer(503))
    with caplog.at_level(logging.DEBUG, logger="peekapi"):
        client = PeekApiClient(
            {**options, "delivery": "process", "max_buffer_size": 400, "batch_size": 100, "retry_base_delay": 5.0}
        )
        for chunk in range(4):
            for i in range(chunk * 250, chunk * 250 + 250):
                client.track({"method": "GET", "path": f"/s/{i}", "status_code": 200, "response_time_ms": 1.0})
            time.sleep(0.3)  # handed over before the next chunk (the application's memory holds 400 too)

        def handed_over() -> bool:
            stats = client.stats()
            return stats["spooled"] > 0 and stats["spooled"] + stats["queue_depth"] + stats["in_flight"] == 1000

        assert eventually(handed_over), repr(client.stats())
    started = re.search(r"delivery process (\d+) started", caplog.text)
    assert started is not None
    os.kill(int(started.group(1)), signal.SIGKILL)
    assert eventually(lambda: client.stats()["dropped"].get("process_lost", 0) > 0, timeout=10)
    ingest.default(Answer(200))
    client.track({"method": "GET", "path": "/s/after", "status_code": 200, "response_time_ms": 1.0})
    assert client.flush(10)
    lost = client.stats()["dropped"]["process_lost"]
    assert 0 < lost <= 400  # what its memory held, at most
    assert eventually(lambda: len(ingest.events()) == 1001 - lost, timeout=20)  # the spool, recovered, and /s/after
    assert client.shutdown(5)
    stats = client.stats()
    paths = [e["path"] for e in ingest.events()]
    report(
        "SIGKILL of the delivery process during an outage",
        tracked=stats["tracked"],
        received=len(set(paths)),
        doubled=len(paths) - len(set(paths)),
        lost_counted=lost,
        spooled=stats["spooled"],
    )
    assert len(set(paths)) == len(paths) == 1001 - lost
    assert stats["sent"] + stats["dropped_total"] == stats["tracked"] == 1001
