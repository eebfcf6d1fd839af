"""Slowloris: hundreds of connections dripping a request one byte a second do not stop other clients.

A real collector runs as a subprocess (``peekapi serve``). 300 connections each send the start of a request and
then one more byte every second for 10 seconds: a third drip the request headers of an ingest, a third drip the
body of an ingest whose headers (with a valid key) are complete, a third drip the headers of a read. Meanwhile a
normal client keeps ingesting batches and reading, each on a new connection, and every answer must come
promptly and be right; afterwards every acknowledged event is stored.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from peekapi_server.store import open_store
from tests.server.support import event, free_port, http

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 300
DRIP_SECONDS = 10.0
#: Longest a normal request may take while the slow clients hang on. Typical answers take a few milliseconds;
#: the bound leaves room for a loaded 2-core machine, and is far below what waiting behind the drip would cost.
PROMPT = 2.0


class Collector:
    """A ``peekapi serve`` subprocess on SQLite with one project, its ingest key and read token."""

    def __init__(self, tmp: Path) -> None:
        self.db_url = f"sqlite:///{tmp / 'slow.db'}"
        store = open_store(self.db_url)
        try:
            self.project = store.create_project(f"slow-{uuid.uuid4().hex[:8]}")
            _, self.key = store.create_credential(self.project.name, "ingest")
            _, self.token = store.create_credential(self.project.name, "read")
        finally:
            store.close()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "collector.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "peekapi.cli", "serve", "--port", str(self.port), "--database", self.db_url,
             "--log-level", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", self.url + "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the collector did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def _openings(c: Collector) -> list[tuple[bytes, bytes]]:
    """(what a slow client sends at once, the bytes it then drips one a second), one per kind of slow client."""
    host = f"Host: 127.0.0.1:{c.port}\r\n".encode()
    headers_of_ingest = b"POST /v1/events HTTP/1.1\r\n" + host + f"x-api-key: {c.key}\r\n".encode()
    body_of_ingest = (
        b"POST /v1/events HTTP/1.1\r\n"
        + host
        + f"x-api-key: {c.key}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n".encode()
    )
    headers_of_read = b"GET /v1/overview HTTP/1.1\r\n" + host + f"authorization: Bearer {c.token}\r\n".encode()
    return [
        (headers_of_ingest, b"x-slow: " + b"a" * 1000),
        (body_of_ingest, b"[" + b" " * 1000),
        (headers_of_read, b"x-slow: " + b"b" * 1000),
    ]


class Drip:
    """Slow clients: each sends an opening, then one more byte a second from its own thread-free loop."""

    def __init__(self, c: Collector, count: int) -> None:
        self.sockets: list[tuple[socket.socket, bytes]] = []
        kinds = _openings(c)
        for i in range(count):
            opening, rest = kinds[i % len(kinds)]
            s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
            s.sendall(opening)
            self.sockets.append((s, rest))
        self.sent = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(1.0):
            for s, rest in self.sockets:
                try:
                    s.sendall(rest[step % len(rest) : step % len(rest) + 1])
                    self.sent += 1
                except OSError:
                    self.closed_by_server += 1
            step += 1

    def __enter__(self) -> Drip:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for s, _ in self.sockets:
            s.close()


def test_slow_clients_do_not_stop_others_from_ingesting(collector: Collector) -> None:
    c = collector
    batch = [event(path=f"/fast/{i}") for i in range(100)]
    body = json.dumps(batch).encode()
    latencies: list[float] = []
    acknowledged = 0
    with Drip(c, SLOW_CLIENTS) as drip:
        deadline = time.monotonic() + DRIP_SECONDS
        n = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            r = http(
                "POST",
                c.url + "/v1/events",
                body,
                {"x-api-key": c.key, "content-type": "application/json", "x-peekapi-batch-id": f"fast-{n}"},
                timeout=PROMPT + 5,
            )
            latencies.append(time.monotonic() - t0)
            assert r.status == 200, r.body
            acknowledged += r.json()["accepted"]
            t0 = time.monotonic()
            read = http("GET", c.url + "/v1/overview", headers={"authorization": f"Bearer {c.token}"}, timeout=7)
            latencies.append(time.monotonic() - t0)
            assert read.status == 200 and read.json()["totals"]["requests"] >= acknowledged - len(batch)
            n += 1
            time.sleep(0.2)
        # the slow clients were really there all along: every one still connected, dripping
        assert drip.closed_by_server == 0
        assert drip.sent >= SLOW_CLIENTS * (DRIP_SECONDS - 2)
    assert n >= 10
    assert max(latencies) < PROMPT, f"slowest normal request {max(latencies):.2f} s while {SLOW_CLIENTS} dripped"
    store = open_store(c.db_url)
    try:
        deadline = time.monotonic() + 10
        while store.count_events(c.project.id) < acknowledged and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.count_events(c.project.id) == acknowledged
    finally:
        store.close()
