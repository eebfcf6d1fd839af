"""Delivery at the wire: batching, batch ids, headers, keep-alive, retries, final errors, gzip."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import peekapi.transport
from peekapi import PeekApiClient, RequestEvent, __version__
from tests.support.ingest import Answer, IngestServer
from tests.support.reliability import report
from tests.support.wait import eventually


def event(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"method": "get", "path": f"/items/{i}", "status_code": 200, "response_time_ms": 1.5, **extra}


def test_events_arrive_once_with_wire_fields(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient(options)
    client.track(event(1, consumer_id="c1", request_size=3, response_size=7))
    client.track(RequestEvent(method="post", path="/x", status_code=201, response_time_ms=2, route="/x"))
    assert client.flush(5)
    events = ingest.events()
    assert len(events) == 2
    first, second = events
    assert first["method"] == "GET" and first["path"] == "/items/1" and first["status_code"] == 200
    assert first["consumer_id"] == "c1" and first["request_size"] == 3 and first["response_size"] == 7
    assert first["timestamp"].endswith("+00:00")
    assert "route" not in first
    assert second["method"] == "POST" and second["route"] == "/x" and second["response_time_ms"] == 2.0
    request = ingest.accepted()[0]
    assert request.headers["x-api-key"] == "ak_test_123"
    assert request.headers["x-peekapi-sdk"] == f"python/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert len(request.headers["x-peekapi-batch-id"]) == 32
    assert client.shutdown(2)


def test_events_tracked_after_shutdown_are_counted_as_closed(ingest: IngestServer, options: dict[str, Any]) -> None:
    from peekapi.middleware import PeekApiWSGI

    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    client = PeekApiClient(options)
    app = PeekApiWSGI(hello, client=client)
    client.track(event(1))
    assert client.shutdown(5)
    client.track(event(2))
    for _ in range(3):  # requests still arriving through the middleware
        body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/late"}, lambda status, headers, exc_info=None: None)
        assert list(body) == [b"ok"]
    stats = client.stats()
    assert [e["path"] for e in ingest.events()] == ["/items/1"]
    assert (stats["sent"], stats["dropped"]["closed"], stats["tracked"]) == (1, 4, 5)
    assert stats["tracked"] == stats["sent"] + stats["dropped_total"]


def test_an_event_appended_in_the_instant_the_buffer_closes_is_spooled_by_shutdown(
    ingest: IngestServer, options: dict[str, Any]
) -> None:
    # A request thread that had checked for room just before shutdown() closed the buffer appends its event
    # after the last look of the thread that drains it: shutdown() spools it instead of leaving it in memory.
    client = PeekApiClient(options)
    client.track(event(1))
    buffer = client._buffer
    at_append, go_on = threading.Event(), threading.Event()

    def hold_at_the_append(frame: Any, kind: str, arg: Any) -> None:
        if kind == "c_call" and getattr(arg, "__self__", None) is buffer._items and arg.__name__ == "append":
            at_append.set()
            go_on.wait(10)

    def late_request() -> None:
        sys.setprofile(hold_at_the_append)
        try:
            buffer.record("GET", "/late", None, 200, 1.0, 0, 2, None)
        finally:
            sys.setprofile(None)

    late = threading.Thread(target=late_request)
    late.start()
    assert at_append.wait(5)  # past the room check, not appended yet
    worker = client._worker
    stop = worker.stop

    def stop_then_append(deadline: float) -> bool:
        finished = stop(deadline)  # closed, drained, and the draining thread gone
        assert len(buffer) == 0
        go_on.set()
        late.join(5)
        return finished

    worker.stop = stop_then_append  # type: ignore[method-assign]
    assert client.shutdown(5)
    stats = client.stats()
    assert (stats["tracked"], stats["sent"], stats["spooled"], stats["queue_depth"]) == (2, 1, 1, 0)
    assert [e["path"] for e in ingest.events()] == ["/items/1"]
    recovering = PeekApiClient(options)  # the next start sends what the spool holds
    assert eventually(lambda: len(ingest.events()) == 2)
    assert recovering.shutdown(5)
    assert sorted(e["path"] for e in ingest.events()) == ["/items/1", "/late"]


def test_batch_size_triggers_a_send_before_the_interval(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 10, "flush_interval": 60})
    for i in range(25):
        client.track(event(i))
    events = ingest.wait_for(20, timeout=5)
    assert len(events) == 20
    assert [len(r.events) for r in ingest.accepted()] == [10, 10]
    assert client.flush(5)
    assert len(ingest.events()) == 25
    client.shutdown(2)


def test_a_memory_of_one_batch_takes_events_again_once_it_is_sent(
    ingest: IngestServer, options: dict[str, Any]
) -> None:
    # The batch being sent counts against memory until it is delivered: then the room must come back.
    client = PeekApiClient({**options, "batch_size": 10, "max_buffer_size": 10})
    for round_ in range(3):
        for i in range(10):
            client.track({"method": "GET", "path": f"/r/{round_}/{i}", "status_code": 200, "response_time_ms": 1.0})
        assert eventually(lambda round_=round_: client.stats()["sent"] == 10 * (round_ + 1)), client.stats()
        assert eventually(lambda: client.stats()["in_flight"] == 0)
    assert client.shutdown(5)
    stats = client.stats()
    assert stats["sent"] == 30 and stats["dropped_total"] == 0
    assert len(ingest.events()) == 30


def test_flush_interval_sends_a_partial_batch(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "flush_interval": 0.2})
    client.track(event())
    assert len(ingest.wait_for(1, timeout=5)) == 1
    client.shutdown(2)


def test_one_connection_is_reused_across_batches(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 5})
    for i in range(50):
        client.track(event(i))
    assert client.flush(5)
    assert len(ingest.events()) == 50
    assert len(ingest.accepted()) == 10
    assert ingest.connections == 1
    client.shutdown(2)


def test_batches_are_capped_in_bytes(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 100, "max_batch_bytes": 4096})
    for i in range(40):
        client.track(event(i, metadata={"pad": "x" * 400}))
    assert client.flush(5)
    assert len(ingest.events()) == 40
    assert all(len(r.raw) <= 4096 for r in ingest.accepted())
    assert len(ingest.accepted()) > 1
    client.shutdown(2)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_the_same_batch_id(
    ingest: IngestServer, options: dict[str, Any], status: int
) -> None:
    ingest.plan(status, status)
    client = PeekApiClient(options)
    client.track(event())
    assert client.flush(5)
    requests = ingest.requests
    report(
        f"{status} twice, then 200",
        tracked=1,
        tries=len(requests),
        batch_ids=len({r.batch_id for r in requests}),
        retried=client.stats()["retried"],
        received=len(ingest.events()),
    )
    assert [r.status for r in requests] == [status, status, 200]
    assert len({r.batch_id for r in requests}) == 1
    assert client.stats()["retried"] == 2
    assert len(ingest.events()) == 1
    client.shutdown(2)


def test_network_errors_and_resets_are_retried(ingest: IngestServer, options: dict[str, Any]) -> None:
    ingest.plan(Answer(reset=True), Answer(reset=True))
    client = PeekApiClient(options)
    client.track(event())
    assert client.flush(5)
    report(
        "two resets, then 200",
        tracked=1,
        tries=len(ingest.requests),
        batch_ids=len({r.batch_id for r in ingest.requests}),
        received=len(ingest.events()),
    )
    assert len(ingest.events()) == 1
    assert len({r.batch_id for r in ingest.requests}) == 1
    client.shutdown(2)


def test_retry_after_is_honoured(ingest: IngestServer, options: dict[str, Any]) -> None:
    ingest.plan(Answer(503, {"Retry-After": "1"}))
    client = PeekApiClient({**options, "flush_interval": 0.05})
    started = time.monotonic()
    client.track(event())
    events = ingest.wait_for(1, timeout=5)
    elapsed = time.monotonic() - started
    report("503 with Retry-After: 1", tracked=1, received=len(events), waited_ms=round(elapsed * 1000))
    assert len(events) == 1
    assert elapsed >= 0.9, elapsed
    client.shutdown(2)


def test_flush_interrupts_a_retry_wait(ingest: IngestServer, options: dict[str, Any]) -> None:
    ingest.plan(Answer(503, {"Retry-After": "120"}))
    client = PeekApiClient({**options, "flush_interval": 0.05})
    client.track(event())
    ingest.wait_requests(1, timeout=5)
    started = time.monotonic()
    assert client.flush(5)
    flushed_ms = round((time.monotonic() - started) * 1000)
    report("503 with Retry-After: 120, then flush()", tracked=1, received=len(ingest.events()), flush_ms=flushed_ms)
    assert time.monotonic() - started < 3
    assert len(ingest.events()) == 1
    client.shutdown(2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_are_final(
    ingest: IngestServer, options: dict[str, Any], status: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[Exception] = []
    ingest.plan(status)
    client = PeekApiClient({**options, "on_error": errors.append})
    client.track(event())
    with caplog.at_level("WARNING", logger="peekapi"):
        assert client.flush(5) is False  # handled, but not delivered: flush() says so
    assert f"flush(): 1 event(s) rejected by the endpoint (HTTP {status}" in caplog.text
    assert [r.status for r in ingest.requests] == [status]
    stats = client.stats()
    assert stats["dropped"]["rejected"] == 1
    assert len(errors) == 1 and str(status) in str(errors[0])
    # Never re-sent, also not after a restart.
    client.shutdown(2)
    again = PeekApiClient(options)
    assert again.flush(2)
    time.sleep(0.3)
    report(f"answered {status}", tracked=1, rejected=stats["dropped"]["rejected"], requests=len(ingest.requests))
    assert len(ingest.requests) == 1
    again.shutdown(2)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed(ingest: IngestServer, options: dict[str, Any], status: int) -> None:
    """A collector answering a redirect gets the batch dropped as rejected: the SDK never sends the key elsewhere."""
    trap = IngestServer().start()  # where the redirect points: it must see nothing
    try:
        errors: list[Exception] = []
        ingest.plan(Answer(status, headers={"Location": trap.url}))
        client = PeekApiClient({**options, "on_error": errors.append})
        client.track(event())
        assert client.flush(5) is False  # rejected, not delivered
        time.sleep(0.3)
        stats = client.stats()
        report(
            f"redirect {status}",
            tracked=1,
            rejected=stats["dropped"]["rejected"],
            requests=len(ingest.requests),
            followed=len(trap.requests),
        )
        assert [r.status for r in ingest.requests] == [status]
        assert trap.requests == []
        assert stats["dropped"]["rejected"] == 1 and len(errors) == 1
        client.shutdown(2)
    finally:
        trap.stop()


def test_gzip_only_after_the_server_asks(options: dict[str, Any]) -> None:
    server = IngestServer(accept_gzip=True).start()
    try:
        client = PeekApiClient({**options, "endpoint": server.url, "batch_size": 20})
        for i in range(60):
            client.track(event(i, metadata={"pad": "y" * 100}))
        assert client.flush(5)
        encodings = [r.headers.get("content-encoding") for r in server.accepted()]
        assert encodings[0] is None
        assert "gzip" in encodings[1:]
        assert len(server.events()) == 60
        client.shutdown(2)
    finally:
        server.stop()


def test_never_gzips_for_a_server_that_did_not_ask(ingest: IngestServer, options: dict[str, Any]) -> None:
    client = PeekApiClient({**options, "batch_size": 20})
    for i in range(60):
        client.track(event(i, metadata={"pad": "y" * 100}))
    assert client.flush(5)
    assert all("content-encoding" not in r.headers for r in ingest.accepted())
    client.shutdown(2)


def test_flush_is_true_only_when_everything_since_the_last_flush_was_delivered(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = PeekApiClient({**options, "retry_base_delay": 0.01})
    client.track(event(1))
    assert client.flush(5) is True
    ingest.default(Answer(503))  # down: retried, then spooled
    client.track(event(2))
    with caplog.at_level("INFO", logger="peekapi"):
        assert client.flush(10) is False
    assert "flush(): 1 event(s) spooled to disk, not delivered (re-sent later)" in caplog.text
    assert client.flush(5) is True  # nothing tracked since: nothing undelivered since the last flush
    ingest.default(Answer(200))
    client.track(event(3))
    assert client.flush(5) is True
    assert client.shutdown(5)


def test_flush_that_runs_out_of_time_says_what_is_still_on_its_way(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ingest.default(Answer(200, delay=1.0))  # slow collector
    client = PeekApiClient(options)
    client.track(event(1))
    with caplog.at_level("INFO", logger="peekapi"):
        assert client.flush(0.2) is False
    assert "flush(): timed out with 0 event(s) in memory and 1 being sent" in caplog.text
    assert client.flush(5) is True  # delivered meanwhile: nothing spooled or dropped since the last flush
    assert client.shutdown(5)


def test_flush_or_spool_cuts_a_hung_request_short_spools_it_and_the_client_goes_on(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """What the lifespan shutdown and a graceful server's SIGTERM use: the process may end right after it."""
    ingest.default(Answer(503, delay=5.0))  # takes the request, answers too late
    client = PeekApiClient({**options, "request_timeout": 30})
    for i in range(3):
        client.track(event(i))
    assert eventually(lambda: ingest.connections, timeout=5)  # the batch is in flight (flush_interval 0.2 s)
    client.track(event(3))  # still in memory
    start = time.monotonic()
    with caplog.at_level("INFO", logger="peekapi"):
        assert client._flush_or_spool(0.5) is False  # like flush(): False when anything was not delivered
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 1.5, elapsed  # its bound, far below the request timeout
    stats = client.stats()
    assert (stats["spooled"], stats["sent"], stats["queue_depth"], stats["in_flight"]) == (4, 0, 0, 0)
    assert "flush at shutdown: 4 event(s) spooled to disk, not delivered (re-sent later)" in caplog.text
    assert list(Path(options["storage_path"]).rglob("*.jsonl"))

    # Not stopped: the next events go out. The spooled ones are sent by the next start (or within 30 s).
    ingest.default(Answer(200))
    client.track(event(4))
    assert client.flush(5) is True
    assert client.shutdown(5)
    assert client.stats()["dropped_total"] == 0
    restarted = PeekApiClient(options)
    eventually(lambda: len(ingest.events()) == 5, timeout=10)
    assert restarted.shutdown(5)
    assert sorted(e["path"] for e in ingest.events()) == [f"/items/{i}" for i in range(5)]
    assert len(ingest.all_accepted_events()) == 5


