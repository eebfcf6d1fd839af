"""Shared fixtures: a real loopback ingest server, and client options that point at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ingest import IngestServer


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def options(ingest: IngestServer, tmp_path: Path) -> dict[str, Any]:
    """Options for a client that sends to ``ingest`` and spools under a temporary directory."""
    return {
        "api_key": "ak_test_123",
        "endpoint": ingest.url,
        "storage_path": str(tmp_path / "spool"),
        "handle_signals": False,
        "flush_interval": 0.2,
        "retry_base_delay": 0.01,
    }
