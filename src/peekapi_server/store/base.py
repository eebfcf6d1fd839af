"""The store interface: everything the collector asks of a database, with one implementation per engine.

Both engines hold one logical schema (see :mod:`.schema`). Implementations: :class:`~.sqlite.SqliteStore`
(embedded default, one writer) and :class:`~.postgres.PostgresStore` (any number of collectors).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from peekapi_server.events import Event

if TYPE_CHECKING:
    from .alerts import AlertTables
    from .users import Session, User

CredentialKind = Literal["ingest", "read"]
JsonDict = dict[str, Any]

#: Rollup resolutions in seconds: per minute, compacted into per hour, then per day.
MINUTE, HOUR, DAY = 60, 3600, 86400
#: How old minute rollups become hourly ones, and hourly ones daily ones (``Store.maintain``'s defaults).
COMPACT_MINUTES_AFTER, COMPACT_HOURS_AFTER = DAY, 7 * DAY


def stored_resolution(ts: int, now: int) -> int:
    """The finest resolution (``MINUTE``, ``HOUR`` or ``DAY``) figures at time ``ts`` are kept at, at ``now``,
    once maintenance ran with its default ages: a series finer than that shows every hour's (or day's) figures
    in one of its buckets and nothing in the others."""
    if ts >= (now - COMPACT_MINUTES_AFTER) // HOUR * HOUR:
        return MINUTE
    if ts >= (now - COMPACT_HOURS_AFTER) // DAY * DAY:
        return HOUR
    return DAY


class StoreError(Exception):
    """A request the store cannot satisfy (unknown project, duplicate name, ...); the message says why."""


class Project(NamedTuple):
    """A project: the unit that owns keys, tokens, endpoints and events."""

    id: int
    name: str
    raw_retention_days: int
    rollup_retention_days: int
    endpoint_cap: int


class Credential(NamedTuple):
    """An ingest key or read token as listed: never the secret itself, only its public prefix."""

    id: int
    project: str
    kind: CredentialKind
    prefix: str
    created_at: int
    revoked_at: int | None


class Batch(NamedTuple):
    """One accepted request body on its way to the store. ``batch_id`` is ``x-peekapi-batch-id`` or ``None``."""

    project_id: int
    batch_id: str | None
    events: list[Event]


class WriteResult(NamedTuple):
    """What one :meth:`Store.write_batches` call stored: duplicates were acknowledged and skipped."""

    batches_stored: int
    batches_duplicate: int
    events_stored: int


class MaintenanceResult(NamedTuple):
    """Rows removed or moved by one :meth:`Store.maintain` run."""

    events_deleted: int
    rollups_compacted: int
    rollups_deleted: int
    batch_ids_deleted: int


@dataclass(frozen=True)
class ReadQuery:
    """A read API query: ``[start, end)`` in epoch seconds, optional filters, the series interval in seconds.

    ``endpoint`` matches a route (any method unless ``method`` is set); ``consumer`` the consumer id as sent;
    ``status_class`` is 1..5 (``4`` means 4xx). ``limit`` caps table rows and recent events.
    """

    start: int
    end: int
    interval: int = HOUR
    endpoint: str | None = None
    consumer: str | None = None
    method: str | None = None
    status_class: int | None = None
    limit: int = 100

    @property
    def filtered(self) -> bool:
        """True when any dimension filter is set (so the per-dimension rollups must be read)."""
        return any(v is not None for v in (self.endpoint, self.consumer, self.method, self.status_class))


class Store(abc.ABC):
    """Everything the collector stores and reads. Thread-safe; every method is one transaction."""

    url: str

    @abc.abstractmethod
    def migrate(self) -> int:
        """Creates or migrates the schema to the latest version (safe to call concurrently); returns it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases connections. The store is unusable afterwards."""

    # -- projects and credentials ------------------------------------------------------------------
    @abc.abstractmethod
    def create_project(
        self, name: str, raw_retention_days: int = 14, rollup_retention_days: int = 400, endpoint_cap: int = 500
    ) -> Project:
        """Creates a project; :class:`StoreError` when the name is taken or invalid."""

    @abc.abstractmethod
    def get_project(self, name: str) -> Project:
        """The project called ``name``; :class:`StoreError` when there is none."""

    @abc.abstractmethod
    def list_projects(self) -> list[Project]:
        """Every project, by name."""

    @abc.abstractmethod
    def create_credential(self, project: str, kind: CredentialKind) -> tuple[Credential, str]:
        """A new ingest key or read token for ``project``: its listing and the secret (shown once, stored hashed)."""

    @abc.abstractmethod
    def list_credentials(self, project: str | None, kind: CredentialKind) -> list[Credential]:
        """Credentials of one kind, of one project or of all."""

    @abc.abstractmethod
    def revoke_credential(self, ident: str, kind: CredentialKind) -> Credential:
        """Revokes the credential with this id or prefix; :class:`StoreError` when none matches."""

    @abc.abstractmethod
    def authenticate(self, secret: str, kind: CredentialKind) -> int | None:
        """The project id a live credential of this kind belongs to, else ``None`` (constant-time compare)."""

    # -- writes ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def write_batches(self, batches: Sequence[Batch]) -> WriteResult:
        """Stores batches atomically: raw events, endpoints, consumers, per-minute rollups and histograms.

        A batch whose ``batch_id`` is already stored for its project (or earlier in ``batches``) is skipped,
        in the same transaction that records the id, so a retried batch is never counted twice.
        """

    @abc.abstractmethod
    def maintain(
        self,
        now: int,
        compact_minutes_after: int = COMPACT_MINUTES_AFTER,
        compact_hours_after: int = COMPACT_HOURS_AFTER,
        batch_id_retention: int = 14 * DAY,
        delete_chunk: int = 20_000,
    ) -> MaintenanceResult:
        """Applies retention (raw events, rollups, batch ids) and compacts aged rollups, for every project.

        Raw events are deleted ``delete_chunk`` rows per transaction, so writers wait only briefly.

        Minute rollups older than ``compact_minutes_after`` seconds become hourly ones, hourly ones older than
        ``compact_hours_after`` daily ones; figures and histograms are preserved exactly by the move.
        """

    # -- reads -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def overview(self, project_id: int, q: ReadQuery) -> JsonDict:
        """Time series (requests, errors, error rate, p50/p95/p99, bytes) and totals for the query."""

    @abc.abstractmethod
    def endpoints_table(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        """One row per endpoint (method + route) with counts, error rate, latency percentiles and bytes."""

    @abc.abstractmethod
    def consumers_table(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        """One row per consumer with counts, error rate, latency percentiles and bytes."""

    @abc.abstractmethod
    def status_codes(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        """Request counts per status code."""

    @abc.abstractmethod
    def latency_histogram(self, project_id: int, q: ReadQuery) -> list[tuple[int, int]]:
        """The merged latency histogram of the query: ``(bucket, count)`` pairs by bucket (see ``histogram``)."""

    @abc.abstractmethod
    def recent_events(self, project_id: int, q: ReadQuery, before: tuple[int, int] | None = None) -> list[JsonDict]:
        """Raw events newest first (by timestamp, then id), at most ``q.limit``.

        ``before`` is the ``(ts_ms, id)`` of the last event of the previous page, to page further back.
        """

    def iter_events(self, project_id: int, q: ReadQuery, chunk: int = 5000) -> Iterator[JsonDict]:
        """Every raw event matching ``q``, newest first, fetched in chunks (for export)."""
        before: tuple[int, int] | None = None
        page = ReadQuery(q.start, q.end, q.interval, q.endpoint, q.consumer, q.method, q.status_class, chunk)
        while True:
            rows = self.recent_events(project_id, page, before)
            yield from rows
            if len(rows) < chunk:
                return
            before = (int(rows[-1]["ts_ms"]), int(rows[-1]["id"]))

    @abc.abstractmethod
    def count_events(self, project_id: int) -> int:
        """How many raw events the project holds (for tests and operators)."""

    # -- dashboard users, sessions and settings (SQL in :mod:`.users`) ------------------------------
    @abc.abstractmethod
    def create_user(self, name: str, password_hash: str) -> User:
        """Adds a dashboard user; :class:`StoreError` when the name is taken or invalid."""

    @abc.abstractmethod
    def get_user(self, name: str) -> User | None:
        """The user called ``name``, else ``None``."""

    @abc.abstractmethod
    def set_user_password(self, name: str, password_hash: str) -> None:
        """Replaces a user's password hash and ends their sessions; :class:`StoreError` for an unknown user."""

    @abc.abstractmethod
    def count_users(self) -> int:
        """How many dashboard users exist."""

    @abc.abstractmethod
    def list_users(self) -> list[tuple[str, int]]:
        """Every dashboard user's name and creation time (epoch seconds), by name."""

    @abc.abstractmethod
    def delete_user(self, name: str) -> None:
        """Removes a dashboard user and ends their sessions; :class:`StoreError` for an unknown user or the last."""

    # -- alerts ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def alerts(self, write: bool) -> AbstractContextManager[AlertTables]:
        """The alert tables inside one transaction (``write``: one that may change them); commits on success."""

    @abc.abstractmethod
    def alert_lock(self, name: str) -> AbstractContextManager[bool]:
        """Holds a lock named ``name`` across every process of this database while the block runs; yields
        ``False`` at once (without waiting) when another holder has it."""

    @abc.abstractmethod
    def recent_login_failures(self, keys: list[str], since: int) -> dict[str, int]:
        """Failed dashboard logins per key (``user:NAME``, ``addr:IP``) at or after ``since`` (epoch seconds)."""

    @abc.abstractmethod
    def record_login_failure(self, keys: list[str], now: int, forget_before: int) -> None:
        """Records a failed login under each key, and forgets every failure older than ``forget_before``."""

    @abc.abstractmethod
    def create_session(self, token_hash: str, user_id: int, csrf: str, expires_at: int) -> None:
        """Stores a dashboard session under the SHA-256 of its token (expired sessions are deleted)."""

    @abc.abstractmethod
    def get_session(self, token_hash: str) -> Session | None:
        """The unexpired session with this token hash, else ``None``."""

    @abc.abstractmethod
    def delete_session(self, token_hash: str) -> None:
        """Ends a session."""

    @abc.abstractmethod
    def set_retention(self, project: str, raw_retention_days: int, rollup_retention_days: int) -> Project:
        """Sets a project's retention (days, 1..36500 each); :class:`StoreError` for bad values or no project."""
