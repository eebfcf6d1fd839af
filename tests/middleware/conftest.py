"""Fixtures for the middleware tests: a real client delivering to the real loopback ingest server."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peekapi import PeekApiClient
from tests.support.ingest import IngestServer

# Starlette 1.x warns when its TestClient runs on httpx rather than httpx2; the warning is about the test
# tooling, not about peekapi, so it is silenced once here, before any test module imports the TestClient.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import starlette.testclient  # noqa: F401
    except ImportError:
        pass

# The example apps (examples/) are importable by the tests: they are what the end-to-end tests run.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(scope="session")
def shared_ingest() -> Iterator[IngestServer]:
    server = IngestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ingest(shared_ingest: IngestServer) -> IngestServer:
    """One ingest server for all middleware tests, emptied before each (stopping one costs 0.5 s).

    Every client a test makes is shut down (so delivered) at its end: nothing arrives late into the next test.
    """
    shared_ingest.requests.clear()
    return shared_ingest


@pytest.fixture
def make_client(options: dict[str, Any]) -> Iterator[Callable[..., PeekApiClient]]:
    """``make_client(**overrides)``: a real client sending to the test's ingest server, shut down afterwards."""
    made: list[PeekApiClient] = []

    def make(**overrides: Any) -> PeekApiClient:
        c = PeekApiClient({**options, **overrides})
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown(timeout=5)


@pytest.fixture
def client(make_client: Callable[..., PeekApiClient]) -> PeekApiClient:
    return make_client()


class Delivered:
    """``delivered(n)``: flush the client, then return the ``n`` events the ingest server received (exactly)."""

    def __init__(self, ingest: IngestServer, client: PeekApiClient) -> None:
        self.ingest = ingest
        self.client = client

    def __call__(self, count: int, client: PeekApiClient | None = None) -> list[dict[str, Any]]:
        c = client or self.client
        assert c.flush(timeout=10), c.stats()
        events = self.ingest.wait_for(count, timeout=10)
        assert len(events) == count, events
        return events

    def one(self, client: PeekApiClient | None = None) -> dict[str, Any]:
        """The single event delivered, without its run-dependent fields (checked, then removed)."""
        return event_fields(self(1, client)[0])


@pytest.fixture
def delivered(ingest: IngestServer, client: PeekApiClient) -> Delivered:
    return Delivered(ingest, client)


def event_fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event without the fields that vary from run to run (timestamp, response time), after checking them."""
    assert isinstance(event["timestamp"], str) and event["timestamp"]
    assert isinstance(event["response_time_ms"], int | float) and event["response_time_ms"] >= 0
    return {k: v for k, v in event.items() if k not in ("timestamp", "response_time_ms")}
