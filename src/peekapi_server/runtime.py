"""Collector: the running parts of one collector process (store, queue, writer, caches, maintenance, alerts).

Created by the app's lifespan and reached by handlers as ``request.app.state.collector``.
"""

from __future__ import annotations

from .activity import Activity, Summary
from .alerts.jobs import AlertJob
from .auth import CredentialCache
from .config import ServerConfig
from .queue.buffer import WriteQueue
from .queue.writer import Writer
from .retention import Maintenance
from .store import Store, open_store


class Collector:
    """Starts and stops the process's background parts; ``store`` is opened (and migrated) by :meth:`start`."""

    def __init__(self, config: ServerConfig, store: Store | None = None) -> None:
        self.config = config
        self._given_store = store
        self._store: Store | None = store

    @property
    def store(self) -> Store:
        """The open store (only after :meth:`start`)."""
        if self._store is None:
            raise RuntimeError("the collector is not started")
        return self._store

    def start(self) -> None:
        """Opens the store, then starts the writer and the maintenance job."""
        if self._store is None:
            self._store = open_store(self.config.resolved_database_url())
        self.queue = WriteQueue(self.config.queue_max_events)
        self.writer = Writer(self.store, self.queue, self.config.writer_max_events)
        self.ingest_keys = CredentialCache(self.store, "ingest", self.config.auth_cache_seconds)
        self.read_tokens = CredentialCache(self.store, "read", self.config.auth_cache_seconds)
        self.maintenance = Maintenance(self.store, self.config)
        self.activity = Activity()
        self.summary = Summary(self.config.summary_interval_seconds, self._figures)
        self.alerts = AlertJob(self.store, self.config)
        self.writer.start()
        self.maintenance.start()
        self.summary.start()
        self.alerts.start()

    def _figures(self) -> tuple[int, int, int, dict[int, int], int]:
        _, rejected, refused = self.activity.snapshot()
        w = self.writer
        return w.events_stored, w.transactions, rejected, refused, self.queue.pending_events()

    def stop(self) -> None:
        """Writes what is queued, stops the background threads and closes a store it opened itself."""
        self.alerts.stop()
        self.maintenance.stop()
        self.writer.stop()
        self.summary.stop()
        if self._given_store is None and self._store is not None:
            self._store.close()
            self._store = None
