"""Activity: what the collector receives and refuses, said in its log.

One WARNING line per refused request (bad key, bad body, too large, overloaded) and per batch with rejected events,
rate-limited per kind of problem (the first at once, then at most one per ``quiet_seconds`` saying how many were
left unsaid); never a secret: an unknown key shows only a short SHA-256 fingerprint. A summary at INFO every
``interval`` seconds while anything happened: events stored, rejected, requests refused, queue depth.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable

from peekapi.stats import LogThrottle

from .periodic import Periodic

logger = logging.getLogger("peekapi_server.activity")


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret in logs: ``sha256:`` and 8 hex digits of its hash."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:8]


class QuietLog:
    """Log lines rate-limited per kind: the first at once, then at most one per ``quiet_seconds``, saying how many
    were left unsaid (counted by the SDK's :class:`peekapi.stats.LogThrottle`). Thread-safe; never raises."""

    def __init__(self, log: logging.Logger, quiet_seconds: float = 10.0) -> None:
        self._log = log
        self._quiet = quiet_seconds
        self._throttle = LogThrottle(quiet_seconds)

    def say(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` at ``level``, unless a line of ``kind`` was logged less than ``quiet_seconds``
        ago (then it is counted into the next one)."""
        count = self._throttle.allow(kind)
        if not count:
            return
        if count > 1:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, count - 1, self._quiet)
        self._log.log(level, message, *args)


class Activity:
    """Counters and rate-limited log lines of one collector process. Thread-safe; no method raises."""

    def __init__(self, quiet_seconds: float = 10.0) -> None:
        self._quiet_log = QuietLog(logger, quiet_seconds)
        self._lock = threading.Lock()
        self.events_accepted = 0
        self.events_rejected = 0
        self.refused: Counter[int] = Counter()

    def _say(self, kind: str, message: str, *args: object) -> None:
        self._quiet_log.say(logging.WARNING, kind, message, *args)

    def request_refused(self, status: int, reason: str, client: str | None, key: str | None = None) -> None:
        """Counts and logs a request answered ``status`` (4xx/503) for ``reason``."""
        with self._lock:
            self.refused[status] += 1
        who = client or "?"
        if key is not None:
            self._say(
                f"{status}:{reason}", "refused a request from %s: %d %s (key %s)", who, status, reason, fingerprint(key)
            )
        else:
            self._say(f"{status}:{reason}", "refused a request from %s: %d %s", who, status, reason)

    def batch_received(self, project_id: int, accepted: int, rejected: int, first_rejection: str | None) -> None:
        """Counts a parsed batch; logs when it had rejected events, with the first one's reason."""
        with self._lock:
            self.events_accepted += accepted
            self.events_rejected += rejected
        if rejected:
            self._say(
                f"rejected:{project_id}",
                "project %d: rejected %d of %d events (first: %s)",
                project_id,
                rejected,
                accepted + rejected,
                first_rejection,
            )

    def snapshot(self) -> tuple[int, int, dict[int, int]]:
        """Events accepted and rejected, and refused requests by status, so far."""
        with self._lock:
            return self.events_accepted, self.events_rejected, dict(self.refused)


class Summary:
    """A thread that logs one INFO line every ``interval`` seconds when something happened since the last one.

    ``state`` returns the figures to report: events stored, transactions, events rejected, refused requests by
    status, and the queue depth. ``stop`` logs a last line and joins.
    """

    def __init__(self, interval: float, state: Callable[[], tuple[int, int, int, dict[int, int], int]]) -> None:
        self._state = state
        self._job = Periodic("peekapi-summary", interval, self.log_once)
        self._last: tuple[int, int, int, dict[int, int], int] = (0, 0, 0, {}, 0)

    def start(self) -> None:
        """Starts the thread (not when ``interval`` is 0)."""
        self._job.start()

    def stop(self) -> None:
        """Stops the thread after a last summary."""
        self._job.stop()
        if self._job.started:
            self.log_once()

    def log_once(self) -> None:
        """Logs the figures since the previous call, if anything changed. Never raises."""
        try:
            stored, transactions, rejected, refused, depth = now = self._state()
        except Exception:
            logger.exception("could not read the collector's figures")
            return
        p_stored, p_tx, p_rejected, p_refused, _ = self._last
        if now[:4] == self._last[:4] and not depth:
            return
        self._last = now
        delta = {s: n - p_refused.get(s, 0) for s, n in sorted(refused.items()) if n != p_refused.get(s, 0)}
        logger.info(
            "stored %d events in %d transactions, rejected %d events, refused %d requests%s; queue depth %d events",
            stored - p_stored,
            transactions - p_tx,
            rejected - p_rejected,
            sum(delta.values()),
            " (" + ", ".join(f"{s}: {n}" for s, n in delta.items()) + ")" if delta else "",
            depth,
        )
