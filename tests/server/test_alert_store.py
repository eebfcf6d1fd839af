"""The alert tables on both engines: rules and channels, states and history, the evaluation mark that lets a
minute be evaluated once, and the outbox whose rows are leased to one deliverer at a time."""

from __future__ import annotations

import threading
import uuid

import pytest

from peekapi_server.store import Project, Store, StoreError
from peekapi_server.store.alerts import AlertState, HistoryRow

NOW = 1_800_000_000


@pytest.fixture
def project(store: Store) -> Project:
    return store.create_project(f"alerts-{uuid.uuid4().hex[:8]}")


def test_rules_and_channels(store: Store, project: Project) -> None:
    with store.alerts(True) as a:
        hook = a.create_channel(project.id, "ops", "webhook", "https://example.com/hook", secret="whsec_x", now=NOW)
        rule = a.create_rule(project.id, "errors", '{"name":"errors"}', NOW + 17)
    assert hook.secret == "whsec_x" and rule.project == project.name
    assert rule.evaluated_upto == (NOW + 17) // 60 * 60  # evaluation starts at the next minute
    with pytest.raises(StoreError, match="already exists"), store.alerts(True) as a:
        a.create_rule(project.id, "errors", "{}", NOW)
    with pytest.raises(StoreError, match="already exists"), store.alerts(True) as a:
        a.create_channel(project.id, "ops", "slack", "https://example.com/s", secret=None, now=NOW)
    with store.alerts(True) as a:
        a.silence_rule(rule.id, NOW + 3600)
        a.update_rule(rule.id, "errors-5xx", '{"name":"errors-5xx"}', NOW + 60)
    with store.alerts(False) as a:
        again = a.rule(rule.id)
        assert again is not None and again.name == "errors-5xx" and again.silenced_until == NOW + 3600
        assert [r.id for r in a.rules(project.id)] == [rule.id] and a.channels_by_id([hook.id]) == {hook.id: hook}
    with store.alerts(True) as a:
        a.delete_channel(project.id, "ops")
        a.delete_rule(rule.id)
    with store.alerts(False) as a:
        assert a.rules() == [] and a.channels(project.id) == []


def test_a_minute_is_claimed_once_and_states_are_upserted(store: Store, project: Project) -> None:
    with store.alerts(True) as a:
        rule = a.create_rule(project.id, "r", "{}", NOW)
    minute = NOW // 60 * 60 + 60
    with store.alerts(True) as a:
        assert a.claim_minute(rule.id, minute) == NOW // 60 * 60
    with store.alerts(True) as a:
        assert a.claim_minute(rule.id, minute) is None  # already evaluated
        a.save_states([AlertState(rule.id, "", "pending", minute, 7.5, minute, 0)])
        a.save_states([AlertState(rule.id, "", "firing", minute, 9.0, minute + 60, minute + 60)])
        a.add_history([HistoryRow(rule.id, "", minute + 60, "firing", 9.0, 5.0)])
    with store.alerts(False) as a:
        assert a.states(rule.id) == {"": AlertState(rule.id, "", "firing", minute, 9.0, minute + 60, minute + 60)}
        assert a.history(rule.id) == [HistoryRow(rule.id, "", minute + 60, "firing", 9.0, 5.0)]


def test_outbox_rows_are_leased_to_one_deliverer(store: Store, project: Project) -> None:
    with store.alerts(True) as a:
        hook = a.create_channel(project.id, "ops", "webhook", "https://example.com/hook", secret="whsec_x", now=NOW)
        items = [(hook.id, f"msg-{i}", f'{{"i": {i}}}') for i in range(30)]
        assert a.enqueue(None, items, NOW) == 30
        assert a.enqueue(None, items[:5], NOW) == 0  # each message id once
    claimed: list[list[int]] = [[], [], []]

    def deliverer(k: int) -> None:
        while True:
            with store.alerts(True) as a:
                got = a.claim_due(NOW, lease=60, limit=4)
            if not got:
                return
            claimed[k] += [item.id for item in got]

    threads = [threading.Thread(target=deliverer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for c in claimed for i in c]
    assert len(ids) == 30 and len(set(ids)) == 30  # every row, each to one deliverer
    first, second = sorted(ids)[:2]
    with store.alerts(True) as a:
        a.delivered(first, NOW + 1)
        a.attempt_failed(second, "503 from the hook", NOW + 30, NOW + 1)
        assert a.claim_due(NOW + 29, lease=60) == []  # the rest are still leased; the failed one waits
    with store.alerts(True) as a:
        retried = a.claim_due(NOW + 61, lease=60, limit=100)
    assert second in [r.id for r in retried] and first not in [r.id for r in retried]
    assert next(r for r in retried if r.id == second).attempts == 2


def test_the_alert_lock_is_exclusive(store: Store) -> None:
    with store.alert_lock("rule:1") as first:
        assert first
        seen: list[bool] = []

        def other() -> None:
            with store.alert_lock("rule:1") as got:
                seen.append(got)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == [False]
    with store.alert_lock("rule:1") as again:
        assert again
