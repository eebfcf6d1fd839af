"""ServerConfig: every collector default in one place, and where the database lives by default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_DATABASE_URL = "PEEKAPI_DATABASE_URL"
#: Set by ``peekapi serve --workers N`` for its worker processes: ``--summary-seconds``.
ENV_SUMMARY_SECONDS = "PEEKAPI_SUMMARY_SECONDS"
#: ``peekapi serve``'s ``--public-url`` and ``--smtp-url`` default to these (and its workers read them).
ENV_PUBLIC_URL = "PEEKAPI_PUBLIC_URL"
ENV_SMTP_URL = "PEEKAPI_SMTP_URL"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/peekapi`` or ``~/.local/share/peekapi``."""
    base = os.environ.get("XDG_DATA_HOME") or ""
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "peekapi"


def default_database_url() -> str:
    """``$PEEKAPI_DATABASE_URL`` when set, else a SQLite file in :func:`default_data_dir`."""
    env = os.environ.get(ENV_DATABASE_URL, "").strip()
    if env:
        return env
    return f"sqlite:///{default_data_dir() / 'peekapi.db'}"


@dataclass(frozen=True)
class ServerConfig:
    """Collector settings. Every field has its default here and nowhere else.

    ``database_url`` is ``sqlite:///PATH`` (or a bare file path) or ``postgresql://...``.
    Sizes are bytes, durations seconds.
    """

    database_url: str = ""
    #: Largest request body accepted, compressed or not (413 above it).
    max_body_bytes: int = 5 * 1024 * 1024
    #: Largest body after gzip decompression (413 above it): the gzip-bomb guard.
    max_decompressed_bytes: int = 20 * 1024 * 1024
    #: Events held in memory between the ingest endpoint and the writer; a full queue answers 503.
    queue_max_events: int = 200_000
    #: Events written per database transaction at most.
    writer_max_events: int = 10_000
    #: Seconds a client is asked to wait (``Retry-After``) when the queue is full or the database fails.
    retry_after_seconds: int = 1
    #: Seconds a request waits for the writer to take its batch before answering 503 (the SDKs time out at 5 s).
    ack_timeout_seconds: float = 4.0
    #: Seconds between the INFO summaries of what was stored and refused (0: none).
    summary_interval_seconds: float = 60.0
    #: Seconds an ingest key or read token lookup is cached (revocation takes effect within this).
    auth_cache_seconds: float = 5.0
    #: Events whose timestamp is further in the past than this are clamped to it.
    max_event_age_seconds: int = 31 * 86400
    #: Events whose timestamp is further in the future than this are clamped to now.
    max_clock_skew_seconds: int = 300
    #: Seconds between runs of the retention and compaction job (0 disables the job).
    maintenance_interval_seconds: float = 300.0
    #: Seconds a batch id is remembered for deduplication.
    batch_id_retention_seconds: int = 14 * 86400
    #: Seconds between two passes of the alert job (rules evaluated once per whole minute; 0 disables alerts).
    alert_interval_seconds: float = 10.0
    #: The collector's address as users reach it, for the links in notifications (default: where it listens).
    public_url: str = ""
    #: Where email notifications leave: ``smtp://[user:password@]host[:port]?from=ADDRESS[&starttls=true]
    #: [&cafile=PATH]`` (``smtps://`` for TLS from the start); empty: email channels fail with a clear reason.
    smtp_url: str = ""

    def resolved_database_url(self) -> str:
        """The database URL to use: the configured one, else :func:`default_database_url`."""
        return self.database_url or default_database_url()

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_decompressed_bytes", "queue_max_events", "writer_max_events"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ServerConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.ack_timeout_seconds <= 0:
            raise ValueError(f"ServerConfig.ack_timeout_seconds must be positive, got {self.ack_timeout_seconds!r}")
        if (
            self.auth_cache_seconds < 0
            or self.maintenance_interval_seconds < 0
            or self.summary_interval_seconds < 0
            or self.alert_interval_seconds < 0
        ):
            raise ValueError("ServerConfig durations must not be negative")
