"""The background worker: batching, timing, retries, spooling and recovery. Knows nothing of HTTP.

Two daemon threads per process:

- the *batcher* takes events from the buffer when ``batch_size`` are waiting or ``flush_interval`` has passed,
  encodes them into batches, and hands them to the sender, or to the spool when the sender is too far behind
  (memory is bounded by ``max_buffer_size``);
- the *sender* delivers batches through a transport (anything with ``send(batch_id, body) -> SendResult``),
  retrying with backoff, spooling a batch after ``MAX_ATTEMPTS`` failures, and re-sending spooled batches.

Threads wake each other with ``Doorbell``s (no locks), so ``flush()`` and ``stop()`` are safe from a signal
handler. Waits are interruptible by ``flush()`` (retry now) and ``stop()`` (deadline).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .batch import Batch, build_batches
from .buffer import Doorbell, Entry, EventBuffer, Latch
from .config import Settings
from .lifecycle import block_app_signals
from .spool import Claim, Spool
from .stats import Stats
from .transport import MAX_ATTEMPTS, SendResult, backoff_delay

logger = logging.getLogger("peekapi")

RECOVERY_INTERVAL = 30.0
# How often the batcher looks at the buffer while traffic flows: every 50 ms it takes several batches at once
# and the sender sends them back to back (at 20,000 events/s, ~1.5-2 us of CPU less per event than every 10 ms:
# fewer wake-ups, warmer caches; benchmarks/README.md, "Issue 15").
POLL_INTERVAL = 0.05
BLOCKED_POLL = 0.01  # how often it watches memory while the sender has no room (to spill before memory is full)
BUSY_WINDOW = 1.0  # it keeps polling this long after it last found a full batch waiting
JOIN_GRACE = 1.0
IN_FLIGHT_GRACE = 0.5


class Transport(Protocol):
    """What the worker needs of the network."""

    def send(self, batch_id: str, body: bytes) -> SendResult: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class DeliveryError(Exception):
    """Passed to ``on_error`` when a batch is rejected (final) or could not be delivered and was spooled."""

    def __init__(self, message: str, status: int | None, events: int) -> None:
        super().__init__(message)
        self.status = status
        self.events = events


class Worker:
    """Owns the two threads. ``start``/``flush``/``stop`` may be called from any thread; see each method."""

    def __init__(
        self,
        settings: Settings,
        buffer: EventBuffer,
        transport: Transport,
        spool: Spool,
        stats: Stats,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._transport = transport
        self._spool = spool
        self._stats = stats
        self._batcher_bell = Doorbell()
        self._sender_bell = Doorbell()
        self._outbox: collections.deque[Batch | Latch] = collections.deque()
        self._outbox_cap = max(settings.batch_size, settings.max_buffer_size // 2)
        self._put_events = 0  # written by the batcher only
        self._got_events = 0  # written by the sender only
        self._flush_requests: collections.deque[Latch] = collections.deque()
        self._markers: collections.deque[tuple[Latch, int]] = collections.deque()
        self._drain_to = 0  # take partial batches until this many events were taken in all
        self._blocked = False
        # Memory this full (3/4) makes the batcher spill down to half: headroom for bursts between its polls.
        self._spill_mark = max(settings.max_buffer_size * 3 // 4, self._outbox_cap + settings.batch_size)
        self._hurry = False
        self._closing = False
        self._deadline = float("inf")
        self._batcher_done = False
        self._down = False
        self._failures = 0
        self._next_recovery = 0.0
        self._threads: list[threading.Thread] = []
        self._current: Batch | None = None  # the batch the sender is delivering

    # -- control, from any thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start both threads (idempotent). Never raises."""
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._guard(self._batch_loop), name="peekapi-batcher", daemon=True),
            threading.Thread(target=self._guard(self._send_loop), name="peekapi-sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Tell the batcher a full batch is waiting. Lock-free; safe on the request path."""
        self._batcher_bell.ring()

    def flush(self, timeout: float) -> bool:
        """Send (or spool, if the endpoint fails) everything buffered now; True if done within ``timeout``.

        Interrupts a retry backoff so the next attempt is made at once.
        """
        marker = Latch()
        self._flush_requests.append(marker)
        self._hurry = True
        self._batcher_bell.ring()
        self._sender_bell.ring()
        return marker.wait(timeout)

    def stop(self, deadline: float) -> bool:
        """Deliver everything, then stop both threads; what is not delivered by ``deadline`` is spooled.

        ``deadline`` is a ``time.monotonic()`` value. Returns True if everything was delivered or spooled and
        both threads ended. Blocks until ``deadline`` plus 1.5 s at most.
        """
        self._deadline = deadline
        self._closing = True
        self._hurry = True
        self._batcher_bell.ring()
        self._sender_bell.ring()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if any(t.is_alive() for t in self._threads):
            # Past the deadline the threads spool what waits; a request in flight gets a moment to be answered
            # (were it cut short, its batch would be spooled and sent again: a duplicate for a collector that
            # does not deduplicate by batch id).
            self._sender_bell.ring()
            self._batcher_bell.ring()
            for thread in self._threads:
                thread.join(IN_FLIGHT_GRACE)
        if any(t.is_alive() for t in self._threads):
            # Still stuck: cut the request in flight short; the threads spool what they hold and end.
            self._transport.abort()
            self._sender_bell.ring()
            self._batcher_bell.ring()
            for thread in self._threads:
                thread.join(JOIN_GRACE)
            if self._threads[1].is_alive():
                self._rescue()
        finished = not any(t.is_alive() for t in self._threads)
        if finished:
            self._transport.close()
            self._batcher_bell.close()
            self._sender_bell.close()
        return finished

    def sweep(self) -> int:
        """After :meth:`stop`, once both threads have ended: spool what the buffer still holds, from this thread.

        Those are events a ``record()`` or ``track()`` appended in the instant the buffer closed, after the
        batcher's last look (they had checked for room just before). Returns how many were spooled: 0 while a
        thread still runs (it is then the only one that may take from the buffer). Called by ``shutdown()``
        once, under its lock. Never raises.
        """
        if not self._threads or any(thread.is_alive() for thread in self._threads):
            return 0
        return spool_buffer(self._settings, self._spool, self._stats, self._buffer)

    def discard_after_fork(self) -> None:
        """In a forked child: release this (the parent's) worker's sockets; its threads do not exist here."""
        self._threads = []
        self._transport.close()
        self._batcher_bell.close()
        self._sender_bell.close()

    def _rescue(self) -> None:
        """Last resort when the sender is stuck past the deadline: spool what it holds from this thread.

        Should the sender still deliver a batch afterwards, its id lets the collector drop the duplicate.
        """
        held = [self._current] if self._current is not None else []
        held += [i for i in list(self._outbox) if isinstance(i, Batch)]
        self._current = None
        self._outbox.clear()
        self._got_events = self._put_events
        self._buffer.held_elsewhere = 0
        self._to_spool(held)

    @property
    def in_flight(self) -> int:
        """Events batched but not yet delivered, spooled or dropped: in the outbox, or the batch being sent."""
        current = self._current
        return self._outbox_events + (current.count if current is not None else 0)

    @property
    def _outbox_events(self) -> int:
        """Events in batches waiting for the sender (what bounds the batcher's lead)."""
        return max(self._put_events - self._got_events, 0)

    # -- the batcher ----------------------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        interval = self._settings.flush_interval
        size = self._settings.batch_size
        buffer = self._buffer
        due = time.monotonic() + interval
        blocked = False
        busy_until = 0.0
        while True:
            now = time.monotonic()
            wait = min(due, self._deadline) - now
            if self._closing or self._flush_requests:
                pass
            elif blocked:  # the sender rings when it has room; meanwhile watch memory, to spill before it is full
                self._batcher_bell.wait(min(max(wait, 0.001), BLOCKED_POLL))
            elif now < busy_until:
                # Traffic is flowing: poll, so that track() need not ring the bell (a system call that releases
                # the GIL, on the request path).
                self._batcher_bell.wait(min(max(wait, 0.0), POLL_INTERVAL))
            else:
                buffer.wake_pending = False  # idle: track() rings once a full batch is waiting
                if len(buffer) < size and wait > 0:
                    self._batcher_bell.wait(wait)
            buffer.wake_pending = True
            self._report_full()
            queued_now = buffer.taken + len(buffer)
            while self._flush_requests:
                self._markers.append((self._flush_requests.popleft(), queued_now))
                self._drain_to = max(self._drain_to, queued_now)
            now = time.monotonic()
            if len(buffer) >= size:
                busy_until = now + BUSY_WINDOW
            if now >= due:
                due = now + interval
                self._drain_to = max(self._drain_to, queued_now)
            if self._closing:
                self._drain_to = max(self._drain_to, queued_now)
            handed = self._put_events
            blocked = self._drain()
            # A flush is done once every event queued before it has gone to the sender: the marker follows them.
            while self._markers and self._markers[0][1] <= buffer.taken:
                self._outbox.append(self._markers.popleft()[0])
                handed = -1
            if handed != self._put_events:
                self._sender_bell.ring()
            if blocked:
                self._blocked = True
            if self._closing and not len(buffer) and not self._markers and not self._flush_requests:
                self._report_full()  # drops since this round's report, when track() raced with stop()
                self._batcher_done = True
                self._sender_bell.ring()
                return

    def _drain(self) -> bool:
        """Move events to the sender while it has room; spill to the spool when memory is nearly full.

        Takes full batches always, and partial ones up to ``_drain_to`` (interval, flush, shutdown). Returns
        True when it stopped because the sender had no room.
        """
        buffer = self._buffer
        size = self._settings.batch_size
        while len(buffer):
            if len(buffer) < size and buffer.taken >= self._drain_to:
                return False
            count = min(size, len(buffer))
            if self._past_deadline():
                spill = True
            elif self._outbox_events + count <= self._outbox_cap:
                spill = False
            elif len(buffer) + self._outbox_events >= self._spill_mark:
                self._spill(len(buffer) + self._outbox_events - self._outbox_cap)
                continue
            else:
                return True
            buffer.held_elsewhere = self.in_flight + count  # still in memory while being encoded
            batches = self._encode(buffer.take_entries(size))
            if spill:
                self._to_spool(batches)
                buffer.held_elsewhere = self.in_flight
                continue
            for batch in batches:
                self._put_events += batch.count
                self._outbox.append(batch)
            buffer.held_elsewhere = self.in_flight
        return False

    def _spill(self, events: int) -> None:
        """Memory is nearly full (the sender is behind): move about ``events`` of the oldest to the spool.

        In one file, and enough to fall well below the mark, so an overload writes few, large files rather than
        one per batch; overflowing to disk is what keeps ``track()`` from dropping events.
        """
        buffer = self._buffer
        size = self._settings.batch_size
        batches: list[Batch] = []
        while events > 0 and len(buffer):
            buffer.held_elsewhere = self.in_flight + min(size, len(buffer))
            taken = buffer.take_entries(size)
            events -= len(taken)
            batches += self._encode(taken)
        self._to_spool(batches)
        buffer.held_elsewhere = self.in_flight
        self._next_recovery = 0.0  # the sender sends them back out once it has caught up

    def _encode(self, entries: list[Entry]) -> list[Batch]:
        return encode(self._settings, self._stats, entries)

    def _report_full(self) -> None:
        self._stats.drop("buffer_full", self._buffer.unreported_drops())

    # -- the sender -----------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.popleft() if self._outbox else None
            if isinstance(item, Latch):
                # list() first: the batcher appends meanwhile (iterating the deque itself could raise).
                if not self._closing and not any(isinstance(i, Latch) for i in list(self._outbox)):
                    self._hurry = False
                item.set()
                continue
            if item is not None:
                self._send_live(item)
                continue
            if self._closing:
                if self._batcher_done:
                    return
                self._sender_bell.wait(0.05)
                continue
            now = time.monotonic()
            if now >= self._next_recovery:
                self._recover()
                continue
            self._sender_bell.wait(self._next_recovery - now)

    def _send_live(self, batch: Batch) -> None:
        self._current = batch  # first: in flight (see in_flight) until settled, never in neither count
        self._got_events += batch.count
        if self._blocked:  # the outbox has room again
            self._blocked = False
            self._batcher_bell.ring()
        try:
            self._deliver(batch)
        finally:
            self._current = None
            self._buffer.held_elsewhere = self.in_flight  # settled: its room is the buffer's again

    def _deliver(self, batch: Batch) -> None:
        if self._past_deadline():
            self._to_spool([batch])
            return
        if self._down and not self._pause(backoff_delay(min(self._failures, 8), self._base_delay())):
            self._to_spool([batch])
            return
        while True:
            result = self._attempt(batch, recovered=False)
            if result is None:
                return
            if batch.attempts >= MAX_ATTEMPTS or self._down:
                self._give_up(batch, result)
                return
            if not self._pause(backoff_delay(batch.attempts, self._base_delay(), result.retry_after)):
                self._to_spool([batch])
                return

    def _attempt(self, batch: Batch, recovered: bool) -> SendResult | None:
        """One try. None when the batch is settled (delivered or finally rejected), else the failed result."""
        result = self._transport.send(batch.batch_id, batch.body)
        if result.outcome == "delivered":
            self._stats.delivered(batch.count, recovered)
            if self._down:
                logger.info("peekapi: endpoint %s reachable again", self._settings.endpoint.origin)
                self._next_recovery = 0.0
            self._down = False
            self._failures = 0
            return None
        if result.outcome == "rejected":
            message = f"batch of {batch.count} events rejected by {self._settings.endpoint.origin}: {result.detail}"
            logger.error("peekapi: %s; not retried", message)
            self._stats.reject(batch.count, result.detail or f"HTTP {result.status}")
            self._report_error(DeliveryError(message, result.status, batch.count))
            return None
        batch.attempts += 1
        self._failures += 1
        self._stats.add("retried")
        logger.info("peekapi: attempt %d to send batch %s failed: %s", batch.attempts, batch.batch_id, result.detail)
        return result

    def _give_up(self, batch: Batch, result: SendResult) -> None:
        first = not self._down
        self._down = True
        message = (
            f"could not deliver {batch.count} events to {self._settings.endpoint.origin} after "
            f"{batch.attempts} attempts ({result.detail}); spooled to disk"
        )
        if first:
            logger.warning("peekapi: %s", message)
        self._to_spool([batch])
        self._report_error(DeliveryError(message, result.status, batch.count))
        # The endpoint is down: move what waits in memory to disk too, so a crash cannot lose it.
        waiting: list[Batch] = []
        markers: list[Latch] = []
        for _ in range(len(self._outbox)):
            item = self._outbox.popleft()
            (markers if isinstance(item, Latch) else waiting).append(item)  # type: ignore[arg-type]
        self._got_events += sum(b.count for b in waiting)
        self._buffer.held_elsewhere = self.in_flight
        self._to_spool(waiting)
        for marker in markers:
            marker.set()  # everything queued before it is on disk now

    def _recover(self) -> None:
        """Re-send one spooled file (claimed atomically, so no other process sends it too)."""
        self._next_recovery = time.monotonic() + RECOVERY_INTERVAL
        if not self._spool.enabled:
            return  # while the endpoint is down this is also the probe that finds it back, every interval
        claim = self._spool.claim()
        if claim is None:
            return
        self._stats.drop("spool_corrupt", claim.corrupt)
        try:
            self._resend(claim)
        finally:
            self._spool.finish(claim)
        if self._down:  # the next probe: backing off like retries do, at most RECOVERY_INTERVAL away
            probe = min(backoff_delay(min(self._failures, 8), self._base_delay()), RECOVERY_INTERVAL)
            self._next_recovery = time.monotonic() + probe
        else:
            self._next_recovery = 0.0

    def _resend(self, claim: Claim) -> None:
        for batch in claim.batches:
            if self._closing or self._outbox_events > self._outbox_cap // 2:
                return  # shutdown and a backlog of live traffic come first; the rest is released for later
            result = self._attempt(batch, recovered=True)
            if result is not None:
                self._down = True
                return
            self._spool.acknowledge(claim, batch.batch_id)

    # -- shared helpers ------------------------------------------------------------------------------------

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless hurried by flush/stop; False if the shutdown deadline has passed."""
        end = time.monotonic() + seconds
        while not self._hurry:
            remaining = min(end, self._deadline) - time.monotonic()
            if remaining <= 0:
                break
            self._sender_bell.wait(remaining)
        return not self._past_deadline()

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _base_delay(self) -> float:
        return self._settings.retry_base_delay

    def _to_spool(self, batches: list[Batch]) -> None:
        spool_batches(self._spool, self._stats, batches)

    def _report_error(self, error: DeliveryError) -> None:
        report_error(self._settings, error)

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            block_app_signals()
            while True:
                try:
                    loop()
                    return
                except Exception:
                    logger.exception("peekapi: internal error in the background worker; restarting the loop")
                    time.sleep(0.1)

        return run


# -- helpers -------------------------------------------------------------------------------------------------


def encode(settings: Settings, stats: Stats, entries: list[Entry]) -> list[Batch]:
    """Batches of buffer ``entries`` under the settings' caps; a bad event is dropped and counted."""
    return build_batches(
        entries,
        max_count=settings.batch_size,
        max_bytes=settings.max_batch_bytes,
        max_event_bytes=settings.max_event_bytes,
        on_drop=stats.drop,
    )


def spool_batches(spool: Spool, stats: Stats, batches: list[Batch]) -> None:
    """Write ``batches`` to the spool, counting what was written (``spooled``) or lost (by reason). Never raises."""
    written, lost, reason = spool.append(batches)
    if written:
        stats.add("spooled", written)
    if lost and reason:
        stats.drop(reason, lost)


def spool_buffer(settings: Settings, spool: Spool, stats: Stats, buffer: EventBuffer) -> int:
    """Spool every event ``buffer`` holds, from the calling thread (the only one taking from it then); how many.

    Never raises.
    """
    entries = buffer.take_entries(len(buffer))
    if entries:
        spool_batches(spool, stats, encode(settings, stats, entries))
    return len(entries)


def report_error(settings: Settings, error: DeliveryError) -> None:
    """Pass ``error`` to the user's ``on_error`` callback, if any; what it raises is logged. Never raises."""
    callback = settings.on_error
    if callback is None:
        return
    try:
        callback(error)
    except Exception:
        logger.exception("peekapi: the on_error callback raised")
