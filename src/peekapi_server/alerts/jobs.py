"""The alert job: a background thread in every collector process that evaluates the rules that are due and
delivers the notifications waiting in the outbox.

Every ``alert_interval_seconds`` it runs one pass: :func:`~.evaluate.evaluate_due` (each rule is evaluated once per
minute, by whichever process gets to it first), then :func:`~.outbox.deliver_due` until nothing is due (each
notification is leased to one process at a time). Failures are logged and the loop goes on; ``stop()`` ends it
after the pass in progress.
"""

from __future__ import annotations

import logging
import threading
import time

from peekapi_server.config import ServerConfig
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
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the thread (its first pass right away)."""
        if self._settings.alert_interval_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="peekapi-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread; a pass in progress finishes first (a few database round trips per rule)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def run_once(self, now: float | None = None) -> None:
        """One pass at ``now`` (default: the clock). Never raises."""
        try:
            evaluate_due(self._store, self._settings, time.time() if now is None else now)
        except Exception:
            logger.exception("alert evaluation failed")
        try:
            while deliver_due(self._store, self._settings, time.time() if now is None else now) and not (
                self._stopping.is_set()
            ):
                pass  # a full batch was delivered: there may be more due
        except Exception:
            logger.exception("alert delivery failed")

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stopping.wait(self._settings.alert_interval_seconds):
                return
