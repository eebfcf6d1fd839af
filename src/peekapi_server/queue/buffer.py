"""WriteQueue: the bounded, thread-safe hand-off of batches from the ingest endpoint to the writer thread.

Each batch travels in a :class:`Ticket`: the writer settles it once the batch's transaction has committed (or
failed), and the request waiting on the ticket answers only then, so an acknowledgement means the batch is in the
database (group commit: the writer commits every waiting batch in one transaction and wakes all their requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections import deque

from peekapi_server.store import Batch


class Outcome(enum.Enum):
    """How a ticket ended: settled by the writer (the first three), or never taken by it (the last two)."""

    #: Committed (or already stored under the same batch id): the request answers 200.
    STORED = "stored"
    #: The database could not take it now (unreachable, locked, disk full): the request answers 503, the SDK retries.
    RETRY = "retry"
    #: The batch itself cannot be stored (a write failed for it alone): the request answers 400, never retried.
    REFUSED = "refused"
    #: The queue had no room for it: 503.
    QUEUE_FULL = "queue full"
    #: The writer did not take it in time; it was withdrawn, never written: 503.
    NOT_TAKEN = "not taken"


class Ticket:
    """One batch on its way to the store, and the future its request awaits.

    Created on the event loop that awaits it; :meth:`settle` may be called from any thread, once (later calls and
    calls after the loop closed are ignored). Never raises.
    """

    __slots__ = ("_loop", "batch", "future")

    def __init__(self, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
        self.batch = batch
        self._loop = loop
        self.future: asyncio.Future[Outcome] = loop.create_future()

    def settle(self, outcome: Outcome) -> None:
        """Wakes the waiting request with ``outcome`` (thread-safe)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._set, outcome)

    def _set(self, outcome: Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class WriteQueue:
    """Tickets waiting for the writer, bounded by the events they hold. ``offer`` never blocks.

    ``pending_events`` counts events queued plus those taken by the writer and not yet ``done``, so zero means every
    ticket offered so far is settled. Thread-safe.
    """

    def __init__(self, max_events: int) -> None:
        self._max = max_events
        self._items: deque[Ticket] = deque()
        self._queued = 0
        self._in_flight = 0
        self._cond = threading.Condition()

    def offer(self, ticket: Ticket) -> bool:
        """Queues ``ticket`` unless that would exceed the bound (a lone batch is always taken); returns whether."""
        n = len(ticket.batch.events)
        with self._cond:
            if self._queued + self._in_flight + n > self._max and (self._queued or self._in_flight):
                return False
            self._items.append(ticket)
            self._queued += n
            self._cond.notify()
        return True

    def withdraw(self, ticket: Ticket) -> bool:
        """Removes ``ticket`` if the writer has not taken it yet; returns whether it did (then it is never written)."""
        with self._cond:
            try:
                self._items.remove(ticket)
            except ValueError:
                return False
            self._queued -= len(ticket.batch.events)
            self._cond.notify_all()
        return True

    def take(self, max_events: int, timeout: float) -> list[Ticket]:
        """Waits up to ``timeout`` s for tickets, then takes whole ones up to ``max_events`` events (at least one)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            out: list[Ticket] = []
            taken = 0
            while self._items and (not out or taken + len(self._items[0].batch.events) <= max_events):
                ticket = self._items.popleft()
                out.append(ticket)
                taken += len(ticket.batch.events)
            self._queued -= taken
            self._in_flight += taken
            return out

    def done(self, tickets: list[Ticket]) -> None:
        """Marks tickets taken with :meth:`take` as settled."""
        with self._cond:
            self._in_flight -= sum(len(t.batch.events) for t in tickets)
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
