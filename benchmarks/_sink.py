"""A minimal, fast HTTP/1.1 keep-alive sink that counts the events it is sent.

Run as its own process (``python benchmarks/_sink.py``): it binds 127.0.0.1 on a free port, prints that port on
the first line of stdout, and serves until stdin is closed (so it never outlives the benchmark that started it).

- ``POST <any path>`` with ``Content-Length``: answers ``200 {}`` as soon as the whole body is in (keeping the
  connection open unless the client asked to close it), then parses the body with ``json.loads`` and adds the
  array's length to the event count. A body that is not a JSON array is counted as ``bad``.
- ``GET /_stats``: ``{"events": n, "batches": b, "bad": k, "connections": c, "duplicate_batch_ids": d}``.
- ``POST /_reset``: zeroes every counter.

It never sends ``Accept-Encoding: gzip``, so the SDK under test sends plain JSON bodies.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_NO_LENGTH = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Counters:
    """What the sink has seen since start (or the last reset)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.events = 0
        self.batches = 0
        self.bad = 0
        self.connections = 0
        self.batch_ids: set[str] = set()
        self.duplicate_batch_ids = 0

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "events": self.events,
                "batches": self.batches,
                "bad": self.bad,
                "connections": self.connections,
                "duplicate_batch_ids": self.duplicate_batch_ids,
            }
        ).encode()


class SinkProtocol(asyncio.Protocol):
    """One connection: parses pipelined HTTP/1.1 requests out of a byte buffer, answers each in order."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._data = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._counters.connections += 1

    def data_received(self, data: bytes) -> None:
        self._data += data
        while self._transport is not None and self._handle_one():
            pass

    def _handle_one(self) -> bool:
        """Handle one complete request at the front of the buffer; False when more bytes are needed."""
        data = self._data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(data[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length_text = headers.get("content-length")
        if length_text is None and method == "POST":
            self._reply(_NO_LENGTH, close=True)
            return False
        length = int(length_text or 0)
        if len(data) < end + 4 + length:
            return False
        body = bytes(data[end + 4 : end + 4 + length])
        del data[: end + 4 + length]
        close = headers.get("connection", "").lower() == "close"
        if method == "GET" and target == "/_stats":
            payload = self._counters.as_json()
            response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(payload),
                payload,
            )
            self._reply(response, close)
        elif method == "POST" and target == "/_reset":
            self._counters.reset()
            self._reply(_OK_CLOSE if close else _OK, close)
        elif method == "POST":
            self._count(body, headers)
        else:
            self._reply(_BAD, close=True)
        return True

    def _count(self, body: bytes, headers: dict[str, str]) -> None:
        # Answer first, then parse: the parse overlaps with the client preparing its next batch instead of
        # adding to every round trip. The counts are still complete before any later request is answered
        # (one event loop, requests handled in order), and a body that is not a JSON array is counted as bad,
        # which fails the benchmark run.
        close = headers.get("connection", "").lower() == "close"
        self._reply(_OK_CLOSE if close else _OK, close)
        counters = self._counters
        try:
            events = json.loads(body)
        except ValueError:
            events = None
        if not isinstance(events, list):
            counters.bad += 1
            return
        counters.events += len(events)
        counters.batches += 1
        batch_id = headers.get("x-peekapi-batch-id")
        if batch_id:
            if batch_id in counters.batch_ids:
                counters.duplicate_batch_ids += 1
            counters.batch_ids.add(batch_id)

    def _reply(self, response: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(response)
        if close:
            transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve() -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(counters), "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin or exits
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
