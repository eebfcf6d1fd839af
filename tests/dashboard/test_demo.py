"""``scripts/demo.py``, bounded: it sets up, backfills history, serves live traffic, and the dashboard shows it.

The demo runs as a user runs it (its own collector, the demo shop under uvicorn, its own database), stopping
after ``--seconds``; the test logs in with the login the demo prints and looks at the overview, the endpoints
and the live page in Chromium while the traffic flows, then checks the demo's own final count.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, login

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


class Output:
    """The demo's stdout, read line by line on a thread of its own."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self, process: subprocess.Popen[str]) -> None:
        self._thread.join(30)
        assert process.stdout is not None
        process.stdout.close()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            time.sleep(0.1)
        raise AssertionError(f"the demo never printed {pattern!r}; it printed:\n" + "\n".join(self.lines))


def test_the_demo_serves_its_traffic_on_the_dashboard(browser: Any, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--seconds", "30", "--hours", "2", "--port", "0", "--rate", "8", "--report", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    out = Output(process)
    try:
        backfilled = int(out.wait_for(r"backfilled ([\d,]+) / \1 events \(100 %\)", 90).group(1).replace(",", ""))
        url = out.wait_for(r"Dashboard:\s+(\S+)", 60).group(1)
        user, password = out.wait_for(r"Login:\s+(\S+) / (\S+)", 5).groups()
        base = url.split("/overview")[0]
        assert backfilled > 1000

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        try:
            login(page, base, user, password)
            page.goto(url)
            page.wait_for_selector("#charts[data-loaded=true]")
            shown = int(page.get_attribute('[data-total="requests"]', "data-value") or 0)
            assert shown >= backfilled  # the history, and the live requests stored so far
            drawn = page.locator('[data-chart="requests"]').get_attribute("data-sums") or "[0]"
            assert int(float(drawn.strip("[]").split(",")[0])) == shown  # the chart holds every request
            page.screenshot(path=str(ARTIFACTS / "demo-overview.png"), full_page=True)

            page.goto(f"{base}/endpoints?project=demo&range=24h")
            page.wait_for_selector("#endpoints-table[data-loaded=true]")
            routes = set(page.locator("#endpoints-table tbody .route").all_text_contents())
            assert {"/v1/products/{product_id}", "/v1/orders", "/v1/payments", "/v1/search"} <= routes, routes
            page.screenshot(path=str(ARTIFACTS / "demo-endpoints.png"), full_page=True)

            # live traffic through the middleware reaches the live page as it arrives
            page.goto(f"{base}/live?project=demo")
            page.wait_for_selector("#live-rows tr")
            newest = page.locator("#live-rows tr").first.locator(".path").text_content()
            page.wait_for_function(
                "(p) => document.querySelector('#live-rows tr .path').textContent !== p", arg=newest, timeout=20_000
            )
            page.screenshot(path=str(ARTIFACTS / "demo-live.png"), full_page=True)
        finally:
            context.close()

        assert process.wait(120) == 0, "\n".join(out.lines)
        answered, stored = out.wait_for(r"([\d,]+) live requests answered by the app, ([\d,]+) stored", 5).groups()
        assert answered == stored and int(answered.replace(",", "")) > 50
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)
        out.close(process)
