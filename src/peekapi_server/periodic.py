"""``Periodic``: the one home of the collector's background loops (maintenance, summaries, alerts).

A daemon thread that runs a piece of work every ``interval`` seconds until stopped; each job keeps only its work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Runs ``work()`` every ``interval`` seconds on a daemon thread named ``name`` (never when ``interval`` is 0);
    first right away when ``at_start``. ``work`` must not raise (each job logs its own failures)."""

    def __init__(self, name: str, interval: float, work: Callable[[], None], *, at_start: bool = False) -> None:
        self._name = name
        self._interval = interval
        self._work = work
        self._at_start = at_start
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called: long work may end early."""
        return self._stopping.is_set()

    def start(self) -> None:
        """Starts the thread (not when the interval is 0)."""
        if self._interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread; the work in progress finishes first."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        if self._at_start:
            self._work()
        while not self._stopping.wait(self._interval):
            self._work()
