"""A server that shuts down gracefully on SIGTERM (uvicorn, gunicorn) keeps serving the requests in flight.

The client must not close on the signal in that case: it flushes, records the in-flight requests, and is
stopped by atexit when the server's graceful shutdown ends the process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.ingest import IngestServer
from tests.support.reliability import report

CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())  # the server's graceful handler
    from peekapi import PeekApiClient
    client = PeekApiClient({"api_key": "k", "endpoint": sys.argv[1], "storage_path": sys.argv[2],
                            "flush_interval": 60})
    for i in range(20):
        client.track({"method": "GET", "path": f"/before/{i}", "status_code": 200, "response_time_ms": 1})
    print("ready", flush=True)
    while not stopping.is_set():
        time.sleep(0.01)
    # The graceful shutdown: requests still in flight finish and are recorded after the signal.
    for i in range(5):
        client.track({"method": "GET", "path": f"/in-flight/{i}", "status_code": 200, "response_time_ms": 1})
    print("stats", client.stats()["dropped_total"], flush=True)
    """
)


@pytest.mark.slow
def test_sigterm_under_a_graceful_server_records_requests_in_flight(ingest: IngestServer, tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, ingest.url, str(tmp_path / "spool")],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        # The handler flushed what was buffered at the signal, before the server's own handler ran.
        assert len(ingest.wait_for(20, timeout=10)) == 20
        assert child.stdout.readline().split() == ["stats", "0"]
        assert child.wait(15) == 0  # the server's handler decided: a clean exit
    paths = sorted(e["path"] for e in ingest.events())
    report(
        "SIGTERM under a graceful server",
        tracked=25,
        received=len(set(paths)),
        doubled=len(paths) - len(set(paths)),
        resent=len(ingest.all_accepted_events()) - len(paths),
    )
    assert paths == sorted([f"/before/{i}" for i in range(20)] + [f"/in-flight/{i}" for i in range(5)])
    assert len(ingest.all_accepted_events()) == 25


def test_stopped_clients_put_the_previous_handlers_back(ingest: IngestServer, tmp_path: Path) -> None:
    original = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    from peekapi import PeekApiClient

    for _ in range(3):
        client = PeekApiClient(
            {"api_key": "k", "endpoint": ingest.url, "storage_path": str(tmp_path), "handle_signals": True}
        )
        assert signal.getsignal(signal.SIGTERM) is not original[0]
        client.shutdown(1)
        # Many clients one after another must not grow a chain of handlers.
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == original
