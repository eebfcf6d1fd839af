"""Dashboard fixtures: a real collector on 127.0.0.1 (SQLite) holding known events, a dashboard user, and
Debian's Chromium driven by Playwright (skipped, saying why, where either is missing).

Chromium is launched from ``/usr/bin/chromium`` (``apt-get install chromium``; scripts/test installs it):
Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

from peekapi_server.dashboard.passwords import hash_password
from tests.server.conftest import db_url, pg_url, store
from tests.server.support import Collector, start_collector

__all__ = ["db_url", "pg_url", "store"]  # the collector tests' engine fixtures, used here too

CHROMIUM = Path(os.environ.get("PEEKAPI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
USER, PASSWORD = "tester", "correct horse battery"

#: Known events, all inside the last hour (range=1h) except PREVIOUS, in the hour before it.
XSS_METHOD = "X'&LT&GT"
XSS_PATH = "/<img src=x onerror=alert(1)>"
XSS_ROUTE = "/<script>alert(2)</script>"
XSS_CONSUMER = '"><img src=x onerror=alert(3)><script>alert(4)</script>'
USERS_ROUTE, ORDERS_ROUTE = "/users/{id}", "/orders"
PREVIOUS = 5


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def known_events(now: float) -> list[dict[str, Any]]:
    """30 GET /users/{id} by alice (24 x 200, 4 x 404, 2 x 500, 10..39 ms, 200 bytes out), 10 POST /orders by bob
    (8 x 201, 2 x 503, 100 ms, 50 in, 20 out), one event with an XSS payload in every text field, and 5 events
    90 minutes ago (the previous period of range=1h)."""
    out: list[dict[str, Any]] = []
    for i in range(30):
        status = 200 if i < 24 else 404 if i < 28 else 500
        out.append(
            {
                "method": "GET",
                "path": f"/users/{i}",
                "route": USERS_ROUTE,
                "status_code": status,
                "response_time_ms": 10.0 + i,
                "request_size": 0,
                "response_size": 200,
                "consumer_id": "alice",
                "timestamp": _iso(now - 40 * 60 + i * 60),
            }
        )
    for i in range(10):
        out.append(
            {
                "method": "POST",
                "path": ORDERS_ROUTE,
                "route": ORDERS_ROUTE,
                "status_code": 201 if i < 8 else 503,
                "response_time_ms": 100.0,
                "request_size": 50,
                "response_size": 20,
                "consumer_id": "bob",
                "timestamp": _iso(now - 30 * 60 + i * 60),
            }
        )
    out.append(
        {
            "method": XSS_METHOD,
            "path": XSS_PATH,
            "route": XSS_ROUTE,
            "status_code": 200,
            "response_time_ms": 5.0,
            "request_size": 0,
            "response_size": 100,
            "consumer_id": XSS_CONSUMER,
            "timestamp": _iso(now - 10 * 60),
        }
    )
    for i in range(PREVIOUS):
        out.append(
            {
                "method": "GET",
                "path": f"/users/{i}",
                "route": USERS_ROUTE,
                "status_code": 200,
                "response_time_ms": 10.0,
                "request_size": 0,
                "response_size": 200,
                "consumer_id": "alice",
                "timestamp": _iso(now - 90 * 60 + i * 60),
            }
        )
    return out


@dataclass
class Dashboard:
    """A running collector with a dashboard user and known data in ``project``."""

    collector: Collector
    url: str
    project: str


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dashboard(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The collector on each engine: SQLite, and PostgreSQL where ``PEEKAPI_TEST_POSTGRES_URL`` is set."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'peekapi.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    c = start_collector(url)
    try:
        c.store.create_user(USER, hash_password(PASSWORD))
        r = c.post(known_events(time.time()))
        assert r.status == 200 and r.json()["accepted"] == 46, r.body
        c.drain()
        yield Dashboard(c, c.url, c.project.name)
    finally:
        c.stop()
        c.store.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (scripts/test does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def login(page: Any, url: str, user: str = USER, password: str = PASSWORD) -> None:
    """Logs in through the form and waits for the page it leads to."""
    page.goto(url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


@pytest.fixture(scope="package")
def auth_state(browser: Any, dashboard: Dashboard) -> dict[str, Any]:
    """Cookies of a logged-in session, shared by the tests' contexts (one scrypt check, not one per test)."""
    context = browser.new_context()
    page = context.new_page()
    login(page, dashboard.url)
    assert "/login" not in page.url, page.url
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


class Console:
    """Console errors, page errors and dialogs seen by a page (CSP violations are console errors)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser: Any, auth_state: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page (1280x900) whose console errors and dialogs are collected as ``page.console``."""
    context = browser.new_context(storage_state=auth_state, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    p.console = Console(p)
    try:
        yield p
    finally:
        context.close()


@pytest.fixture
def anon_page(browser: Any) -> Iterator[Any]:
    """A page without a session."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    p.console = Console(p)
    try:
        yield p
    finally:
        context.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
