"""The alert job: a background thread in every collector process that evaluates the rules that are due.

Every ``alert_interval_seconds`` it runs one pass of :func:`~.evaluate.evaluate_due` (each rule is evaluated once
per minute, by whichever process gets to it first). Failures are logged and the loop goes on; ``stop()`` ends it
after the pass in progress.
"""

from __future__ import annotations

import logging
import threading
import time

from peekapi_server.config import ServerConfig
from peekapi_server.store import Store

from .evaluate import evaluate_due

logger = logging.getLogger("peekapi_server.alerts")


class AlertJob:
    """Runs the alert passes on a daemon thread; never started when ``alert_interval_seconds`` is 0."""

    def __init__(self, store: Store, settings: ServerConfig) -> None:
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
            logger.exception("alert pass failed")

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stopping.wait(self._settings.alert_interval_seconds):
                return
