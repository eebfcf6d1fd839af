"""The batcher: takes events from the buffer, encodes them into batches, hands them to the sender.

One daemon thread runs :meth:`Batcher.run`. It takes events when ``batch_size`` are waiting or ``flush_interval``
has passed (and at once for ``flush()`` and ``stop()``), encodes them (``build_batches``) and puts the batches in
the hand-off's outbox, followed by the flush markers they answer. When the sender is too far behind it spills the
oldest events to the spool instead, before memory is full (memory is bounded by ``max_buffer_size``). It is the
only thread that takes from the buffer while it runs; it shares nothing else but the ``Handoff``.
"""

from __future__ import annotations

import collections
import time

from .batch import Batch, build_batches
from .buffer import Entry, EventBuffer, Latch
from .config import Settings
from .handoff import Handoff, spool_batches
from .spool import Spool
from .stats import Stats

# How often the batcher looks at the buffer while traffic flows: every 50 ms it takes several batches at once
# and the sender sends them back to back (at 20,000 events/s, ~1.5-2 us of CPU less per event than every 10 ms:
# fewer wake-ups, warmer caches; benchmarks/README.md, "Issue 15").
POLL_INTERVAL = 0.05
BLOCKED_POLL = 0.01  # how often it watches memory while the sender has no room (to spill before it is full)
BUSY_WINDOW = 1.0  # it keeps polling this long after it last found a full batch waiting
# Between two batches of one drain (or spill) the batcher sleeps this long (about 0.2 ms with the kernel's timer
# slack), so that no request waits for the GIL longer than one batch takes to encode (~0.3 ms for 100 events):
# encoding is pure Python and would hold the GIL for the whole drain (several batches every POLL_INTERVAL under
# load), and a thread that releases the GIL and takes it back at once (``sleep(0)``) keeps it. Under uvicorn at
# ~5,800 requests/s this took p99 from +14..+40 % of the bare app's to -10..+6 % (benchmarks/README.md, "Issue 15,
# latest"), for a system call per 100 events. Not while ``flush()`` or ``stop()`` hurry it: they wait for the drain.
YIELD_SECONDS = 0.0001


