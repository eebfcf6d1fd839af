"""The in-memory buffer: the only thing the request path touches.

``EventBuffer.record`` (the middleware's) and ``EventBuffer.offer`` (``track()``'s) are O(1), take no lock
(``deque.append`` is atomic), do no I/O and never raise.
``Doorbell`` wakes a worker thread without a lock either, so a signal handler that interrupts ``track()``
mid-way can still ring it without deadlocking; ``Latch`` answers a waiting caller (a flush, a stats request)
without ever blocking the background thread that answers.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("peekapi")


class Counter:
    """A lock-free counter safe to bump from any thread and from a signal handler (``next()`` is atomic)."""

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def bump(self) -> None:
        """Add one. Never raises, never blocks."""
        next(self._count)

    @property
    def value(self) -> int:
        """The number of bumps so far."""
        return int(repr(self._count)[6:-1]) - 1


class Doorbell:
    """A wake-up call between threads built on a socket pair: ``ring()`` takes no lock and never blocks.

    ``wait(timeout)`` blocks the one waiting thread until a ring or the timeout, and swallows pending rings.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def ring(self) -> None:
        """Wake the waiter. Never raises, never blocks (a full socket already means a pending wake-up)."""
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a ring; True if rung. Only one thread may wait."""
        try:
            ready, _, _ = select.select([self._reader], [], [], max(timeout, 0.0))
        except (OSError, ValueError):
            time.sleep(min(max(timeout, 0.0), 0.05))
            return False
        if not ready:
            return False
        self.clear()
        return True

    def fileno(self) -> int:
        """The descriptor that becomes readable on a ring (to wait on it together with others)."""
        return self._reader.fileno()

    def clear(self) -> None:
        """Swallow pending rings. Never raises."""
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        """Release both sockets. Never raises."""
        for sock in (self._reader, self._writer):
            with contextlib.suppress(OSError):
                sock.close()


class Latch:
    """A one-shot answer to the threads waiting for it: ``set()`` never blocks.

    Unlike ``threading.Event``, whose ``set()`` and ``wait()`` take a lock that each waiter holds for a moment: a
    signal handler that interrupts a waiter right there (a ``flush()``, ``stats()`` or ``shutdown()`` on the main
    thread) and then waits for the same answer, or for the thread that would give it, would wait for good.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._lock.acquire()  # held while unset; released by set()

    def set(self) -> None:
        """Release the waiters (idempotent). Never blocks, never raises; any thread."""
        self._set = True
        with contextlib.suppress(RuntimeError):  # set already
            self._lock.release()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for :meth:`set`; True if it was set. Any number of waiters, any
        thread, signal handlers included (a handler's wait nested in the wait it interrupted returns as well)."""
        if self._set:
            return True
        if self._lock.acquire(timeout=max(timeout, 0.0)):
            # Passed on to the next waiter. A second set() may have released it under us: set all the same.
            with contextlib.suppress(RuntimeError):
                self._lock.release()
        return self._set


#: The key under which a tracked dict carries its tracking time while it waits in the buffer.
TRACKED_AT = "\x00peekapi.tracked_at"

#: What the buffer holds: a dict event (a copy the client owns) carrying ``TRACKED_AT``, a compact event (the
#: middleware's tuple, see ``peekapi.event.COMPACT_FIELDS``, its last item the tracking time), or for any other
#: object an ``(event, tracked_at)`` pair. A dict of plain values is not tracked by the garbage collector, so
#: a deep buffer of them costs the collector (and so the request threads) nothing.
Entry = dict[str, object] | tuple[object, ...]


def unpack(entry: Entry) -> tuple[object, float]:
    """The event and the epoch time it was tracked at, from a buffer entry (removing the time key)."""
    if isinstance(entry, dict):
        return entry, entry.pop(TRACKED_AT)  # type: ignore[return-value]
    if len(entry) == 2:
        return entry  # type: ignore[return-value]
    return entry, entry[-1]  # type: ignore[return-value]


def _nothing() -> None:
    return None


class EventBuffer:
    """Bounded FIFO of tracked events (see ``Entry``) with a lock-free ``record`` and ``offer``.

    ``capacity`` bounds the events held in memory, together with ``held_elsewhere`` (events the worker holds
    in batches not yet sent), which the worker keeps current.
    """

    __slots__ = (
        "_items",
        "_reported_drops",
        "_warned",
        "batch_size",
        "capacity",
        "dropped_closed",
        "dropped_full",
        "held_elsewhere",
        "limit",
        "taken",
        "wake",
        "wake_pending",
    )

    def __init__(self, capacity: int, batch_size: int) -> None:
        self._items: collections.deque[Entry] = collections.deque()
        self.capacity = capacity
        #: What :meth:`record` and :meth:`offer` compare with: ``capacity``, or 0 once closed (one comparison).
        self.limit = capacity  # capacity >= 1 (validated), so 0 means closed
        self.batch_size = batch_size
        self.held_elsewhere = 0
        self.taken = 0
        self.wake_pending = False
        #: Wakes the worker that takes from this buffer (set by whoever starts it). Must not raise or block.
        self.wake: Callable[[], None] = _nothing
        self.dropped_full = Counter()
        self.dropped_closed = Counter()
        self._warned = False
        self._reported_drops = 0

    def offer(self, entry: Entry) -> None:
        """Append ``entry``, waking the worker when a full batch is waiting (once per wake-up: the worker clears
        ``wake_pending`` when it wakes).

        When memory is full the event is not kept, ``dropped_full`` is bumped and the worker woken (to spill);
        once closed, it is not kept and ``dropped_closed`` is bumped (the first such event logs a warning, the
        one step that may take a lock: the logging module's). O(1), lock-free otherwise, never raises.
        """
        items = self._items
        queued = len(items)
        if queued + self.held_elsewhere >= self.limit:
            self._refuse()
        else:
            items.append(entry)
            if queued + 1 >= self.batch_size and not self.wake_pending:
                self._ring()

    def record(  # noqa: PLR0917 - positional on purpose: once per request, from the middleware
        self,
        method: str,
        path: str,
        route: str | None,
        status: int,
        elapsed_ms: float,
        request_size: int,
        response_size: int,
        consumer_id: object,
    ) -> None:
        """:meth:`offer` a middleware's request as a compact event, tracked now.

        The one place that builds a compact event (``peekapi.event.COMPACT_FIELDS``, then the tracking time),
        in the same call that appends it: one Python call per request. ``consumer_id`` may be a header list
        (see ``peekapi.event.resolve_compact``). O(1), lock-free but as :meth:`offer` says, never raises.
        """
        # Built before the room is checked, to keep the check next to the append (see close()). The route
        # comes after the consumer on the wire order, not in the argument order. The rest is offer()'s body,
        # written out rather than called: one Python call less on every request.
        entry = (method, path, status, elapsed_ms, request_size, response_size, consumer_id, route, time.time())
        items = self._items
        queued = len(items)
        if queued + self.held_elsewhere >= self.limit:
            self._refuse()
        else:
            items.append(entry)
            if queued + 1 >= self.batch_size and not self.wake_pending:
                self._ring()

    def _ring(self) -> None:
        """Wake the worker, once until it clears ``wake_pending``."""
        self.wake_pending = True
        self.wake()

    def _refuse(self) -> None:
        """Count an event memory has no room for (or that came after :meth:`close`); wake the worker to spill."""
        if self.closed:
            self.dropped_closed.bump()
            if not self._warned:  # all counted (stats()["dropped"]); the first logged (at most twice if racing)
                self._warned = True
                logger.warning("peekapi: events tracked once shutdown() began are dropped (counted as 'closed')")
        else:
            self.dropped_full.bump()
            if not self.wake_pending:
                self._ring()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.limit == 0

    def close(self) -> None:
        """Refuse new events from :meth:`record` and :meth:`offer` (counted in ``dropped_closed``).

        What is held stays, to be drained. A ``record()`` that had checked for room just
        before may still append its event: a draining worker takes it, or ``shutdown()`` spools it once the
        worker is done (``Worker.sweep``).
        """
        self.limit = 0

    def unreported_drops(self) -> int:
        """Events dropped for a full memory since the last call (to count them once). The taking thread only."""
        full = self.dropped_full.value
        new, self._reported_drops = full - self._reported_drops, full
        return new

    def take_entries(self, limit: int) -> list[Entry]:
        """Remove up to ``limit`` of the oldest entries as they are. The taking thread only."""
        items = self._items
        count = min(limit, len(items))
        taken = [items.popleft() for _ in range(count)]
        self.taken += count
        return taken

    def __len__(self) -> int:
        return len(self._items)
