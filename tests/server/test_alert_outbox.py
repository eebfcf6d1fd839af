"""The outbox delivered on both engines to a real HTTP receiver on 127.0.0.1, at a controllable clock: retries with
backoff until a 2xx (delivered once), giving up at once on a 4xx and after a day otherwise, leases, a deleted
channel, two deliverers over the same rows, and the dashboard's test notification."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from peekapi_server.alerts.outbox import GIVE_UP_SECONDS, deliver_due, retry_delay, send_test
from peekapi_server.config import ServerConfig
from peekapi_server.store import Project, Store, open_store
from peekapi_server.store.alerts import OutboxItem
from tests.server.test_alert_channels import PAYLOAD, SECRET, Receiver, verify

SETTINGS = ServerConfig(public_url="https://peek.example.com")
# Each test runs at its own epoch, each earlier than the one before: rows a test leaves behind (PostgreSQL's
# database is shared by the session) are never due at a later test's clock, nor are other modules' (around 2026).
_EPOCHS = itertools.count(1_000_000_000, -10_000_000)


@pytest.fixture
def t0() -> int:
    return next(_EPOCHS)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def queue(store: Store, project: Project, receiver: Receiver, t0: int, count: int = 1) -> str:
    """``count`` webhook notifications queued at ``t0``, their message ids ``<prefix>_0`` ...; returns the prefix.

    They belong to no rule: a rule left behind would be evaluated by later tests' collectors on PostgreSQL."""
    prefix = f"msg_{uuid.uuid4().hex[:12]}"
    with store.alerts(write=True) as a:
        hook = a.create_channel(project.id, "hook", "webhook", receiver.url, secret=SECRET, now=t0)
        items = [(hook.id, f"{prefix}_{n}", json.dumps({**PAYLOAD, "at": t0 + n})) for n in range(count)]
        assert a.enqueue(None, items, t0) == count
    return prefix


def rows(store: Store, prefix: str) -> list[OutboxItem]:
    with store.alerts(write=False) as a:
        return sorted((i for i in a.outbox(None, limit=100_000) if i.message_id.startswith(prefix)), key=lambda i: i.id)