class Batcher:
    """The batcher thread's loop and its own state. Only :meth:`run` is called, on that thread."""

    def __init__(
        self, settings: Settings, buffer: EventBuffer, *, spool: Spool, stats: Stats, handoff: Handoff
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._spool = spool
        self._stats = stats
        self._handoff = handoff
        #: Flush markers taken from ``handoff.flush_requests``, each with how many events were queued in all then.
        self._markers: collections.deque[tuple[Latch, int]] = collections.deque()
        self._drain_to = 0  # take partial batches until this many events were taken in all
        # Memory this full (3/4) makes the batcher spill down to half: headroom for bursts between its polls.
        self._spill_mark = max(settings.max_buffer_size * 3 // 4, handoff.outbox_cap + settings.batch_size)

    def run(self) -> None:
        """Batch until ``stop()``: returns once the buffer is empty and every flush marker handed over.

        An unexpected exception escapes (``Worker`` logs it and runs the loop again).
        """
        handoff = self._handoff
        interval = self._settings.flush_interval
        size = self._settings.batch_size
        buffer = self._buffer
        due = time.monotonic() + interval
        blocked = False
        busy_until = 0.0
        while True:
            now = time.monotonic()
            wait = due - now  # while closing (the deadline matters) it does not wait
            if handoff.closing or handoff.flush_requests:
                pass
            elif blocked:  # the sender rings when it has room; meanwhile watch memory, to spill before it is full
                handoff.batcher_bell.wait(min(max(wait, 0.001), BLOCKED_POLL))
            elif now < busy_until:
                # Traffic is flowing: poll, so that track() need not ring the bell (a system call that releases
                # the GIL, on the request path).
                handoff.batcher_bell.wait(min(max(wait, 0.0), POLL_INTERVAL))
            else:
                buffer.wake_pending = False  # idle: track() rings once a full batch is waiting
                if len(buffer) < size and wait > 0:
                    handoff.batcher_bell.wait(wait)
            buffer.wake_pending = True
            self._report_full()
            queued_now = buffer.taken + len(buffer)
            while handoff.flush_requests:
                self._markers.append((handoff.flush_requests.popleft(), queued_now))
                self._drain_to = max(self._drain_to, queued_now)
            now = time.monotonic()
            if len(buffer) >= size:
                busy_until = now + BUSY_WINDOW
            if now >= due:
                due = now + interval
                self._drain_to = max(self._drain_to, queued_now)
            if handoff.closing:
                self._drain_to = max(self._drain_to, queued_now)
            handed = handoff.put_events
            blocked = self._drain()
            # A flush is done once every event queued before it has gone to the sender: the marker follows them.
            while self._markers and self._markers[0][1] <= buffer.taken:
                handoff.outbox.append(self._markers.popleft()[0])
                handed = -1
            if handed != handoff.put_events:
                handoff.sender_bell.ring()
            if blocked:
                handoff.blocked = True
            if handoff.closing and not len(buffer) and not self._markers and not handoff.flush_requests:
                self._report_full()  # drops since this round's report, when track() raced with stop()
                handoff.batcher_done = True
                handoff.sender_bell.ring()
                return

    def _drain(self) -> bool:
        """Move events to the sender while it has room; spill to the spool when memory is nearly full.

        Takes full batches always, and partial ones up to ``_drain_to`` (interval, flush, shutdown). Returns
        True when it stopped because the sender had no room.
        """
        handoff = self._handoff
        buffer = self._buffer
        size = self._settings.batch_size
        while len(buffer):
            if len(buffer) < size and buffer.taken >= self._drain_to:
                return False
            count = min(size, len(buffer))
            if handoff.past_deadline():
                spill = True
            elif handoff.outbox_events + count <= handoff.outbox_cap:
                spill = False
            elif len(buffer) + handoff.outbox_events >= self._spill_mark:
                self._spill(len(buffer) + handoff.outbox_events - handoff.outbox_cap)
                continue
            else:
                return True
            buffer.held_elsewhere = handoff.in_flight + count  # still in memory while being encoded
            handoff.encoding = True
            batches = encode(self._settings, self._stats, buffer.take_entries(size))
            if spill:
                spool_batches(self._spool, self._stats, batches)
            else:
                for batch in batches:
                    handoff.put_events += batch.count
                    handoff.outbox.append(batch)
            handoff.encoding = False
            buffer.held_elsewhere = handoff.in_flight
            if len(buffer) >= size:
                # More to encode: the sender may start on what is ready (its network I/O overlaps the encoding).
                handoff.sender_bell.ring()
                self._let_the_app_run()
        return False

    def _let_the_app_run(self) -> None:
        """Between two batches of a drain or a spill: the application's threads get the GIL (see YIELD_SECONDS)."""
        if not self._handoff.hurry:
            time.sleep(YIELD_SECONDS)

    def _spill(self, events: int) -> None:
        """Memory is nearly full (the sender is behind): move about ``events`` of the oldest to the spool.

        In one file, and enough to fall well below the mark, so an overload writes few, large files rather than
        one per batch; overflowing to disk is what keeps ``track()`` from dropping events.
        """
        buffer = self._buffer
        size = self._settings.batch_size
        batches: list[Batch] = []
        self._handoff.encoding = True
        while events > 0 and len(buffer):
            if batches:
                self._let_the_app_run()
            buffer.held_elsewhere = self._handoff.in_flight + min(size, len(buffer))
            taken = buffer.take_entries(size)
            events -= len(taken)
            batches += encode(self._settings, self._stats, taken)
        spool_batches(self._spool, self._stats, batches)
        self._handoff.encoding = False
        buffer.held_elsewhere = self._handoff.in_flight
        self._handoff.next_recovery = 0.0  # the sender sends them back out once it has caught up

    def _report_full(self) -> None:
        self._stats.drop("buffer_full", self._buffer.unreported_drops())


def encode(settings: Settings, stats: Stats, entries: list[Entry]) -> list[Batch]:
    """Batches of buffer ``entries`` under the settings' caps; a bad event is dropped and counted."""
    return build_batches(
        entries,
        max_count=settings.batch_size,
        max_bytes=settings.max_batch_bytes,
        max_event_bytes=settings.max_event_bytes,
        on_drop=stats.drop,
    )


def spool_buffer(settings: Settings, spool: Spool, stats: Stats, buffer: EventBuffer) -> int:
    """Spool every event ``buffer`` holds, from the calling thread (the only one taking from it then); how many.

    Never raises.
    """
    entries = buffer.take_entries(len(buffer))
    if entries:
        spool_batches(spool, stats, encode(settings, stats, entries))
    return len(entries)
