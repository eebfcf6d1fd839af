"""Golden request fixtures: one logical batch in each SDK's spelling (WIRE.md), accepted and stored identically.

``fixtures/golden/<sdk>.json`` are request bodies byte for byte as that SDK writes them (lower-case methods,
exponent numbers, escaped slashes, each timestamp spelling, null and missing optional fields);
``expected.json`` is what the store must hold for every one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from peekapi_server.store import ReadQuery
from tests.server.support import Collector, http, start_collector

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SDKS = ["python", "node", "go", "ruby", "rust", "java", "php", "dart"]


@pytest.fixture
def old_events_collector(db_url: str) -> Iterator[Collector]:
    # The fixtures carry fixed dates: accept them unclamped.
    c = start_collector(db_url, max_event_age_seconds=100 * 365 * 86400)
    try:
        yield c
    finally:
        c.stop()
        c.store.close()


def test_every_sdk_spelling_is_stored_identically(old_events_collector: Collector) -> None:
    c = old_events_collector
    expected = json.loads((GOLDEN / "expected.json").read_text())
    projects = {}
    for sdk in SDKS:
        project = c.store.create_project(f"{c.project.name}-{sdk}")
        _, key = c.store.create_credential(project.name, "ingest")
        body = (GOLDEN / f"{sdk}.json").read_bytes()
        headers = {"content-type": "application/json", "x-api-key": key, "x-peekapi-sdk": f"{sdk}/0.1.0"}
        r = http("POST", c.url + "/v1/events", body, headers)
        assert (r.status, r.json()) == (200, {"accepted": 3, "rejected": 0}), sdk
        projects[sdk] = project
    c.drain()
    q = ReadQuery(start=1777000000, end=1778000000, limit=100)
    for sdk, project in projects.items():
        stored = [{k: v for k, v in row.items() if k != "id"} for row in c.store.recent_events(project.id, q)]
        assert stored == expected, sdk
        totals = c.store.overview(project.id, q)["totals"]
        assert (totals["requests"], totals["errors_5xx"], totals["bytes_in"]) == (3, 1, 120), sdk


def test_fixtures_really_use_the_sdk_spellings() -> None:
    raw = {sdk: (GOLDEN / f"{sdk}.json").read_text() for sdk in SDKS}
    assert "\\/" in raw["php"]
    assert "E-1" in raw["java"] and "E3" in raw["java"]
    assert '"method":"get"' in raw["node"] and '"method":"post"' in raw["go"]
    assert "+00:00" in raw["python"] and ".000000000Z" in raw["go"]
    assert '"consumer_id"' not in raw["node"].split("},{")[1]  # missing, not null
