"""``peekapi serve`` on a new database: the admin's one-time password on stderr opens the dashboard in Chromium;
a second start prints no password."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.server.support import free_port, http

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.slow
PASSWORD_LINE = re.compile(r"created the dashboard user 'admin' with the password (\S+)")


class Serve:
    """A ``peekapi serve`` subprocess whose stderr lines are collected by a thread."""

    def __init__(self, db: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "peekapi.cli", "serve", "--port", str(self.port), "--database", db],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                if http("GET", self.url + "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self._reader.join(5)
            assert self.proc.stderr is not None
            self.proc.stderr.close()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 5.0) -> list[str]:
        """The first group of every stderr line matching ``pattern``, once at least one has (else none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m.group(1) for line in list(self.lines) if (m := pattern.search(line))]
            if found:
                return found
            time.sleep(0.05)
        return []


def test_first_start_prints_a_one_time_admin_password(tmp_path: Path, browser: Any) -> None:
    db = f"sqlite:///{tmp_path / 'first.db'}"
    serve = Serve(db)
    try:
        found = serve.wait_for(PASSWORD_LINE)
        assert len(found) == 1, serve.lines
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(serve.url + "/")
            assert urlparse(page.url).path == "/login"
            login(page, serve.url, "admin", found[0])
            page.goto(serve.url + "/overview")
            assert urlparse(page.url).path == "/projects"  # no project yet: create one first
            page.screenshot(path=str(ARTIFACTS / "first-start-projects.png"), full_page=True)
        finally:
            context.close()
    finally:
        assert serve.stop() == 0
    again = Serve(db)
    try:
        assert again.wait_for(re.compile(r"(peekapi collector on \S+)")), again.lines
        assert again.wait_for(PASSWORD_LINE, timeout=0.5) == []
    finally:
        assert again.stop() == 0
    assert not any("password" in line for line in again.lines), again.lines
