"""Writer: the one thread that moves batches from the :class:`WriteQueue` into the store (group commit).

Each round takes every waiting ticket (up to ``max_events`` events) and writes their batches in one transaction,
then settles each ticket, so the requests answer only after the commit. When that transaction fails, each batch
is written again alone at once, so one batch the store refuses costs no other batch anything: the ones that store
are acknowledged, the one that fails for its own data is refused (400), and when the database itself fails
(unreachable, locked, disk full, read-only) every request is told to retry (503) and the writer backs off.
"""

from __future__ import annotations

import logging
import threading

from peekapi_server.activity import QuietLog
from peekapi_server.store import Store

from .buffer import Outcome, Ticket, WriteQueue

logger = logging.getLogger("peekapi_server.writer")

#: DB-API exception classes raised for a statement's data rather than for the database's state.
_DATA_ERRORS = frozenset({"DataError", "IntegrityError"})


def is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` is about the data written (so retrying cannot help), False when about the database."""
    if isinstance(exc, (ValueError, TypeError, OverflowError, UnicodeError)):
        return True
    return any(cls.__name__ in _DATA_ERRORS for cls in type(exc).__mro__)


class Writer:
    """Owns the writer thread. ``start`` once; ``stop`` writes what is queued (within a timeout) and joins.

    The counters are written by the writer thread only; reading them from another thread is safe (ints).
    """

    def __init__(self, store: Store, queue: WriteQueue, max_events: int) -> None:
        self._store = store
        self._queue = queue
        self._max_events = max_events
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.consecutive_failures = 0
        self.events_stored = 0
        self.batches_duplicate = 0
        self.batches_refused = 0
        self.transactions = 0
        self._quiet_log = QuietLog(logger)

    def start(self) -> None:
        """Starts the thread."""
        self._thread = threading.Thread(target=self._run, name="peekapi-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Writes what is queued (up to ``timeout`` seconds), then stops the thread; anything left answers 503."""
        self._queue.wait_empty(timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self._queue.take(2**62, 0)
        for ticket in left:
            ticket.settle(Outcome.RETRY)
        self._queue.done(left)

    @property
    def healthy(self) -> bool:
        """False while the database keeps failing (three rounds in a row); a refused batch does not count."""
        return self.consecutive_failures < 3

    def _run(self) -> None:
        while not self._stopping.is_set():
            tickets = self._queue.take(self._max_events, 0.2)
            if not tickets:
                continue
            try:
                failed = self._write(tickets)
            except BaseException:  # a bug of ours: never leave a request waiting
                logger.exception("the writer failed")
                failed = True
                for ticket in tickets:
                    ticket.settle(Outcome.RETRY)
            finally:
                self._queue.done(tickets)
            if failed:
                self.consecutive_failures += 1
                self._stopping.wait(min(0.05 * 2**self.consecutive_failures, 2.0))
            else:
                self.consecutive_failures = 0

    def _write(self, tickets: list[Ticket]) -> bool:
        """Writes and settles ``tickets``; returns True when the database failed (as opposed to a batch)."""
        try:
            self._store_group(tickets)
        except Exception as exc:
            if len(tickets) == 1:
                return self._failed(tickets[0], exc)
            logger.warning("writing %d batches together failed (%s); writing each alone", len(tickets), exc)
        else:
            return False
        db_failed = True
        for ticket in tickets:
            try:
                self._store_group([ticket])
            except Exception as exc:
                if not self._failed(ticket, exc):
                    db_failed = False
            else:
                db_failed = False
        return db_failed

    def _store_group(self, tickets: list[Ticket]) -> None:
        result = self._store.write_batches([t.batch for t in tickets])
        self.transactions += 1
        self.events_stored += result.events_stored
        self.batches_duplicate += result.batches_duplicate
        for ticket in tickets:
            ticket.settle(Outcome.STORED)

    def _failed(self, ticket: Ticket, exc: Exception) -> bool:
        """Settles a batch whose write failed alone; returns True when the database is to blame."""
        batch = ticket.batch
        if is_data_error(exc):
            self.batches_refused += 1
            logger.error(
                "refusing batch %r of project %d (%d events): the store cannot take it: %r",
                batch.batch_id,
                batch.project_id,
                len(batch.events),
                exc,
            )
            ticket.settle(Outcome.REFUSED)
            return False
        # One line per kind of failure every 10 s: with the disk full, every batch fails alike.
        self._quiet_log.say(
            logging.ERROR,
            type(exc).__name__,
            "writing a batch of project %d failed, the client will retry: %r",
            batch.project_id,
            exc,
        )
        ticket.settle(Outcome.RETRY)
        return True
