"""The alerts' SQL: rules, channels, per-group states and their history, and the notification outbox.

``Store.alerts(write)`` opens a transaction and hands out an :class:`AlertTables` bound to it; every method runs
inside that transaction. Rule specs are JSON text here (``peekapi_server.alerts.rules`` reads and checks them):
the store knows tables, not rules.

The outbox is claimed row by row with a conditional ``UPDATE`` (a lease in ``claimed_until``), so any number of
collector processes can deliver from it and each row is sent by one of them at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .base import StoreError
from .tx import Row, Tx


class StoredChannel(NamedTuple):
    id: int
    project_id: int
    name: str
    kind: str
    target: str
    secret: str | None
    created_at: int


class StoredRule(NamedTuple):
    id: int
    project_id: int
    project: str
    name: str
    spec: str
    silenced_until: int
    evaluated_upto: int
    created_at: int
    updated_at: int


class AlertState(NamedTuple):
    """Where one rule stands for one group (``group_key`` ``""`` when the rule is not grouped)."""

    rule_id: int
    group_key: str
    state: str
    since: int
    value: float | None
    evaluated_at: int
    notified_at: int


class HistoryRow(NamedTuple):
    rule_id: int
    group_key: str
    at: int
    state: str
    value: float | None
    threshold: float


class OutboxItem(NamedTuple):
    """One notification for one channel; ``payload`` is its JSON, ``message_id`` its idempotency key."""

    id: int
    rule_id: int | None
    channel_id: int
    message_id: str
    payload: str
    attempts: int
    created_at: int
    delivered_at: int | None
    failed_at: int | None
    last_error: str | None


_RULE_COLS = (
    "r.id, r.project_id, p.name, r.name, r.spec, r.silenced_until, r.evaluated_upto, r.created_at, r.updated_at"
)
_CHANNEL_COLS = "id, project_id, name, kind, target, secret, created_at"
_OUTBOX_COLS = "id, rule_id, channel_id, message_id, payload, attempts, created_at, delivered_at, failed_at, last_error"


def _rule(r: Row) -> StoredRule:
    return StoredRule(
        int(r[0]),
        int(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        int(r[5]),
        int(r[6]),
        int(r[7]),
        int(r[8]),
    )


def _channel(r: Row) -> StoredChannel:
    return StoredChannel(
        int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), None if r[5] is None else str(r[5]), int(r[6])
    )


def _outbox(r: Row) -> OutboxItem:
    return OutboxItem(
        int(r[0]),
        None if r[1] is None else int(r[1]),
        int(r[2]),
        str(r[3]),
        str(r[4]),
        int(r[5]),
        int(r[6]),
        None if r[7] is None else int(r[7]),
        None if r[8] is None else int(r[8]),
        None if r[9] is None else str(r[9]),
    )


class AlertTables:
    """The alert tables inside one transaction. Methods raise :class:`StoreError` for a name taken or unknown."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    # -- channels --------------------------------------------------------------------------------------------
    def create_channel(
        self, project_id: int, name: str, kind: str, target: str, *, secret: str | None, now: int
    ) -> StoredChannel:
        if self.tx.rows("SELECT id FROM alert_channels WHERE project_id = ? AND name = ?", (project_id, name)):
            raise StoreError(f"a channel named {name!r} already exists")
        self.tx.run(
            "INSERT INTO alert_channels (project_id, name, kind, target, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (project_id, name, kind, target, secret, now),
        )
        found = self.channel(project_id, name)
        if found is None:  # pragma: no cover - created and deleted by another process in between
            raise StoreError(f"the channel {name!r} could not be created")
        return found

    def channel(self, project_id: int, name: str) -> StoredChannel | None:
        rows = self.tx.rows(
            f"SELECT {_CHANNEL_COLS} FROM alert_channels WHERE project_id = ? AND name = ?", (project_id, name)
        )
        return _channel(rows[0]) if rows else None

    def channels(self, project_id: int) -> list[StoredChannel]:
        rows = self.tx.rows(
            f"SELECT {_CHANNEL_COLS} FROM alert_channels WHERE project_id = ? ORDER BY name", (project_id,)
        )
        return [_channel(r) for r in rows]

    def channels_by_id(self, ids: Sequence[int]) -> dict[int, StoredChannel]:
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = self.tx.rows(f"SELECT {_CHANNEL_COLS} FROM alert_channels WHERE id IN ({marks})", list(ids))
        return {int(r[0]): _channel(r) for r in rows}

    def delete_channel(self, project_id: int, name: str) -> None:
        if not self.tx.run("DELETE FROM alert_channels WHERE project_id = ? AND name = ?", (project_id, name)):
            raise StoreError(f"no channel named {name!r}")

    # -- rules -----------------------------------------------------------------------------------------------
    def create_rule(self, project_id: int, name: str, spec: str, now: int) -> StoredRule:
        if self.tx.rows("SELECT id FROM alert_rules WHERE project_id = ? AND name = ?", (project_id, name)):
            raise StoreError(f"a rule named {name!r} already exists")
        # evaluation starts with the next whole minute
        self.tx.run(
            "INSERT INTO alert_rules (project_id, name, spec, evaluated_upto, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (project_id, name, spec, now // 60 * 60, now, now),
        )
        found = self.rule_named(project_id, name)
        if found is None:  # pragma: no cover - created and deleted by another process in between
            raise StoreError(f"the rule {name!r} could not be created")
        return found

    def update_rule(self, rule_id: int, name: str, spec: str, now: int) -> None:
        """Replaces a rule's spec; its states start again (the old ones described another rule)."""
        if not self.tx.run(
            "UPDATE alert_rules SET name = ?, spec = ?, updated_at = ? WHERE id = ?", (name, spec, now, rule_id)
        ):
            raise StoreError(f"no rule with id {rule_id}")
        self.tx.run("DELETE FROM alert_states WHERE rule_id = ?", (rule_id,))

    def rule(self, rule_id: int) -> StoredRule | None:
        rows = self.tx.rows(
            f"SELECT {_RULE_COLS} FROM alert_rules r JOIN projects p ON p.id = r.project_id WHERE r.id = ?", (rule_id,)
        )
        return _rule(rows[0]) if rows else None

    def rule_named(self, project_id: int, name: str) -> StoredRule | None:
        rows = self.tx.rows(
            f"SELECT {_RULE_COLS} FROM alert_rules r JOIN projects p ON p.id = r.project_id"
            " WHERE r.project_id = ? AND r.name = ?",
            (project_id, name),
        )
        return _rule(rows[0]) if rows else None

    def rules(self, project_id: int | None = None) -> list[StoredRule]:
        where, params = (" WHERE r.project_id = ?", [project_id]) if project_id is not None else ("", [])
        rows = self.tx.rows(
            f"SELECT {_RULE_COLS} FROM alert_rules r JOIN projects p ON p.id = r.project_id{where}"
            " ORDER BY p.name, r.name",
            params,
        )
        return [_rule(r) for r in rows]

    def delete_rule(self, rule_id: int) -> None:
        if not self.tx.run("DELETE FROM alert_rules WHERE id = ?", (rule_id,)):
            raise StoreError(f"no rule with id {rule_id}")
        self.tx.run("DELETE FROM alert_states WHERE rule_id = ?", (rule_id,))
        self.tx.run("DELETE FROM alert_history WHERE rule_id = ?", (rule_id,))

    def silence_rule(self, rule_id: int, until: int) -> None:
        """Sends nothing for the rule until ``until`` (epoch seconds; 0 lifts the silence)."""
        if not self.tx.run("UPDATE alert_rules SET silenced_until = ? WHERE id = ?", (until, rule_id)):
            raise StoreError(f"no rule with id {rule_id}")

    def claim_minute(self, rule_id: int, minute: int) -> int | None:
        """Moves the rule's evaluation mark to ``minute``; the minute it was at before, or ``None`` when another
        process got there first (the minute is then not evaluated again)."""
        rows = self.tx.rows("SELECT evaluated_upto FROM alert_rules WHERE id = ?", (rule_id,))
        if not rows or int(rows[0][0]) >= minute:
            return None
        before = int(rows[0][0])
        claimed = self.tx.run(
            "UPDATE alert_rules SET evaluated_upto = ? WHERE id = ? AND evaluated_upto = ?", (minute, rule_id, before)
        )
        return before if claimed else None

    # -- states and history ----------------------------------------------------------------------------------
    def states(self, rule_id: int) -> dict[str, AlertState]:
        rows = self.tx.rows(
            "SELECT rule_id, group_key, state, since, value, evaluated_at, notified_at FROM alert_states"
            " WHERE rule_id = ?",
            (rule_id,),
        )
        return {
            str(r[1]): AlertState(int(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4], int(r[5]), int(r[6])) for r in rows
        }

    def save_states(self, states: Sequence[AlertState]) -> None:
        for s in states:
            self.tx.run(
                "INSERT INTO alert_states (rule_id, group_key, state, since, value, evaluated_at, notified_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id, group_key) DO UPDATE SET state = excluded.state,"
                " since = excluded.since, value = excluded.value, evaluated_at = excluded.evaluated_at,"
                " notified_at = excluded.notified_at",
                tuple(s),
            )

    def add_history(self, rows: Sequence[HistoryRow]) -> None:
        self.tx.many(
            "INSERT INTO alert_history (rule_id, group_key, at, state, value, threshold) VALUES (?, ?, ?, ?, ?, ?)",
            [tuple(r) for r in rows],
        )

    def history(self, rule_id: int, limit: int = 100) -> list[HistoryRow]:
        rows = self.tx.rows(
            "SELECT rule_id, group_key, at, state, value, threshold FROM alert_history WHERE rule_id = ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (rule_id, limit),
        )
        return [HistoryRow(int(r[0]), str(r[1]), int(r[2]), str(r[3]), r[4], float(r[5])) for r in rows]

    # -- outbox ----------------------------------------------------------------------------------------------
    def enqueue(self, rule_id: int | None, items: Sequence[tuple[int, str, str]], now: int) -> int:
        """Adds ``(channel_id, message_id, payload)`` notifications, each message id once; returns how many."""
        added = 0
        for channel_id, message_id, payload in items:
            added += self.tx.run(
                "INSERT INTO alert_outbox (rule_id, channel_id, message_id, payload, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
                (rule_id, channel_id, message_id, payload, now, now),
            )
        return added

    def claim_due(self, now: int, lease: int, limit: int = 20) -> list[OutboxItem]:
        """Notifications due for an attempt, leased to the caller for ``lease`` seconds (attempts counted)."""
        rows = self.tx.rows(
            f"SELECT {_OUTBOX_COLS} FROM alert_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
            " AND next_attempt_at <= ? AND claimed_until <= ? ORDER BY id LIMIT ?",
            (now, now, limit),
        )
        claimed = []
        for r in rows:
            if self.tx.run(
                "UPDATE alert_outbox SET claimed_until = ?, attempts = attempts + 1"
                " WHERE id = ? AND claimed_until <= ? AND delivered_at IS NULL AND failed_at IS NULL",
                (now + lease, r[0], now),
            ):
                item = _outbox(r)
                claimed.append(item._replace(attempts=item.attempts + 1))
        return claimed

    def delivered(self, item_id: int, now: int) -> None:
        self.tx.run(
            "UPDATE alert_outbox SET delivered_at = ?, claimed_until = 0, last_error = NULL WHERE id = ?",
            (now, item_id),
        )

    def attempt_failed(self, item_id: int, error: str, retry_at: int | None, now: int) -> None:
        """Records a failed attempt: tried again from ``retry_at``, or given up (``None``)."""
        if retry_at is None:
            self.tx.run(
                "UPDATE alert_outbox SET failed_at = ?, claimed_until = 0, last_error = ? WHERE id = ?",
                (now, error[:1000], item_id),
            )
        else:
            self.tx.run(
                "UPDATE alert_outbox SET next_attempt_at = ?, claimed_until = 0, last_error = ? WHERE id = ?",
                (retry_at, error[:1000], item_id),
            )

    def outbox(self, rule_id: int | None = None, limit: int = 100) -> list[OutboxItem]:
        """The newest notifications (of one rule, or all), newest first."""
        where, params = (" WHERE rule_id = ?", [rule_id]) if rule_id is not None else ("", [])
        rows = self.tx.rows(
            f"SELECT {_OUTBOX_COLS} FROM alert_outbox{where} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        return [_outbox(r) for r in rows]
