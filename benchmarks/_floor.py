"""The least any batching client does, the floor the SDK's whole cost is read against.

``FloorClient.track`` is ``deque.append``. One thread wakes every 10 ms and, while 100 events or more wait,
encodes 100 at a time with one ``json.dumps`` call and POSTs them over one kept-alive ``http.client``
connection; asked to (:meth:`FloorClient.drain`), it sends a last partial batch too. No timestamps, no checks,
no retries, no spool, no ids: nothing an SDK needs beyond moving the events.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

BATCH = 100
WAKE_EVERY = 0.01


class FloorClient:
    """See the module docstring. ``track`` from any thread; one background thread delivers."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
        self._path = parts.path or "/"
        self._queue: collections.deque[Any] = collections.deque()
        self._sent = 0
        self._drain = False
        self.track = self._queue.append
        threading.Thread(target=self._run, name="floor-sender", daemon=True).start()

    def _run(self) -> None:
        queue = self._queue
        while True:
            time.sleep(WAKE_EVERY)
            while len(queue) >= BATCH or (self._drain and queue):
                self._post([queue.popleft() for _ in range(min(BATCH, len(queue)))])

    def _post(self, events: list[Any]) -> None:
        body = json.dumps(events).encode()
        self._conn.request("POST", self._path, body, {"Content-Type": "application/json"})
        self._conn.getresponse().read()
        self._sent += len(events)

    def drain(self, total: int) -> None:
        """Wait until ``total`` events were sent in all (the thread sends a partial batch meanwhile)."""
        self._drain = True
        while self._sent < total:
            time.sleep(0.001)
        self._drain = False