def test_retried_with_backoff_then_delivered_once(
    store: Store, project: Project, receiver: Receiver, t0: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.plan.extend([503, 503])
    prefix = queue(store, project, receiver, t0)
    caplog.set_level(logging.INFO, "peekapi_server.alerts")
    assert deliver_due(store, SETTINGS, t0) == 0
    assert deliver_due(store, SETTINGS, t0 + 5) == 0 and len(receiver.requests()) == 1  # next try after 10 s
    assert deliver_due(store, SETTINGS, t0 + 12) == 0 and len(receiver.requests()) == 2
    assert deliver_due(store, SETTINGS, t0 + 30) == 0 and len(receiver.requests()) == 2  # then after 30 s more
    assert deliver_due(store, SETTINGS, t0 + 50) == 1
    assert deliver_due(store, SETTINGS, t0 + 100_000) == 0
    got = receiver.requests()
    assert [r.answered for r in got] == [503, 503, 200]
    assert {r.headers["webhook-id"] for r in got} == {f"{prefix}_0"}  # one message id, for receivers to dedupe
    assert all(verify(SECRET, r.headers, r.body) for r in got)
    [item] = rows(store, prefix)
    assert item.attempts == 3 and item.delivered_at is not None and t0 + 50 <= item.delivered_at < t0 + 60
    assert item.failed_at is None and item.last_error is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("503" in w for w in warnings) and "next in 10 s" in warnings[0]


def test_a_4xx_is_given_up_at_once(
    store: Store, project: Project, receiver: Receiver, t0: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.plan.append(400)
    prefix = queue(store, project, receiver, t0)
    assert deliver_due(store, SETTINGS, t0) == 0
    assert deliver_due(store, SETTINGS, t0 + 100_000) == 0
    assert len(receiver.requests()) == 1
    [item] = rows(store, prefix)
    assert item.failed_at is not None and item.delivered_at is None and "400" in (item.last_error or "")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.name == "peekapi_server.alerts" and "given up after 1 attempt" in error.getMessage()


def test_resets_and_hangs_are_retried(store: Store, project: Project, receiver: Receiver, t0: int) -> None:
    receiver.plan.extend(["reset", "hang"])
    prefix = queue(store, project, receiver, t0)
    assert deliver_due(store, SETTINGS, t0, timeout=0.5) == 0
    started = time.monotonic()
    assert deliver_due(store, SETTINGS, t0 + 12, timeout=0.5) == 0
    assert time.monotonic() - started < 5  # the hang ended at the timeout
    assert deliver_due(store, SETTINGS, t0 + 50, timeout=0.5) == 1
    assert [r.answered for r in receiver.requests()] == ["reset", "hang", 200]
    [item] = rows(store, prefix)
    assert item.attempts == 3 and item.delivered_at is not None
    with pytest.raises(ValueError, match="lease"):
        deliver_due(store, SETTINGS, t0, timeout=30)


def test_given_up_a_day_after_it_was_queued(
    store: Store, project: Project, receiver: Receiver, t0: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = 503
    prefix = queue(store, project, receiver, t0)
    now, passes = t0, 0
    while passes < 100:
        deliver_due(store, SETTINGS, now)
        passes += 1
        [item] = rows(store, prefix)
        if item.failed_at is not None:
            break
        assert now - t0 < GIVE_UP_SECONDS  # still trying within the day
        now += retry_delay(item.attempts) + 1  # when the next attempt is due
    assert item.failed_at is not None and item.delivered_at is None
    assert item.attempts == passes == len(receiver.requests())
    assert 20 <= item.attempts <= 30 and GIVE_UP_SECONDS - 3600 <= item.failed_at - t0 <= GIVE_UP_SECONDS
    assert [retry_delay(n) for n in range(1, 8)] == [10, 30, 120, 600, 1800, 3600, 3600]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "undelivered for" in error.getMessage() and "503" in error.getMessage()


def test_a_leased_notification_waits_for_its_lease(store: Store, project: Project, receiver: Receiver, t0: int) -> None:
    prefix = queue(store, project, receiver, t0)
    with store.alerts(write=True) as a:  # a deliverer that claimed it, then died before recording anything
        assert len(a.claim_due(t0, 60, 1)) == 1
    assert deliver_due(store, SETTINGS, t0 + 30) == 0 and receiver.requests() == []
    assert deliver_due(store, SETTINGS, t0 + 61) == 1 and len(receiver.requests()) == 1
    assert rows(store, prefix)[0].attempts == 2


def test_a_deleted_channel_is_given_up_with_a_clear_error(
    store: Store, project: Project, receiver: Receiver, t0: int, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = queue(store, project, receiver, t0)
    with store.alerts(write=True) as a:
        a.delete_channel(project.id, "hook")
    assert deliver_due(store, SETTINGS, t0) == 0
    [item] = rows(store, prefix)
    assert item.failed_at is not None and "was deleted" in (item.last_error or "") and receiver.requests() == []
    assert any("was deleted" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_two_deliverers_send_each_notification_once(
    db_url: str, store: Store, project: Project, receiver: Receiver, t0: int
) -> None:
    prefix = queue(store, project, receiver, t0, count=50)
    delivered: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def deliverer() -> None:
        own = open_store(db_url)
        try:
            start.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(i.delivered_at is None for i in rows(own, prefix)):
                delivered.append(deliver_due(own, SETTINGS, t0, limit=7))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=deliverer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = receiver.requests()
    ids = [r.headers["webhook-id"] for r in got]
    assert sorted(ids) == sorted(f"{prefix}_{n}" for n in range(50))  # each once, none twice
    assert sum(delivered) == 50 and all(verify(SECRET, r.headers, r.body) for r in got)
    assert all(i.delivered_at is not None and i.attempts == 1 for i in rows(store, prefix))


def test_send_test(store: Store, project: Project, receiver: Receiver) -> None:
    with store.alerts(write=True) as a:
        a.create_channel(project.id, "hook", "webhook", receiver.url, secret=SECRET, now=int(time.time()))
    assert send_test(store, SETTINGS, project.id, "hook") is None
    receiver.plan.append(410)
    failure = send_test(store, SETTINGS, project.id, "hook")
    assert failure is not None and "410" in failure
    assert send_test(store, SETTINGS, project.id, "nope") == "no channel named 'nope'"
    first, second = receiver.requests()
    body = json.loads(first.body)
    assert body["type"] == "alert.test" and body["rule"]["project"] == project.name
    assert body["url"] == f"https://peek.example.com/alerts/channels?project={project.name}"
    assert verify(SECRET, first.headers, first.body) and first.headers["webhook-id"].startswith("msg_test_")
    with store.alerts(write=False) as a:
        recorded = {i.message_id: i for i in a.outbox(None, limit=1000)}
    ok, failed = recorded[first.headers["webhook-id"]], recorded[second.headers["webhook-id"]]
    assert ok.rule_id is None and ok.delivered_at is not None and ok.failed_at is None
    assert failed.failed_at is not None and "410" in (failed.last_error or "") and failed.delivered_at is None
