"""A real ingest server for tests: HTTP/1.1 on 127.0.0.1, recording every batch it receives.

Its answers can be scripted (status codes, Retry-After, delays, connection resets) to play a collector that
is down, slow, failing or resetting connections. Tests observe the SDK only through what arrives here.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the server saw it."""

    batch_id: str | None
    headers: dict[str, str]
    events: list[dict[str, Any]]
    raw: bytes
    status: int
    connection: int


@dataclass
class Answer:
    """A scripted answer: an HTTP status (with headers), a delay before it, or a connection reset."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hung up before its answer (a client that gave up on a slow answer, on purpose)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class IngestServer:
    """Start with ``start()``; ``url`` is the endpoint to give the SDK. Thread-safe."""

    def __init__(self, accept_gzip: bool = False) -> None:
        self.accept_gzip = accept_gzip
        self.requests: list[Received] = []
        self._plan: list[Answer] = []
        self._default = Answer()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._connections = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> IngestServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections += 1
                    self.connection_number = owner._connections

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                owner._handle(self)

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/events"

    def plan(self, *answers: int | Answer) -> None:
        """Answer the next requests with these, in order; afterwards with the default."""
        with self._lock:
            self._plan.extend(Answer(a) if isinstance(a, int) else a for a in answers)

    def default(self, answer: int | Answer) -> None:
        """Answer every request not covered by the plan with this (200 at first)."""
        with self._lock:
            self._default = Answer(answer) if isinstance(answer, int) else answer

    # -- observation -------------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def events(self) -> list[dict[str, Any]]:
        """Events of accepted batches, each batch id counted once (what a deduplicating collector stores)."""
        seen: set[str | None] = set()
        out: list[dict[str, Any]] = []
        for r in self.accepted():
            if r.batch_id is not None and r.batch_id in seen:
                continue
            seen.add(r.batch_id)
            out.extend(r.events)
        return out

    def all_accepted_events(self) -> list[dict[str, Any]]:
        """Events of accepted batches, duplicates included."""
        return [e for r in self.accepted() for e in r.events]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` deduplicated events arrived (or the timeout); return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = list(self._dedup_locked())
                if len(events) >= count:
                    return events
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return events
                self._cond.wait(remaining)

    def wait_requests(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count and time.monotonic() < deadline:
                self._cond.wait(max(deadline - time.monotonic(), 0.0))
            return list(self.requests)

    def _dedup_locked(self) -> Iterator[dict[str, Any]]:
        seen: set[str | None] = set()
        for r in self.requests:
            if not 200 <= r.status < 300 or (r.batch_id is not None and r.batch_id in seen):
                continue
            seen.add(r.batch_id)
            yield from r.events

    # -- the handler -------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        with self._lock:
            answer = self._plan.pop(0) if self._plan else self._default
        if answer.delay:
            time.sleep(answer.delay)
        if answer.reset:
            sock = handler.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            sock.close()
            with self._cond:
                self.requests.append(
                    Received(
                        handler.headers.get("x-peekapi-batch-id"),
                        {k.lower(): v for k, v in handler.headers.items()},
                        [],
                        raw,
                        0,
                        getattr(handler, "connection_number", 0),
                    )
                )
                self._cond.notify_all()
            return
        body = raw
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(raw)
        events = json.loads(body) if body else []
        received = Received(
            batch_id=handler.headers.get("x-peekapi-batch-id"),
            headers={k.lower(): v for k, v in handler.headers.items()},
            events=events,
            raw=body,
            status=answer.status,
            connection=getattr(handler, "connection_number", 0),
        )
        with self._cond:  # recorded before answering, so a client that saw the answer finds it here
            self.requests.append(received)
            self._cond.notify_all()
        payload = json.dumps({"accepted": len(events), "rejected": 0}).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        if self.accept_gzip:
            handler.send_header("Accept-Encoding", "gzip")
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()
