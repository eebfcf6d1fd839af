"""The collector under attack, over real HTTP on both engines: one hostile event never costs a good one.

Every hostile event of tests/server/test_events.py is posted beside good ones; multi-member and trailing-garbage
gzip bodies; a batch the database itself refuses (a trigger) inside a group commit costs no other batch.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.server.support import Collector, Response, event, http, start_collector
from tests.server.test_events import HOSTILE


def _good(i: int) -> str:
    return json.dumps(event(path=f"/good/{i}"))


def _healthy(c: Collector) -> None:
    r = http("GET", c.url + "/healthz")
    assert (r.status, r.json()["status"]) == (200, "ok")


def test_the_lone_surrogate_of_the_issue_costs_nothing_else(collector: Collector) -> None:
    body = '[{"method":"GET","path":"/x\\ud800","status_code":200,"response_time_ms":1},' + _good(0) + "]"
    r = collector.post(None, raw=body.encode())
    assert (r.status, r.json()) == (200, {"accepted": 1, "rejected": 1})
    assert collector.store.count_events(collector.project.id) == 1  # a 200 means stored: no drain needed
    events = collector.get("/v1/events/recent").json()["events"]
    assert [e["path"] for e in events] == ["/good/0"]
    _healthy(collector)
    # the next batch is stored at once too: nothing waits behind a failing write
    r = collector.post([event(path="/after")])
    assert (r.status, r.json()["accepted"]) == (200, 1)
    assert collector.store.count_events(collector.project.id) == 2


def test_every_hostile_event_is_rejected_alone_and_every_good_one_stored(collector: Collector) -> None:
    parts = []
    for i, name in enumerate(sorted(HOSTILE)):
        parts += [HOSTILE[name], _good(i)]
    r = collector.post(None, raw=("[" + ",".join(parts) + "]").encode())
    assert (r.status, r.json()) == (200, {"accepted": len(HOSTILE), "rejected": len(HOSTILE)})
    assert collector.store.count_events(collector.project.id) == len(HOSTILE)
    paths = {e["path"] for e in collector.get("/v1/events/recent?limit=1000").json()["events"]}
    assert paths == {f"/good/{i}" for i in range(len(HOSTILE))}
    overview = collector.get("/v1/overview").json()
    assert overview["totals"]["requests"] == len(HOSTILE)
    _healthy(collector)


def test_each_hostile_event_alone_gets_a_200_with_it_rejected(collector: Collector) -> None:
    for name in sorted(HOSTILE):
        r = collector.post(None, raw=("[" + HOSTILE[name] + "]").encode())
        assert (r.status, r.json()) == (200, {"accepted": 0, "rejected": 1}), name
    assert collector.store.count_events(collector.project.id) == 0
    _healthy(collector)


def test_every_member_of_a_multi_member_gzip_body_is_read(collector: Collector) -> None:
    a = gzip.compress(b'[{"method":"GET","path":"/a","status_code":200,"response_time_ms":1},')
    b = gzip.compress(b'{"method":"GET","path":"/b","status_code":200,"response_time_ms":1},')
    c = gzip.compress(b'{"method":"GET","path":"/c","status_code":200,"response_time_ms":1}]')
    r = collector.post(None, {"content-encoding": "gzip"}, raw=a + b + c)  # what `cat a.gz b.gz c.gz` makes
    assert (r.status, r.json()) == (200, {"accepted": 3, "rejected": 0})
    paths = sorted(e["path"] for e in collector.get("/v1/events/recent").json()["events"])
    assert paths == ["/a", "/b", "/c"]


@pytest.mark.parametrize(
    ("tail", "message"), [(b"garbage", "after the end"), (b"\0" * 8, "after the end"), (b"\x1f\x8b\x08", "truncated")]
)
def test_bytes_after_the_gzip_stream_are_a_400(collector: Collector, tail: bytes, message: str) -> None:
    body = gzip.compress(json.dumps([event()]).encode()) + tail
    r = collector.post(None, {"content-encoding": "gzip"}, raw=body)
    assert r.status == 400 and message in r.json()["error"]
    assert collector.store.count_events(collector.project.id) == 0


def test_the_decompressed_limit_counts_every_member(db_url: str) -> None:
    c = start_collector(db_url, max_decompressed_bytes=50_000)
    try:
        member = gzip.compress(b" " * 30_000)  # each member alone is under the limit, two are over it
        r = c.post(None, {"content-encoding": "gzip"}, raw=member + member + gzip.compress(b"[]"))
        assert r.status == 413 and "decompressed" in r.json()["error"]
        r = c.post(None, {"content-encoding": "gzip"}, raw=member + gzip.compress(b"[]"))
        assert (r.status, r.json()) == (200, {"accepted": 0, "rejected": 0})
    finally:
        c.stop()
        c.store.close()


@contextmanager
def _poisoned_and_blocked(c: Collector) -> Iterator[Callable[[], None]]:
    """Makes the database refuse any event whose path is ``/poison`` (a trigger: the store's own error, as a
    validation gap would give) and holds the writer off until the yielded ``release()`` is called."""
    if c.db_url.startswith("sqlite"):
        conn = sqlite3.connect(c.db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.path = '/poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: conn.execute("ROLLBACK")
        finally:
            conn.execute("DROP TRIGGER poison")
            conn.close()
        return
    import psycopg

    with psycopg.connect(c.db_url, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.path = '/poison' THEN"
            " RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
            " LANGUAGE plpgsql"
        )
        admin.execute("CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()")
        try:
            with psycopg.connect(c.db_url) as blocker:
                blocker.execute("LOCK TABLE batches IN EXCLUSIVE MODE")  # the writer's first statement waits
                yield blocker.rollback
        finally:
            admin.execute("DROP TRIGGER poison ON events")
            admin.execute("DROP FUNCTION poison()")


def test_a_batch_the_store_refuses_costs_the_other_batches_of_its_group_nothing(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = start_collector(db_url)
    answers: dict[str, Response] = {}

    def post(name: str, path: str) -> None:
        answers[name] = c.post([event(path=path) for _ in range(5)], {"x-peekapi-batch-id": name})

    try:
        with caplog.at_level(logging.WARNING, logger="peekapi_server.writer"), _poisoned_and_blocked(c) as release:
            first = threading.Thread(target=post, args=("first", "/first"))
            first.start()
            time.sleep(0.5)  # the writer takes it and waits for the lock; what follows queues up behind it
            threads = [threading.Thread(target=post, args=(f"good{i}", f"/good/{i}")) for i in range(8)]
            threads.append(threading.Thread(target=post, args=("poison", "/poison")))
            for t in threads:
                t.start()
            time.sleep(0.5)
            release()
            for t in [first, *threads]:
                t.join(15)
        assert answers["poison"].status == 400
        good = {name: r for name, r in answers.items() if name != "poison"}
        assert {name: r.status for name, r in good.items()} == dict.fromkeys(good, 200)
        assert c.store.count_events(c.project.id) == 5 * 9
        assert any("together failed" in r.getMessage() for r in caplog.records)  # the group path was taken
        _healthy(c)
        assert c.post([event(path="/later")]).status == 200
    finally:
        c.stop()
        c.store.close()
