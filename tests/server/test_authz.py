"""Authorization, proven over real HTTP on SQLite and on PostgreSQL.

Two projects share one database. Project A's read token, through every read endpoint and every parameter
(including endpoint, consumer, method and status values that exist only in B), reads nothing of B; an ingest key
cannot read and a read token cannot ingest; a revoked key or token stops working within the credential cache's
lifetime; SQL injection strings in every query parameter and header are answered 200 with nothing leaked or 400,
never 500, are stored verbatim when they come as event fields, and every table is still there afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from peekapi_server.store import open_store
from tests.server.support import Collector, Response, event, http, start_collector

pytestmark = pytest.mark.slow

READS = ["/v1/overview", "/v1/endpoints", "/v1/consumers", "/v1/status-codes", "/v1/events/recent", "/v1/export"]
#: Credential lookups are cached this long in the collector under test: revocation must bite within it.
TTL = 1.0

# Project B's data carries markers that appear nowhere in A's.
B_ROUTE = "/b-only/{id}"
B_CONSUMER = "bob-of-project-b"
B_SECRET = "B-SECRET-METADATA"
B_METHOD = "PATCH"
B_STATUSES = (418, 503)
A_EVENTS = 30
A_5XX = 10  # A sends 200 and 500 only: no 4xx at all

INJECTIONS = [
    "' OR 1=1 --",
    "'; DROP TABLE events; --",
    '"; DROP TABLE events; --',
    "1) OR (1=1",
    "%",
    "_",
    "\\",
    "%' OR route LIKE '%",
    "ünïcødé ✓ 𝄞 — 名前",
    "' UNION SELECT id, secret_hash FROM credentials --",
    "x" * 4000 + "' OR '1'='1",
]


@dataclass
class Two:
    """A collector serving project A (its key and token), and project B with its own key and token."""

    a: Collector
    b_key: str
    b_token: str
    b_project_id: int

    def read(self, path: str, params: dict[str, str] | None = None, token: str | None = None) -> Response:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        return self.a.get(path + query, token=token)


@pytest.fixture
def two(db_url: str) -> Iterator[Two]:
    """A running collector (credential cache TTL of one second) with data in projects A and B."""
    a = start_collector(db_url, auth_cache_seconds=TTL)
    try:
        b = a.store.create_project(f"b-{uuid.uuid4().hex[:10]}")
        _, b_key = a.store.create_credential(b.name, "ingest")
        _, b_token = a.store.create_credential(b.name, "read")
        a_events = [
            event(method="GET", path=f"/a/{i}", status_code=500 if i < A_5XX else 200, consumer_id="alice-of-a")
            for i in range(A_EVENTS)
        ]
        b_events = [
            event(
                method=B_METHOD,
                path=f"/b-only/{i}",
                route=B_ROUTE,
                status_code=B_STATUSES[i % 2],
                consumer_id=B_CONSUMER,
                metadata={"secret": B_SECRET},
            )
            for i in range(40)
        ]
        # and some of B's events ten days ago, where A has none at all
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 86400))
        b_events += [
            event(method=B_METHOD, path="/b-only/old", route=B_ROUTE, consumer_id=B_CONSUMER, timestamp=old)
        ] * 10
        assert a.post(a_events).json() == {"accepted": A_EVENTS, "rejected": 0}
        assert a.post(b_events, headers={"x-api-key": b_key}).json() == {"accepted": 50, "rejected": 0}
        a.drain()
        yield Two(a, b_key, b_token, b.id)
    finally:
        a.stop()
        a.store.close()


def _requests_in(path: str, r: Response) -> int:
    """How many requests a 200 answer of ``path`` counts (or lists, for raw events)."""
    if path == "/v1/export":
        if r.headers["content-type"].startswith("text/csv"):
            return len(list(csv.DictReader(io.StringIO(r.body.decode()))))
        return len(json.loads(r.body))
    body: Any = r.json()
    if path == "/v1/overview":
        return int(body["totals"]["requests"])
    if path == "/v1/events/recent":
        return len(body["events"])
    key = {"/v1/endpoints": "endpoints", "/v1/consumers": "consumers", "/v1/status-codes": "status_codes"}[path]
    return sum(int(row["requests"]) for row in body[key])


def _nothing_of_b(path: str, r: Response) -> None:
    """No trace of project B in an answer: none of its names, methods, status codes or metadata."""
    text = r.body.decode()
    for marker in ("b-only", B_CONSUMER, B_SECRET, B_METHOD):
        assert marker not in text, f"{path} answered with {marker!r} of project B: {text[:300]}"
    if path == "/v1/status-codes":
        assert not {row["status_code"] for row in r.json()["status_codes"]} & set(B_STATUSES)
    if path == "/v1/events/recent":
        assert not {e["status_code"] for e in r.json()["events"]} & set(B_STATUSES)


#: Parameters of every endpoint, each with the number of A's requests it selects. Values that exist only in
#: B select nothing; the rest select A's events only.
FILTERS: list[tuple[dict[str, str], int]] = [
    ({}, A_EVENTS),
    ({"endpoint": B_ROUTE}, 0),
    ({"endpoint": "/b-only/7"}, 0),
    ({"consumer": B_CONSUMER}, 0),
    ({"method": B_METHOD}, 0),
    ({"method": B_METHOD.lower()}, 0),
    ({"status_class": "4"}, 0),
    ({"status_class": "4xx"}, 0),
    ({"status_class": "5xx"}, A_5XX),
    ({"endpoint": B_ROUTE, "method": B_METHOD, "consumer": B_CONSUMER, "status_class": "4"}, 0),
    ({"limit": "1000"}, A_EVENTS),
    ({"from": "0", "to": str(400 * 86400 - 1)}, 0),
    ({"from": str(int(time.time()) - 11 * 86400), "to": str(int(time.time()) - 9 * 86400)}, 0),  # B's old events
    ({"from": str(int(time.time()) - 399 * 86400), "to": str(int(time.time()) + 86400)}, A_EVENTS),
    ({"endpoint": "/a/{id}"}, A_EVENTS),
    ({"consumer": "alice-of-a"}, A_EVENTS),
]


@pytest.mark.parametrize("path", READS)
def test_a_token_reads_nothing_of_another_project(two: Two, path: str) -> None:
    extra: list[dict[str, str]] = [{}]
    if path == "/v1/overview":
        extra = [{}, {"interval": "minute"}, {"interval": "day"}]
    elif path == "/v1/export":
        extra = [{"format": "json"}, {"format": "csv"}]
    for params, expected in FILTERS:
        for more in extra:
            r = two.read(path, {**params, **more})
            assert r.status == 200, (params, more, r.body[:300])
            _nothing_of_b(path, r)
            assert _requests_in(path, r) == expected, (params, more)
    # and B's own token does see B (40 events in the last 24 hours): the markers above would have been found
    r = two.read(path, {"format": "json"} if path == "/v1/export" else {}, token=two.b_token)
    assert r.status == 200 and _requests_in(path, r) == 40
    if path not in ("/v1/overview", "/v1/status-codes"):
        assert B_CONSUMER in r.body.decode() or "b-only" in r.body.decode()


@pytest.mark.parametrize("path", READS)
def test_project_parameters_are_refused_not_ignored(two: Two, path: str) -> None:
    for name in ("project", "project_id", "projectId", "token"):
        r = two.read(path, {name: str(two.b_project_id)})
        assert r.status == 400 and name in r.json()["error"], r.body


@pytest.mark.parametrize("path", READS)
def test_an_ingest_key_cannot_read(two: Two, path: str) -> None:
    assert two.read(path, token=two.a.key).status == 401
    assert two.read(path, token=two.b_key).status == 401
    r = http("GET", two.a.url + path, headers={"x-api-key": two.a.key})
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    assert two.read(path).status == 200


def test_a_read_token_cannot_ingest(two: Two) -> None:
    before = two.a.store.count_events(two.a.project.id)
    for token in (two.a.token, two.b_token, f"Bearer {two.a.token}"):
        r = two.a.post([event()], headers={"x-api-key": token})
        assert r.status == 401, r.body
    r = http(
        "POST",
        two.a.url + "/v1/events",
        json.dumps([event()]).encode(),
        {"content-type": "application/json", "authorization": f"Bearer {two.a.token}"},
    )
    assert r.status == 401
    two.a.drain()
    assert two.a.store.count_events(two.a.project.id) == before


def _until_refused(send: Any, limit: float) -> float:
    """Seconds until ``send()`` answers 401 (polling), failing past ``limit``; every earlier answer is 200."""
    start = time.monotonic()
    while True:
        status = send()
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < limit, f"still accepted {elapsed:.1f} s after the revocation"
        time.sleep(0.05)


def test_a_revoked_key_stops_working_within_the_cache_ttl(two: Two) -> None:
    cred, key = two.a.store.create_credential(two.a.project.name, "ingest")
    assert two.a.post([event()], headers={"x-api-key": key}).status == 200  # now cached as valid
    two.a.store.revoke_credential(cred.prefix, "ingest")
    elapsed = _until_refused(lambda: two.a.post([event()], headers={"x-api-key": key}).status, TTL + 2.0)
    assert elapsed <= TTL + 2.0
    for _ in range(5):  # and it stays refused
        assert two.a.post([event()], headers={"x-api-key": key}).status == 401
    assert two.a.post([event()]).status == 200  # the project's other key still works


def test_a_revoked_token_stops_working_within_the_cache_ttl(two: Two) -> None:
    cred, token = two.a.store.create_credential(two.a.project.name, "read")
    assert two.read("/v1/overview", token=token).status == 200
    two.a.store.revoke_credential(str(cred.id), "read")  # by id this time
    _until_refused(lambda: two.read("/v1/overview", token=token).status, TTL + 2.0)
    for path in READS:
        assert two.read(path, token=token).status == 401
    assert two.read("/v1/overview").status == 200


def _tables_intact(two: Two) -> None:
    """Every table is still there and holds what it held: both projects, their events, their credentials."""
    store = open_store(two.a.db_url)
    try:
        names = {p.name for p in store.list_projects()}
        assert two.a.project.name in names and len(names) >= 2
        assert store.count_events(two.a.project.id) >= A_EVENTS
        assert store.count_events(two.b_project_id) == 50
        assert store.authenticate(two.a.token, "read") == two.a.project.id
        assert store.authenticate(two.b_key, "ingest") == two.b_project_id
    finally:
        store.close()
    r = two.read("/v1/overview")
    assert r.status == 200 and r.json()["totals"]["requests"] >= A_EVENTS


@pytest.mark.parametrize("path", READS)
def test_injection_strings_in_every_query_parameter(two: Two, path: str) -> None:
    names = ["from", "to", "endpoint", "method", "consumer", "status_class", "limit"]
    names += {"/v1/overview": ["interval"], "/v1/export": ["format"]}.get(path, [])
    for name in names:
        for value in INJECTIONS:
            r = two.read(path, {name: value})
            assert r.status in (200, 400), (name, value[:40], r.status, r.body[:300])
            if r.status == 400:
                assert r.json()["error"], r.body
                continue
            # a value that is a filter matches nothing of either project: it is compared, never interpreted
            assert name in ("endpoint", "method", "consumer"), (name, value[:40])
            _nothing_of_b(path, r)
            assert _requests_in(path, r) == 0, (name, value[:40])
    _tables_intact(two)


def test_injection_strings_in_headers(two: Two) -> None:
    url = two.a.url
    body = json.dumps([event()]).encode()
    for value in INJECTIONS:
        header = value.encode("utf-8").decode("latin-1")  # what a client sends as raw bytes
        assert http("GET", url + "/v1/overview", headers={"authorization": f"Bearer {header}"}).status == 401
        assert http("GET", url + "/v1/overview", headers={"authorization": header}).status == 401
        r = http("POST", url + "/v1/events", body, {"x-api-key": header, "content-type": "application/json"})
        assert r.status == 401, r.body
        r = http("POST", url + "/v1/events", body, {"x-api-key": two.a.key, "content-encoding": header})
        assert r.status == 415, r.body
    before = two.a.store.count_events(two.a.project.id)
    for value in INJECTIONS:
        header = value.encode("utf-8").decode("latin-1")
        for _ in range(2):  # a batch id is a bound value too: the second send is a duplicate, stored once
            r = http("POST", url + "/v1/events", body, {"x-api-key": two.a.key, "x-peekapi-batch-id": header})
            assert r.status == 200, r.body
    two.a.drain()
    assert two.a.store.count_events(two.a.project.id) == before + len(INJECTIONS)
    _tables_intact(two)


def test_injection_strings_as_event_fields_are_stored_verbatim(two: Two) -> None:
    sent = [
        event(path="/inj/" + value[:1000], route="/inj/" + value[:1000], consumer_id=value[:256], metadata={"v": value})
        for value in INJECTIONS
    ]
    r = two.a.post(sent, headers={"x-peekapi-batch-id": "injections"})
    assert r.json() == {"accepted": len(INJECTIONS), "rejected": 0}
    two.a.drain()
    for value in INJECTIONS:
        r = two.read("/v1/events/recent", {"consumer": value[:256], "limit": "1000"})
        assert r.status == 200
        (stored,) = r.json()["events"]
        assert stored["consumer_id"] == value[:256]
        assert stored["route"] == "/inj/" + value[:1000]
        assert stored["metadata"] == {"v": value}
        r = two.read("/v1/overview", {"endpoint": "/inj/" + value[:1000]})
        assert r.json()["totals"]["requests"] == 1
    _tables_intact(two)
