"""Alerts end to end, in real time: `peekapi serve --workers 2` on PostgreSQL (two collector processes evaluating
and delivering), an error spike posted through its ingest endpoint, and a real webhook receiver that verifies the
signature: the firing is delivered exactly once, signed, linking to the dashboard at ``--public-url``.

Bounded: the spike is posted 70 s in the past and the rule made afterwards with its evaluation mark two minutes
back, so the processes' next alert pass (every 10 s) evaluates a window holding it; then the test waits a further
15 s (at least one more pass of each process) for a duplicate that must not come.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest

from peekapi_server.alerts.rules import Rule, new_webhook_secret
from peekapi_server.store import open_store
from tests.server.support import event, free_port, http
from tests.server.test_alert_channels import Receiver, verify

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_collector_processes_notify_a_spike_once(pg_url: str) -> None:
    store = open_store(pg_url)
    secret = new_webhook_secret()
    port = free_port()
    with Receiver() as receiver:
        project = store.create_project(f"e2e-{uuid.uuid4().hex[:8]}")
        _, key = store.create_credential(project.name, "ingest")
        rule = Rule.of(
            {
                "name": "errors",
                "metric": "error_rate",
                "comparison": "above",
                "threshold": 10,
                "window_seconds": 120,
                "min_requests": 5,
                "channels": ["ops"],
            }
        )
        with store.alerts(True) as a:
            a.create_channel(project.id, "ops", "webhook", receiver.url, secret=secret, now=int(time.time()))
        serve = ["serve", "--database", pg_url, "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(
            [sys.executable, "-m", "peekapi.cli", *serve, "--public-url", "https://peek.example.com"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if http("GET", f"http://127.0.0.1:{port}/healthz").status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            # the spike, 70 s ago: inside the 2-minute window of whichever minute is due next (SETTLE_SECONDS)
            then = datetime.fromtimestamp(time.time() - 70, timezone.utc).isoformat()
            spike = [event(timestamp=then, status_code=500 if i % 2 else 200) for i in range(20)]
            body = json.dumps(spike).encode()
            headers = {"content-type": "application/json", "x-api-key": key}
            assert http("POST", f"http://127.0.0.1:{port}/v1/events", body, headers).status == 200
            while http("GET", f"http://127.0.0.1:{port}/healthz").json()["queued_events"]:
                time.sleep(0.05)
            # the rule, made now with its mark two minutes back: the next pass evaluates the due minute
            with store.alerts(True) as a:
                rule_id = a.create_rule(project.id, rule.name, rule.dumps(), int(time.time()) - 180).id

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not receiver.requests():
                time.sleep(0.5)
            assert receiver.requests(), "no notification arrived"
            time.sleep(15)  # each process passes at least once more: a duplicate would have arrived by now
            (got,) = receiver.requests()
            assert verify(secret, got.headers, got.body)
            payload = json.loads(got.body)
            assert payload["type"] == "alert.firing" and payload["value"] == 50.0
            assert payload["url"] == f"https://peek.example.com/alerts/rule?project={project.name}&id={rule_id}"
            with store.alerts(False) as a:
                (item,) = a.outbox(rule_id)
                assert item.delivered_at is not None and item.message_id == got.headers["webhook-id"]
                assert [h.state for h in a.history(rule_id)] == ["firing"]
        finally:
            server.terminate()
            _, err = server.communicate(timeout=30)
            store.close()
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
