"""The read API over real HTTP: read tokens only, filters, every endpoint's figures equal what was sent."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse

import pytest

from tests.server.support import Collector, event, http

PATHS = ["/v1/overview", "/v1/endpoints", "/v1/consumers", "/v1/status-codes", "/v1/events/recent", "/v1/export"]


def sent(collector: Collector) -> list[dict[str, object]]:
    events = []
    for i in range(60):
        events.append(
            event(
                method="POST" if i % 3 == 0 else "GET",
                path=f"/items/{i}",
                status_code=[200, 404, 500, 201][i % 4],
                response_time_ms=float(i + 1),
                response_size=i,
                consumer_id=["alice", "bob", None][i % 3],
                metadata={"i": i} if i == 7 else None,
            )
        )
    assert collector.post(events).json()["accepted"] == 60
    collector.drain()
    return events


@pytest.mark.parametrize("path", PATHS)
def test_nothing_is_readable_without_a_read_token(collector: Collector, path: str) -> None:
    assert http("GET", collector.url + path).status == 401
    assert collector.get(path, token=collector.key).status == 401  # an ingest key cannot read
    assert collector.get(path, token="rt_unknown").status == 401
    assert collector.get(path).status == 200


def test_a_revoked_token_cannot_read(collector: Collector) -> None:
    cred, token = collector.store.create_credential(collector.project.name, "read")
    assert collector.get("/v1/overview", token=token).status == 200
    collector.store.revoke_credential(cred.prefix, "read")
    assert collector.get("/v1/overview", token=token).status == 401


def test_a_token_reads_only_its_own_project(collector: Collector) -> None:
    sent(collector)
    other = collector.store.create_project("other-" + collector.project.name)
    _, token = collector.store.create_credential(other.name, "read")
    assert collector.get("/v1/overview", token=token).json()["totals"]["requests"] == 0
    assert collector.get("/v1/overview").json()["totals"]["requests"] == 60


def test_overview_totals_series_and_filters(collector: Collector) -> None:
    events = sent(collector)
    body = collector.get("/v1/overview").json()
    assert body["totals"]["requests"] == 60
    assert body["totals"]["errors_4xx"] == 15 and body["totals"]["errors_5xx"] == 15
    assert body["totals"]["error_rate"] == pytest.approx(0.5)
    assert body["totals"]["bytes_out"] == sum(range(60))
    assert sum(p["requests"] for p in body["series"]) == 60
    assert body["interval"] == 3600
    p99 = body["totals"]["p99_ms"]
    assert abs(p99 - 60.0) / 60.0 < 0.03
    q = urllib.parse.urlencode({"method": "post", "status_class": "2xx"})
    filtered = collector.get(f"/v1/overview?{q}").json()["totals"]
    assert filtered["requests"] == sum(
        1
        for e in events
        if e["method"] == "POST" and 200 <= int(e["status_code"]) < 300  # type: ignore[call-overload]
    )
    assert collector.get("/v1/overview?consumer=alice").json()["totals"]["requests"] == 20
    assert (
        collector.get("/v1/overview?endpoint=" + urllib.parse.quote("/items/{id}")).json()["totals"]["requests"] == 60
    )
    now = int(time.time()) // 60 * 60
    minute = collector.get(f"/v1/overview?from={now - 600}&to={now + 60}&interval=minute").json()
    assert minute["interval"] == 60 and len(minute["series"]) == 11


def test_tables_and_status_codes(collector: Collector) -> None:
    sent(collector)
    endpoints = collector.get("/v1/endpoints").json()["endpoints"]
    assert {(r["method"], r["route"], r["requests"]) for r in endpoints} == {
        ("GET", "/items/{id}", 40),
        ("POST", "/items/{id}", 20),
    }
    consumers = {r["consumer"]: r["requests"] for r in collector.get("/v1/consumers").json()["consumers"]}
    assert consumers == {"alice": 20, "bob": 20, None: 20}
    codes = collector.get("/v1/status-codes").json()["status_codes"]
    assert codes == [{"status_code": c, "requests": 15} for c in (200, 201, 404, 500)]
    assert len(collector.get("/v1/endpoints?limit=1").json()["endpoints"]) == 1


def test_recent_events_and_export(collector: Collector) -> None:
    sent(collector)
    recent = collector.get("/v1/events/recent?limit=5").json()["events"]
    assert len(recent) == 5
    assert {"path", "route", "status_code", "consumer_id", "metadata", "ts_ms"} <= set(recent[0])
    exported = collector.get("/v1/export?format=json")
    assert exported.status == 200
    rows = json.loads(exported.body)
    assert len(rows) == 60
    assert [r["metadata"] for r in rows if r["metadata"]] == [{"i": 7}]
    as_csv = collector.get("/v1/export?format=csv&status_class=5")
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert len(table) == 15 and all(r["status_code"] == "500" for r in table)


@pytest.mark.parametrize(
    "query",
    ["from=yesterday", "from=100&to=50", "status_class=7", "limit=0", "limit=x", "interval=7", "from=0&to=99999999"],
)
def test_bad_parameters_are_400_with_a_message(collector: Collector, query: str) -> None:
    r = collector.get(f"/v1/overview?{query}")
    assert r.status == 400
    assert r.json()["error"]


def test_export_rejects_unknown_formats(collector: Collector) -> None:
    assert collector.get("/v1/export?format=xml").status == 400


def test_iso_times_are_accepted(collector: Collector) -> None:
    sent(collector)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    r = collector.get(f"/v1/overview?from={urllib.parse.quote(start)}")
    assert r.status == 200 and r.json()["totals"]["requests"] == 60
    today = time.strftime("%Y-%m-%d", time.gmtime())
    r = collector.get(f"/v1/overview?from={today}")  # a date: its midnight, UTC
    assert r.status == 200 and r.json()["start"] == time.time() // 86400 * 86400, r.body


def test_openapi_documents_every_endpoint(collector: Collector) -> None:
    spec = http("GET", collector.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in [*PATHS, "/v1/events", "/healthz"]:
        assert path in spec["paths"], path


@pytest.mark.parametrize("path", PATHS)
def test_unknown_query_parameters_are_400_naming_them(collector: Collector, path: str) -> None:
    r = collector.get(f"{path}?consumers=alice&frm=0&limit=5")
    assert r.status == 400
    error = r.json()["error"]
    assert "'consumers'" in error and "'frm'" in error and "'limit'" not in error.split(";")[0]
    assert "allowed:" in error and "consumer" in error


def test_parameters_of_other_endpoints_are_unknown(collector: Collector) -> None:
    assert collector.get("/v1/overview?interval=hour").status == 200
    assert "'interval'" in collector.get("/v1/endpoints?interval=hour").json()["error"]
    assert collector.get("/v1/export?format=csv").status == 200
    assert "'format'" in collector.get("/v1/overview?format=csv").json()["error"]


@pytest.mark.parametrize("path", PATHS)
def test_a_parameter_given_twice_is_400(collector: Collector, path: str) -> None:
    r = collector.get(f"{path}?consumer=alice&consumer=bob")
    assert r.status == 400 and "consumer is given more than once" in r.json()["error"]


def test_an_unknown_parameter_needs_a_token_first(collector: Collector) -> None:
    assert http("GET", collector.url + "/v1/overview?nope=1").status == 401


@pytest.mark.parametrize(
    "query",
    [
        "consumer=a%00b",
        "endpoint=%00",
        "method=GET%00",
        "limit=%C2%B2",  # a superscript two: str.isdigit() is true, int() fails
        "from=%C2%B2%C2%B3",
        "interval=%C2%B9%C2%B2%C2%B0",
        "interval=99999999999999999960",
        "from=-5",
        "to=253402300800",
        "from=1969-12-31T23:59:59Z",
        "limit=" + "9" * 5000,
    ],
)
def test_values_that_cannot_reach_the_database_are_400(collector: Collector, query: str) -> None:
    r = collector.get(f"/v1/overview?{query}")
    assert r.status == 400, r.body
    assert r.json()["error"]
