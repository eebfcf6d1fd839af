"""Writer: the one thread that moves batches from the :class:`WriteQueue` into the store.

Each round takes whole batches (up to ``max_events``) and writes them in one transaction. A failed write is
retried with backoff; a group that keeps failing is split into single batches, and a single batch that still
fails after ``MAX_ATTEMPTS`` is logged and dropped, so one poisonous batch cannot stall the collector.
"""

from __future__ import annotations

import logging
import threading

from peekapi_server.store import Batch, Store

from .buffer import WriteQueue

logger = logging.getLogger("peekapi_server.writer")

MAX_ATTEMPTS = 5


class Writer:
    """Owns the writer thread. ``start`` once; ``stop`` drains what is queued (within a timeout) and joins."""

    def __init__(self, store: Store, queue: WriteQueue, max_events: int) -> None:
        self._store = store
        self._queue = queue
        self._max_events = max_events
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.consecutive_failures = 0
        self.events_stored = 0
        self.batches_duplicate = 0

    def start(self) -> None:
        """Starts the thread."""
        self._thread = threading.Thread(target=self._run, name="peekapi-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Writes what is queued (up to ``timeout`` seconds), then stops the thread."""
        self._queue.wait_empty(timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        """False while writes keep failing."""
        return self.consecutive_failures < 3

    def _run(self) -> None:
        while not self._stopping.is_set():
            batches = self._queue.take(self._max_events, 0.2)
            if not batches:
                continue
            try:
                self._write(batches)
            finally:
                self._queue.done(batches)

    def _write(self, batches: list[Batch]) -> None:
        groups = [batches]
        attempt = 0
        while groups:
            group = groups[0]
            try:
                result = self._store.write_batches(group)
            except Exception:
                attempt += 1
                self.consecutive_failures += 1
                logger.exception("writing %d batch(es) failed (attempt %d)", len(group), attempt)
                if attempt >= MAX_ATTEMPTS:
                    if len(group) > 1:
                        groups = [[b] for b in group] + groups[1:]
                    else:
                        bad = group[0]
                        logger.error(
                            "dropping batch %r of project %d (%d events) after %d failed attempts",
                            bad.batch_id,
                            bad.project_id,
                            len(bad.events),
                            attempt,
                        )
                        groups.pop(0)
                    attempt = 0
                if self._stopping.wait(min(0.1 * 2**attempt, 5.0)) and attempt:
                    logger.error("stopping with %d unwritten batch(es)", sum(len(g) for g in groups))
                    return
                continue
            self.consecutive_failures = 0
            self.events_stored += result.events_stored
            self.batches_duplicate += result.batches_duplicate
            groups.pop(0)
            attempt = 0
