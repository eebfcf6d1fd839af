"""The background worker: starts, flushes and stops the two threads that deliver events. Knows nothing of HTTP.

Two daemon threads per process, each in a module of its own, sharing only a ``Handoff``:

- the *batcher* (``batcher.py``) takes events from the buffer, encodes them into batches and hands them to the
  sender, or to the spool when the sender is too far behind (memory is bounded by ``max_buffer_size``);
- the *sender* (``sender.py``) delivers batches through a transport, retrying with backoff, spooling a batch
  after ``MAX_ATTEMPTS`` failures, and re-sending spooled batches.

``Worker`` is what the client holds: it wires the two, and its ``flush()`` and ``stop()`` only append, set flags
and ring ``Doorbell``s (no locks), so they are safe from a signal handler. Waits are interruptible by
``flush()`` (retry now) and ``stop()`` (deadline).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .batcher import Batcher, spool_buffer
from .buffer import EventBuffer, Latch
from .config import Settings
from .handoff import Handoff, spool_batches
from .lifecycle import block_app_signals
from .sender import RECOVERY_INTERVAL, Sender, Transport
from .spool import Spool
from .stats import Stats

logger = logging.getLogger("peekapi")

JOIN_GRACE = 1.0
IN_FLIGHT_GRACE = 0.5


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
        self._handoff = Handoff(settings)
        self._batcher = Batcher(settings, buffer, spool=spool, stats=stats, handoff=self._handoff)
        self._sender = Sender(settings, buffer, transport, spool=spool, stats=stats, handoff=self._handoff)
        self._threads: list[threading.Thread] = []
        self._spooling = 0  # flush_or_spool calls in progress (one nested in another: a second signal)

    def start(self) -> None:
        """Start both threads (idempotent). Never raises."""
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=_guard(self._batcher.run), name="peekapi-batcher", daemon=True),
            threading.Thread(target=_guard(self._sender.run), name="peekapi-sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Tell the batcher a full batch is waiting. Lock-free; safe on the request path."""
        self._handoff.batcher_bell.ring()

    def flush(self, timeout: float) -> bool:
        """Send (or spool, if the endpoint fails) everything buffered now; True if done within ``timeout``.

        Interrupts a retry backoff so the next attempt is made at once. True at once when nothing waits.
        """
        if self.idle():
            return True
        marker = Latch()
        self._handoff.flush_requests.append(marker)
        self._handoff.hurry = True
        self._handoff.ring()
        return marker.wait(timeout)

    def flush_or_spool(self, timeout: float) -> bool:
        """Like :meth:`flush`, but what is not delivered within ``timeout`` is spooled; both threads go on.

        For a moment after which the process may end without atexit (see ``PeekApiClient._flush_or_spool``). A
        request still unanswered at the deadline gets ``IN_FLIGHT_GRACE``, then is cut short (a connection
        attempt too) and its batch spooled, to be sent again later under the same batch id; should the sender be
        stuck even so (a host name that does not resolve), what it holds is spooled from here. Events that fill
        a batch meanwhile are spooled too. True once everything tracked before the call was delivered, spooled
        or dropped. Blocks up to ``timeout`` + 1.5 s. Like :meth:`stop`, safe from a signal handler; a call
        nested in another (a second signal) keeps to the first one's deadline when that is sooner.
        """
        if self._handoff.closing:  # stop() has its own deadline
            return self.flush(timeout)
        handoff = self._handoff  # (closing may be set by stop() from here on)
        outermost = self._spooling == 0
        self._spooling += 1
        deadline = time.monotonic() + timeout
        if not outermost:
            deadline = min(deadline, handoff.deadline)
        handoff.deadline = deadline
        marker = Latch()
        handoff.flush_requests.append(marker)
        handoff.hurry = True
        handoff.ring()
        cut = False
        try:
            if marker.wait(max(deadline - time.monotonic(), 0.0) + IN_FLIGHT_GRACE):
                return True
            if handoff.closing:  # stop() began meanwhile: it cuts and rescues on its own deadline
                return marker.wait(JOIN_GRACE)
            cut = True
            self._transport.abort()
            handoff.ring()
            if not marker.wait(JOIN_GRACE) and not handoff.closing:
                self._rescue()
            return marker.is_set()
        finally:
            self._spooling -= 1
            # (A stop() beginning between this check and the next line would find its deadline put off; it stays
            # bounded all the same: it cuts and rescues on its own clock.)
            if outermost and not handoff.closing:
                handoff.deadline = float("inf")
                self._transport.resume()
                if cut:  # what was just spooled is not sent back to a collector that does not answer, yet
                    handoff.next_recovery = time.monotonic() + RECOVERY_INTERVAL

    def stop(self, deadline: float) -> bool:
        """Deliver everything, then stop both threads; what is not delivered by ``deadline`` is spooled.

        ``deadline`` is a ``time.monotonic()`` value. Returns True if everything was delivered or spooled and
        both threads ended. Blocks until ``deadline`` plus 1.5 s at most.
        """
        handoff = self._handoff
        handoff.deadline = deadline
        handoff.closing = True
        handoff.hurry = True
        self._transport.resume()  # were it left cut short by a flush_or_spool that this stop interrupted
        handoff.ring()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if any(t.is_alive() for t in self._threads):
            # Past the deadline the threads spool what waits; a request in flight gets a moment to be answered
            # (were it cut short, its batch would be spooled and sent again: a duplicate for a collector that
            # does not deduplicate by batch id).
            handoff.ring()
            for thread in self._threads:
                thread.join(IN_FLIGHT_GRACE)
        if any(t.is_alive() for t in self._threads):
            # Still stuck: cut the request in flight short; the threads spool what they hold and end.
            self._transport.abort()
            handoff.ring()
            for thread in self._threads:
                thread.join(JOIN_GRACE)
            if self._threads[1].is_alive():
                self._rescue()
        finished = not any(t.is_alive() for t in self._threads)
        if finished:
            self._transport.close()
            handoff.close()
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
        self._handoff.close()

    def _rescue(self) -> None:
        """Last resort when the sender is stuck past the deadline: spool what it holds from this thread.

        Should the sender still deliver a batch afterwards, its id lets the collector drop the duplicate. Past
        the deadline the batcher spools rather than hands over, so the outbox only gains flush markers meanwhile:
        those taken here are set once the batches before them are on disk.
        """
        handoff = self._handoff
        queued, markers = handoff.take_outbox()
        held = [handoff.current, *queued] if handoff.current is not None else queued
        for batch in held:
            batch.rescued = True  # should the sender come back with it: not counted, retried or spooled again
        handoff.current = None
        handoff.got_events = handoff.put_events
        self._buffer.held_elsewhere = 0
        spool_batches(self._spool, self._stats, held)
        if not handoff.closing:
            handoff.hurry = False  # the sender clears it when it sets the last marker; these it will not see
        for marker in markers:
            marker.set()

    def idle(self) -> bool:
        """Whether every event tracked so far was delivered, spooled or dropped: none in memory, being encoded, in
        the outbox or being sent. Read in that order, the order events move in: one cannot slip past unseen."""
        handoff = self._handoff
        return not len(self._buffer) and not handoff.encoding and not handoff.in_flight

    @property
    def in_flight(self) -> int:
        """Events batched but not yet delivered, spooled or dropped: in the outbox, or the batch being sent."""
        return self._handoff.in_flight


def _guard(loop: Callable[[], None]) -> Callable[[], None]:
    """A thread's target: ``loop`` with the app's signals blocked, logged and run again should it raise."""

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
