"""Delivery counters: what was tracked, sent, retried, spooled, recovered and dropped (by reason)."""

from __future__ import annotations

import logging
import threading
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
    """Counters bumped by the worker threads. Thread-safe; never touched by ``track()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.sent_batches = 0
        self.retried = 0
        self.spooled = 0
        self.recovered = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to counter ``name`` (``sent``, ``retried``, ...)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + count)

    def delivered(self, events: int, recovered: bool) -> None:
        """Record one delivered batch of ``events`` (from the spool when ``recovered``)."""
        with self._lock:
            self.sent += events
            self.sent_batches += 1
            if recovered:
                self.recovered += events

    def drop(self, reason: str, count: int) -> None:
        """Record ``count`` events dropped for ``reason``, and log it at WARNING (ERROR for losses on disk)."""
        if count <= 0:
            return
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        logger.warning("peekapi: dropped %d event(s): %s", count, reason)

    def snapshot(self, tracked: int, queue_depth: int, in_flight: int) -> StatsSnapshot:
        """A consistent copy of the counters together with the given gauges."""
        with self._lock:
            dropped = dict(self.dropped)
            return StatsSnapshot(
                tracked=tracked,
                sent=self.sent,
                sent_batches=self.sent_batches,
                retried=self.retried,
                spooled=self.spooled,
                recovered=self.recovered,
                dropped=dropped,
                dropped_total=sum(dropped.values()),
                queue_depth=queue_depth,
                in_flight=in_flight,
            )
