"""``PeekApiClient``: the facade that wires buffer, worker, transport, spool and lifecycle together."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from . import lifecycle
from .buffer import TRACKED_AT, Entry, EventBuffer, Latch
from .config import DEFAULT_EXIT_TIMEOUT, Options, Settings, resolve_options
from .event import RequestEvent
from .spool import Spool
from .stats import Stats, StatsSnapshot
from .transport import HttpTransport
from .worker import Worker

logger = logging.getLogger("peekapi")

DEFAULT_FLUSH_TIMEOUT = 10.0


class PeekApiClient:
    """Buffers request events and delivers them, batched, to the ingestion endpoint.

    ``PeekApiClient(options)`` validates ``options`` (an ``Options`` or a dict) and raises ``ValueError`` for
    anything wrong. It then starts two daemon threads, recovers what an earlier run left in the spool, and
    registers itself to flush at interpreter exit, on SIGTERM/SIGINT (when created on the main thread) and
    to keep working in a forked child. ``track()`` is safe and cheap from any thread or event loop.
    """

    def __init__(self, options: Options | Mapping[str, Any] | None = None) -> None:
        self._settings = resolve_options(options)
        if self._settings.debug:
            _enable_debug_logging()
        self._stats = Stats()
        self._closed = False
        self._shutdown_lock = threading.Lock()
        self._shutdown_owner = 0
        self._shutdown_result = False
        self._shutdown_done = Latch()
        self._spool = Spool(self._settings.storage_dir, self._settings.max_storage_bytes)
        self._pid = os.getpid()
        self._buffer, self._worker = self._make_worker()
        self._flush_mark = self.stats()  # what flush() compares with: the counters at the previous flush
        self._flush_lock = threading.Lock()
        self._worker.start()
        lifecycle.register(self, DEFAULT_EXIT_TIMEOUT, self._settings.handle_signals)
        logger.debug(
            "peekapi: client started for %s (spool: %s)",
            self._settings.endpoint.origin,
            self._settings.storage_dir,
        )

    def _make_worker(self) -> tuple[EventBuffer, Worker]:
        settings = self._settings
        buffer = EventBuffer(settings.max_buffer_size, settings.batch_size)
        transport = HttpTransport(settings.endpoint, settings.api_key, settings.request_timeout)
        worker = Worker(settings, buffer, transport, self._spool, self._stats)
        buffer.wake = worker.wake
        return buffer, worker

    @property
    def settings(self) -> Settings:
        """The validated configuration this client runs on."""
        return self._settings

    @property
    def identify_consumer(self) -> Any:
        """The user's ``identify_consumer`` callback, or None (kept for compatibility with peekapi 0.1)."""
        return self._settings.identify_consumer

    @property
    def collect_query_string(self) -> bool:
        """Whether middleware appends the sorted query string to the path."""
        return self._settings.collect_query_string

    def track(self, event: RequestEvent | Mapping[str, Any]) -> None:
        """Queue one event for delivery. O(1): no I/O, no JSON, no lock. Never raises; thread-safe.

        The event is validated and encoded later, in the background: a malformed one is dropped alone (and
        counted). Events tracked after ``shutdown()`` are dropped and counted as ``closed``.
        """
        if type(event) is dict:
            self._track_owned(event.copy())  # the caller may reuse its dict
        else:
            self._enqueue((event, time.time()))

    def _track_owned(self, event: dict[str, object]) -> None:
        """``track()`` for a dict the caller hands over and never touches again (the middleware's): no copy.

        Same contract as ``track()``: O(1), no lock, never raises.
        """
        event[TRACKED_AT] = time.time()
        self._enqueue(event)

    def _enqueue(self, entry: Entry) -> None:
        """Offer a buffer entry (counted as ``closed`` after shutdown); the buffer wakes the worker. Never raises."""
        try:
            self._buffer.offer(entry)
        except Exception:  # pragma: no cover - defensive: track() must never raise into the app
            logger.exception("peekapi: track() failed")

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything tracked so far; True only when all of it was delivered (answered with a 2xx).

        Waits until every event tracked before the call was delivered, spooled to disk (the endpoint kept
        failing; it is re-sent later) or dropped (rejected by the endpoint with a final 4xx, or for a reason in
        ``stats()["dropped"]``), at most ``timeout`` seconds (default 10). Returns False when any event tracked
        was spooled or dropped since the previous ``flush()``, or when the time ran out, and logs what happened
        under the ``peekapi`` logger: spooled, rejected (with the endpoint's answer) and dropped counts at
        WARNING, events still on their way at INFO. Interrupts a retry wait. Never raises; thread-safe.
        """
        return self._settle("flush()", DEFAULT_FLUSH_TIMEOUT if timeout is None else timeout, spool=False)

    def _flush_or_spool(self, timeout: float) -> bool:
        """``flush()``, except that what is not delivered within ``timeout`` is spooled; the client goes on.

        For the moments after which the process may end without running atexit: a SIGTERM under a server that
        shuts down gracefully (uvicorn restores the default action and raises the signal again once it is done,
        which skips atexit) and the ASGI lifespan shutdown. A request unanswered at the deadline is cut short
        and its batch spooled. Blocks up to ``timeout`` + 1.5 s. Never raises; safe from a signal handler.
        """
        return self._settle("flush at shutdown", timeout, spool=True)

    def _settle(self, name: str, timeout: float, spool: bool) -> bool:
        """``flush()`` and ``_flush_or_spool()``: wait, then say what happened since the previous one. Never raises."""
        try:
            if self._closed:  # shutdown() delivered or spooled what there was: say which
                return self._flush_outcome(name, self._shutdown_done.is_set())
            worker = self._worker
            handled = worker.flush_or_spool(timeout) if spool else worker.flush(timeout)
            return self._flush_outcome(name, handled)
        except Exception:  # pragma: no cover - defensive
            logger.exception("peekapi: %s failed", name)
            return False

    def _flush_outcome(self, name: str, handled: bool) -> bool:
        """Whether everything since the previous flush was delivered; logs what was not. Never raises."""
        # Concurrent flushes each account for their own interval. Bounded wait: a flush from a signal handler may
        # interrupt this very thread inside the block; it then reports without the counts.
        if not self._flush_lock.acquire(timeout=0.5):
            return False
        try:
            stats = self.stats()
            before, self._flush_mark = self._flush_mark, stats
        finally:
            self._flush_lock.release()
        spooled = stats["spooled"] - before["spooled"]
        dropped = {
            reason: count - before["dropped"][reason]
            for reason, count in stats["dropped"].items()
            if count > before["dropped"][reason] and reason != "spool_corrupt"  # old lines, not these events
        }
        rejected = dropped.pop("rejected", 0)
        if spooled:
            logger.warning("peekapi: %s: %d event(s) spooled to disk, not delivered (re-sent later)", name, spooled)
        if rejected:
            logger.warning(
                "peekapi: %s: %d event(s) rejected by the endpoint (%s); not delivered, not retried",
                name,
                rejected,
                self._stats.last_rejection or "no reason given",
            )
        if dropped:
            listed = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items()))
            logger.warning("peekapi: %s: event(s) dropped, not delivered: %s", name, listed)
        if not handled:
            logger.info(
                "peekapi: %s: timed out with %d event(s) in memory and %d being sent",
                name,
                stats["queue_depth"],
                stats["in_flight"],
            )
        return handled and not spooled and not rejected and not dropped

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver everything buffered, spool what cannot be delivered by the deadline, and stop.

        ``timeout`` defaults to the ``shutdown_timeout`` option (5 s). Idempotent: a second call waits for
        the first. Returns True when nothing was left undelivered-and-unspooled. Never raises; thread-safe.
        """
        limit = self._settings.shutdown_timeout if timeout is None else timeout
        if not self._shutdown_lock.acquire(blocking=False):
            if not self._shutdown_done.is_set() and self._shutdown_owner == threading.get_ident():
                # A second signal while this thread is inside the first shutdown: the first cannot go on under
                # us, so spool what is left at once (bounded) and let the signal take its course.
                self._worker.stop(time.monotonic())
                return False
            return self._shutdown_done.wait(limit + 2.0) and self._shutdown_result
        self._shutdown_owner = threading.get_ident()
        try:
            self._closed = True
            self._buffer.close()
            finished = self._worker.stop(time.monotonic() + limit)
            swept = self._worker.sweep()  # appended in the instant the buffer closed: spooled, not left behind
            if swept:
                logger.debug("peekapi: %d event(s) tracked as shutdown began were spooled", swept)
            lifecycle.unregister(self)
            stats = self.stats()
            logger.debug("peekapi: shut down: %s", stats)
            self._shutdown_result = finished and stats["queue_depth"] == 0 and stats["in_flight"] == 0
            return self._shutdown_result
        except Exception:  # pragma: no cover - defensive
            logger.exception("peekapi: shutdown() failed")
            return False
        finally:
            self._shutdown_done.set()

    def stats(self) -> StatsSnapshot:
        """Counters since start: tracked, sent, retried, spooled, recovered, dropped by reason, queue depth."""
        buffer = self._buffer
        worker = self._worker
        queued = len(buffer)
        closed = buffer.dropped_closed.value
        return self._stats.snapshot(
            tracked=buffer.taken + queued + buffer.dropped_full.value + closed,
            queue_depth=queued,
            in_flight=worker.in_flight,
            closed=closed,
        )

    # -- lifecycle hooks (called by peekapi.lifecycle) ----------------------------------------------------

    def _on_exit(self, timeout: float) -> None:
        self.shutdown(min(timeout, self._settings.shutdown_timeout))

    def _after_fork(self) -> None:
        """In a forked child: a fresh buffer, worker and connection; the parent sends what it had buffered."""
        self._pid = os.getpid()
        self._shutdown_lock = threading.Lock()
        self._shutdown_done = Latch()
        self._stats = Stats()
        self._worker.discard_after_fork()
        self._buffer, self._worker = self._make_worker()
        self._flush_mark = self.stats()
        self._flush_lock = threading.Lock()
        if self._closed:
            self._buffer.close()
        else:
            self._worker.start()


def _enable_debug_logging() -> None:
    """``debug=True``: the ``peekapi`` logger at DEBUG, and a stderr handler unless logging is set up already (a
    handler on it or on the root: the lines would be written twice)."""
    peek = logging.getLogger("peekapi")
    peek.setLevel(logging.DEBUG)
    if not peek.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))  # lines say "peekapi:"
        peek.addHandler(handler)
