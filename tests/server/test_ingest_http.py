"""POST /v1/events over real HTTP: status codes, gzip, dedup, back-pressure, and counts in == counts stored."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import time
import uuid

import pytest

from peekapi_server.store import open_store
from tests.server.support import Collector, Response, event, http, start_collector


def test_accepts_a_batch_and_stores_every_event_once(collector: Collector) -> None:
    total = 0
    for i in range(20):
        r = collector.post([event(path=f"/users/{j}") for j in range(50)], {"x-peekapi-batch-id": f"b-{i}"})
        assert r.status == 200
        assert r.json() == {"accepted": 50, "rejected": 0}
        assert r.headers["accept-encoding"] == "gzip"
        total += 50
    collector.drain()
    assert collector.store.count_events(collector.project.id) == total


def test_a_retried_batch_id_is_acknowledged_and_not_stored_again(collector: Collector) -> None:
    batch = [event(), event(status_code=500)]
    for _ in range(3):
        r = collector.post(batch, {"x-peekapi-batch-id": "retry-me"})
        assert r.status == 200 and r.json()["accepted"] == 2
    collector.drain()
    assert collector.store.count_events(collector.project.id) == 2
    collector.post(batch, {"x-peekapi-batch-id": "another"})
    collector.post(batch)  # no batch id: every request is a new batch
    collector.drain()
    assert collector.store.count_events(collector.project.id) == 6


def test_per_event_problems_are_rejected_inside_a_200(collector: Collector) -> None:
    r = collector.post([event(), {"method": "GET"}, "junk", event(status_code="x")])
    assert r.status == 200
    assert r.json() == {"accepted": 1, "rejected": 3}
    r = collector.post([])
    assert (r.status, r.json()) == (200, {"accepted": 0, "rejected": 0})


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"[{", "not valid JSON"), (b'{"method": "GET"}', "JSON array"), (b"\xff\xfe[]", "not valid JSON")],
)
def test_bad_bodies_are_400(collector: Collector, raw: bytes, message: str) -> None:
    r = collector.post(None, raw=raw)
    assert r.status == 400
    assert message in r.json()["error"]


def test_keys_missing_unknown_or_revoked_are_401(collector: Collector) -> None:
    body = json.dumps([event()]).encode()
    assert http("POST", collector.url + "/v1/events", body).status == 401
    r = http("POST", collector.url + "/v1/events", body, {"x-api-key": "ak_live_unknown"})
    assert r.status == 401 and r.headers["accept-encoding"] == "gzip"
    cred, key = collector.store.create_credential(collector.project.name, "ingest")
    assert http("POST", collector.url + "/v1/events", body, {"x-api-key": key}).status == 200
    collector.store.revoke_credential(str(cred.id), "ingest")
    assert http("POST", collector.url + "/v1/events", body, {"x-api-key": key}).status == 401
    # a read token is not an ingest key
    assert http("POST", collector.url + "/v1/events", body, {"x-api-key": collector.token}).status == 401


def test_gzip_bodies_are_accepted(collector: Collector) -> None:
    body = gzip.compress(json.dumps([event() for _ in range(30)]).encode())
    r = collector.post(None, {"content-encoding": "gzip"}, raw=body)
    assert (r.status, r.json()["accepted"]) == (200, 30)
    collector.drain()
    assert collector.store.count_events(collector.project.id) == 30
    r = collector.post(None, {"content-encoding": "gzip"}, raw=b"not gzip at all")
    assert r.status == 400


def test_unknown_encoding_is_415(collector: Collector) -> None:
    r = collector.post([event()], {"content-encoding": "br"})
    assert r.status == 415


def test_limits_give_413_including_gzip_bombs(db_url: str) -> None:
    c = start_collector(db_url, max_body_bytes=10_000, max_decompressed_bytes=50_000)
    try:
        big = json.dumps([event(path="/x" * 400) for _ in range(20)]).encode()
        assert len(big) > 10_000
        assert c.post(None, raw=big).status == 413
        bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
        assert len(bomb) < 10_000
        r = c.post(None, {"content-encoding": "gzip"}, raw=bomb)
        assert r.status == 413 and "decompressed" in r.json()["error"]
        small = json.dumps([event()]).encode()
        assert c.post(None, raw=small).status == 200
    finally:
        c.stop()
        c.store.close()


def test_a_full_queue_answers_503_with_retry_after_and_acknowledges_only_what_it_stored(tmp_path: object) -> None:
    db = f"sqlite:///{tmp_path}/q.db"  # type: ignore[str-bytes-safe]
    c = start_collector(db, queue_max_events=100, retry_after_seconds=2, ack_timeout_seconds=1.0)
    blocker = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)
    answers: list[Response] = []
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the collector cannot write
        posts = [
            threading.Thread(
                target=lambda i=i: answers.append(c.post([event() for _ in range(40)], {"x-peekapi-batch-id": f"q{i}"}))
            )
            for i in range(10)
        ]
        for t in posts:
            t.start()
        time.sleep(2.0)  # past the acknowledgement timeout: the batches never taken were withdrawn (503)
        blocker.execute("ROLLBACK")  # the writer's transaction goes through now
        for t in posts:
            t.join(15)
        assert len(answers) == 10
        accepted = sum(r.json()["accepted"] for r in answers if r.status == 200)
        refused = [r for r in answers if r.status != 200]
        assert all(r.status == 503 and r.headers["retry-after"] == "2" for r in refused)
        assert refused and accepted >= 40  # the queue filled up; the batch the writer held was stored
        c.drain()
        assert c.store.count_events(c.project.id) == accepted  # 200 means stored; a 503 stored nothing
    finally:
        blocker.close()
        c.stop()
        c.store.close()


def test_healthz(collector: Collector) -> None:
    r = http("GET", collector.url + "/healthz")
    assert r.status == 200
    assert r.json() == {"status": "ok", "queued_events": 0}


def test_queued_events_are_written_on_shutdown(tmp_path: object) -> None:
    db = f"sqlite:///{tmp_path}/s.db"  # type: ignore[str-bytes-safe]
    c = start_collector(db)
    for i in range(10):
        assert c.post([event() for _ in range(100)], {"x-peekapi-batch-id": f"s{i}"}).status == 200
    c.stop()
    store = open_store(db)
    try:
        assert store.count_events(c.project.id) == 1000
    finally:
        store.close()
        c.store.close()


def test_events_without_a_route_are_grouped_by_normalised_path(collector: Collector) -> None:
    uid = uuid.uuid4()
    collector.post(
        [
            event(path="/users/1"),
            event(path="/users/2?x=1"),
            event(path=f"/orders/{uid}"),
            event(path="/users/3", route="/users/<int:id>"),
            event(method="get", path="/users/4"),
        ]
    )
    collector.drain()
    r = collector.get("/v1/endpoints")
    routes = {(row["method"], row["route"]): row["requests"] for row in r.json()["endpoints"]}
    assert routes == {("GET", "/users/{id}"): 3, ("GET", "/orders/{id}"): 1, ("GET", "/users/<int:id>"): 1}
    raw = collector.get("/v1/events/recent").json()["events"]
    assert sorted(e["path"] for e in raw) == sorted(
        ["/users/1", "/users/2?x=1", f"/orders/{uid}", "/users/3", "/users/4"]
    )


def test_many_small_requests_on_one_connection(collector: Collector) -> None:
    """PHP under FPM sends about one event per POST: keep-alive, each answered and stored."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(collector.url.rsplit(":", 1)[1]), timeout=10)
    try:
        for i in range(200):
            body = json.dumps([event(path=f"/p/{i}")])
            conn.request("POST", "/v1/events", body, {"x-api-key": collector.key, "content-type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()
    collector.drain()
    assert collector.store.count_events(collector.project.id) == 200
    time.sleep(0)