def test_a_stream_of_bad_events_is_counted_in_full_and_logged_in_a_few_lines(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = PeekApiClient(options)
    with caplog.at_level("WARNING", logger="peekapi"):
        for i in range(1000):
            client.track(event(i, status_code=0))  # dropped: not an HTTP status
            client.track(event(i, timestamp="yesterday"))  # repaired: the time of track()
        client.flush(10)
    stats = client.stats()
    assert stats["dropped"]["invalid"] == 1000 and stats["sent"] == 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "peekapi"]
    assert lines[0].startswith("peekapi: dropped 1 event(s): invalid (status_code must be an HTTP status")
    assert any("'yesterday' is not an ISO-8601 time" in line for line in lines)
    assert len(lines) <= 4, lines  # one line of each kind (and flush()'s own summary), not one per event
    assert "flush(): event(s) dropped, not delivered: 1000 invalid" in lines[-1]
    assert client.shutdown(5)


def test_flush_without_time_says_true_when_nothing_waits_and_false_when_something_does(
    ingest: IngestServer, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = PeekApiClient({**options, "flush_interval": 60})
    with caplog.at_level("INFO", logger="peekapi"):
        assert client.flush(0) is True  # nothing tracked yet
        client.track(event(1))
        assert client.flush(0) is False  # in memory: it cannot be delivered in no time
        assert client.flush(5) is True
        assert client.flush(0) is True  # delivered: nothing waits
    timed_out = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert len(timed_out) == 1, timed_out  # the one flush(0) that had something to wait for
    # The flush asked the batcher to take the event: in memory, or already handed to the sender, by the log line.
    assert timed_out[0] in (
        "peekapi: flush(): timed out with 1 event(s) in memory and 0 being sent",
        "peekapi: flush(): timed out with 0 event(s) in memory and 1 being sent",
    )
    assert [e["path"] for e in ingest.events()] == ["/items/1"]
    assert client.shutdown(5)


def test_flush_or_spool_cuts_a_connection_attempt_short(options: dict[str, Any]) -> None:
    """A collector that drops connection attempts (a full accept queue here; a firewall, elsewhere): the sender
    waits in connect(), which the deadline must cut short too."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue: the kernel then drops further connection attempts
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        client = PeekApiClient({**options, "endpoint": f"http://127.0.0.1:{port}/v1/events", "request_timeout": 30})
        for i in range(250):
            client.track(event(i))
        time.sleep(0.6)  # flush_interval 0.2 s: the sender is in connect()
        start = time.monotonic()
        assert client._flush_or_spool(1.0) is False
        assert time.monotonic() - start < 1.0 + 1.5
        stats = client.stats()
        assert (stats["spooled"], stats["in_flight"], stats["queue_depth"]) == (250, 0, 0)
        assert client.shutdown(2)
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_a_shutdown_during_flush_or_spool_delivers_with_its_own_deadline(
    ingest: IngestServer, options: dict[str, Any]
) -> None:
    ingest.default(Answer(200, delay=1.5))  # slow, but it answers
    errors: list[Exception] = []
    client = PeekApiClient({**options, "request_timeout": 30, "on_error": errors.append})
    for i in range(300):
        client.track(event(i))
    time.sleep(0.4)  # the first batch is being sent
    outcome: dict[str, bool] = {}
    shutdown = threading.Timer(0.2, lambda: outcome.setdefault("shutdown", client.shutdown(30)))
    shutdown.start()
    client._flush_or_spool(1.0)  # its deadline passes while shutdown() runs: it must not cut shutdown's requests
    shutdown.join(30)
    stats = client.stats()
    assert outcome == {"shutdown": True}
    assert (stats["sent"], stats["spooled"], errors) == (300, 0, [])


def test_a_sender_stuck_past_flush_or_spool_has_its_batch_spooled_and_counted_once(
    ingest: IngestServer, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name lookup cannot be cut short (stood in for here: the first getaddrinfo takes 3 s). What the stuck sender
    holds is spooled from the waiting thread; when the sender comes back, that batch is neither counted again nor
    spooled twice, and retry waits are not left cut short."""
    lookups: list[float] = []
    real = socket.getaddrinfo

    def slow_first_lookup(*args: Any, **kwargs: Any) -> Any:
        lookups.append(time.monotonic())
        if len(lookups) == 1:
            time.sleep(3.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(peekapi.transport.socket, "getaddrinfo", slow_first_lookup)
    client = PeekApiClient({**options, "request_timeout": 30})
    for i in range(100):
        client.track(event(i))
    time.sleep(0.5)  # the sender is in the lookup
    assert client._flush_or_spool(0.5) is False
    stats = client.stats()
    assert (stats["spooled"], stats["sent"], stats["in_flight"]) == (100, 0, 0)
    time.sleep(3.0)  # the lookup returns: the sender delivers what it held, which is not counted twice
    stats = client.stats()
    assert (stats["spooled"], stats["sent"], stats["dropped_total"]) == (100, 0, 0)
    assert client._worker._handoff.hurry is False
    assert client.shutdown(5)
    restarted = PeekApiClient(options)  # sends the spool: the same batch id, which the collector stores once
    eventually(lambda: len(ingest.all_accepted_events()) == 200)
    assert restarted.shutdown(5)
    assert sorted(e["path"] for e in ingest.events()) == sorted(f"/items/{i}" for i in range(100))
