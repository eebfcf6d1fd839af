"""WriteQueue: a bounded, thread-safe queue of batches, bounded by the number of events it holds."""

from __future__ import annotations

import threading
import time
from collections import deque

from peekapi_server.store import Batch


class WriteQueue:
    """Batches waiting for the writer. ``offer`` never blocks: a full queue refuses (the caller answers 503).

    ``pending_events`` counts events queued plus those taken by the writer and not yet ``done``, so zero means
    everything acknowledged so far is stored (or was given up on after repeated failures).
    """

    def __init__(self, max_events: int) -> None:
        self._max = max_events
        self._items: deque[Batch] = deque()
        self._queued = 0
        self._in_flight = 0
        self._cond = threading.Condition()

    def offer(self, batch: Batch) -> bool:
        """Queues ``batch`` unless that would exceed the bound; returns whether it was queued."""
        n = len(batch.events)
        with self._cond:
            if self._queued + self._in_flight + n > self._max and (self._queued or self._in_flight):
                return False
            self._items.append(batch)
            self._queued += n
            self._cond.notify()
        return True

    def take(self, max_events: int, timeout: float) -> list[Batch]:
        """Waits up to ``timeout`` s for batches, then takes whole batches up to ``max_events`` (at least one)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            out: list[Batch] = []
            taken = 0
            while self._items and (not out or taken + len(self._items[0].events) <= max_events):
                batch = self._items.popleft()
                out.append(batch)
                taken += len(batch.events)
            self._queued -= taken
            self._in_flight += taken
            return out

    def done(self, batches: list[Batch]) -> None:
        """Marks batches taken with :meth:`take` as finished (stored or given up on)."""
        with self._cond:
            self._in_flight -= sum(len(b.events) for b in batches)
            self._cond.notify_all()

    def pending_events(self) -> int:
        """Events queued or being written."""
        with self._cond:
            return self._queued + self._in_flight

    def wait_empty(self, timeout: float) -> bool:
        """Waits until nothing is pending; returns whether that happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queued + self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True
