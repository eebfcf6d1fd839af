"""Delivery counters: what was tracked, sent, retried, spooled, recovered and dropped (by reason).

Lock-free: each thread counts in its own cell (a dict only that thread writes), and a snapshot adds the cells
up. So a signal handler that interrupts a thread in the middle of counting never waits for a lock it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TypedDict

logger = logging.getLogger("peekapi")

DROP_REASONS = (
    "invalid",  # not an event, or a required field that cannot be repaired
    "too_large",  # over max_event_bytes even without metadata
    "buffer_full",  # memory full and the worker could not keep up
    "rejected",  # a final 4xx from the endpoint
    "spool_full",  # could not be delivered and the spool is at max_storage_bytes
    "spool_error",  # could not be delivered and the spool could not be written (read-only, disk full)
    "spool_disabled",  # could not be delivered and max_storage_bytes is 0
    "spool_corrupt",  # a corrupt or truncated spool line (counted in lines, not events)
    "closed",  # tracked after shutdown()
)
COUNTERS = ("sent", "sent_batches", "retried", "spooled", "recovered")


#: A kind of log line (a drop reason, a repair) is written at most once per this many seconds: a stream of bad
#: events must not flood the application's log. The events held back are counted into the next line.
LOG_INTERVAL = 10.0


class LogThrottle:
    """Lets one log line per key through every ``interval`` seconds; counts what it holds back. Thread-safe enough:
    two threads racing on one key may both log, never fewer. Never raises."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, count: int = 1) -> int:
        """``count`` plus what was held back for ``key`` when a line may be written now (that many to report),
        else 0 (``count`` is held back)."""
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + count
            return 0
        self._next[key] = now + self._interval
        return count + self._held.pop(key, 0)


class StatsSnapshot(TypedDict):
    """A point-in-time copy of the counters; see ``PeekApiClient.stats``."""

    tracked: int
    sent: int
    sent_batches: int
    retried: int
    spooled: int
    recovered: int
    dropped: dict[str, int]
    dropped_total: int
    queue_depth: int
    in_flight: int


class Stats:
    """Counters bumped by the worker threads (and by shutdown). Thread-safe without locks."""

    def __init__(self) -> None:
        self._cells: dict[int, dict[str, int]] = {}
        #: The endpoint's answer to the last batch it rejected ("HTTP 401 Unauthorized: ..."), or "".
        self.last_rejection = ""
        self._log = LogThrottle()

    def _cell(self) -> dict[str, int]:
        ident = threading.get_ident()
        cell = self._cells.get(ident)
        if cell is None:
            cell = self._cells.setdefault(ident, dict.fromkeys(COUNTERS + DROP_REASONS, 0))
        return cell

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to counter ``name`` (``sent``, ``retried``, ``spooled`` ...)."""
        self._cell()[name] += count

    def delivered(self, events: int, recovered: bool) -> None:
        """Record one delivered batch of ``events`` (from the spool when ``recovered``)."""
        cell = self._cell()
        cell["sent"] += events
        cell["sent_batches"] += 1
        if recovered:
            cell["recovered"] += events

    def reject(self, count: int, answer: str) -> None:
        """Record ``count`` events of a batch the endpoint rejected (a final 4xx) with ``answer``; log at WARNING."""
        self.last_rejection = answer
        self.drop("rejected", count)

    def drop(self, reason: str, count: int, detail: str = "") -> None:
        """Record ``count`` events dropped for ``reason`` and log it at WARNING, with ``detail`` (why, for one of
        them) if given: at most one line per reason every ``LOG_INTERVAL`` seconds, counting those held back."""
        if count <= 0:
            return
        self._cell()[reason] += count
        reported = self._log.allow(reason, count)
        if reported:
            logger.warning("peekapi: dropped %d event(s): %s%s", reported, reason, f" ({detail})" if detail else "")

    def snapshot(self, tracked: int, queue_depth: int, in_flight: int, closed: int) -> StatsSnapshot:
        """The counters summed over all threads, with the given gauges and ``closed`` (counted by the buffer)."""
        totals = dict.fromkeys(COUNTERS + DROP_REASONS, 0)
        totals["closed"] = closed
        for cell in list(self._cells.values()):
            for name, value in list(cell.items()):
                totals[name] += value
        dropped = {reason: totals[reason] for reason in DROP_REASONS}
        return StatsSnapshot(
            tracked=tracked,
            sent=totals["sent"],
            sent_batches=totals["sent_batches"],
            retried=totals["retried"],
            spooled=totals["spooled"],
            recovered=totals["recovered"],
            dropped=dropped,
            dropped_total=sum(dropped.values()),
            queue_depth=queue_depth,
            in_flight=in_flight,
        )
