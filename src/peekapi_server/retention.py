"""Maintenance: the background job that applies per-project retention and compacts aged rollups."""

from __future__ import annotations

import logging
import time

from .config import ServerConfig
from .periodic import Periodic
from .store import Store

logger = logging.getLogger("peekapi_server.retention")


class Maintenance:
    """Runs :meth:`Store.maintain` every ``config.maintenance_interval_seconds`` (never when it is 0)."""

    def __init__(self, store: Store, config: ServerConfig) -> None:
        self._store = store
        self._config = config
        self._job = Periodic("peekapi-maintenance", config.maintenance_interval_seconds, self.run_once)

    def start(self) -> None:
        """Starts the job's thread (a first run happens after one interval)."""
        self._job.start()

    def stop(self) -> None:
        """Stops the thread; a run in progress finishes first."""
        self._job.stop()

    def run_once(self) -> None:
        """One maintenance run now; failures are logged, never raised."""
        try:
            result = self._store.maintain(int(time.time()), batch_id_retention=self._config.batch_id_retention_seconds)
        except Exception:
            logger.exception("maintenance run failed")
            return
        logger.info(
            "maintenance: %d raw events deleted, %d rollup rows compacted, %d deleted, %d batch ids forgotten",
            result.events_deleted,
            result.rollups_compacted,
            result.rollups_deleted,
            result.batch_ids_deleted,
        )
