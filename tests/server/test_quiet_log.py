"""Rate-limited log lines (``peekapi_server.activity.QuietLog``): what the collector says when a problem repeats,
such as every batch failing to be written while the disk is full."""

from __future__ import annotations

import logging
import time

import pytest

from peekapi_server.activity import QuietLog


def test_a_repeated_problem_is_said_once_per_quiet_period_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    log = QuietLog(logging.getLogger("peekapi_server.test"), quiet_seconds=0.2)
    with caplog.at_level(logging.INFO, logger="peekapi_server.test"):
        for i in range(500):
            log.say(logging.ERROR, "OperationalError", "writing batch %d failed", i)
        log.say(logging.ERROR, "OSError", "another kind: said at once")
        time.sleep(0.25)
        log.say(logging.ERROR, "OperationalError", "writing batch %d failed", 500)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.ERROR, "writing batch 0 failed"),
        (logging.ERROR, "another kind: said at once"),
        (logging.ERROR, "writing batch 500 failed (and 499 more like it in the last 0 s)"),
    ]
