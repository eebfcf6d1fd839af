"""The alert job: a background thread in every collector process that evaluates the rules that are due and
delivers the notifications waiting in the outbox.

Every ``alert_interval_seconds`` it runs one pass: :func:`~.evaluate.evaluate_due` (each rule is evaluated once per
minute, by whichever process gets to it first), then :func:`~.outbox.deliver_due` until nothing is due (each
notification is leased to one process at a time). Failures are logged and the loop goes on; ``stop()`` ends it
after the pass in progress.
"""

from __future__ import annotations

import logging
import time

from peekapi_server.config import ServerConfig
from peekapi_server.periodic import Periodic
from peekapi_server.store import Store

from .channels import smtp_settings
from .evaluate import evaluate_due
from .outbox import deliver_due

logger = logging.getLogger("peekapi_server.alerts")


class AlertJob:
    """Runs the alert passes on a daemon thread; never started when ``alert_interval_seconds`` is 0."""

    def __init__(self, store: Store, settings: ServerConfig) -> None:
        """Raises ``ValueError`` for a ``smtp_url`` that cannot be used, so the collector fails at start-up."""
        if settings.smtp_url:
            smtp_settings(settings.smtp_url)
        self._store = store
        self._settings = settings
        self._job = Periodic("peekapi-alerts", settings.alert_interval_seconds, self.run_once, at_start=True)

    def start(self) -> None:
        """Starts the thread (its first pass right away)."""
        self._job.start()

    def stop(self) -> None:
        """Stops the thread; a pass in progress finishes first (a few database round trips per rule, and the
        notification being sent)."""
        self._job.stop()

    def run_once(self, now: float | None = None) -> None:
        """One pass at ``now`` (default: the clock). Never raises."""
        try:
            evaluate_due(self._store, self._settings, time.time() if now is None else now)
        except Exception:
            logger.exception("alert evaluation failed")
        try:
            while deliver_due(self._store, self._settings, time.time() if now is None else now) and not (
                self._job.stopping
            ):
                pass  # a full batch was delivered: there may be more due
        except Exception:
            logger.exception("alert delivery failed")
