"""``peekapi alert ...`` run as a real subprocess (``python -m peekapi.cli``) on each engine: channels and rules
created, listed with their state and last value, silenced, deleted; bad input exits 2 with the reason."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from peekapi_server.alerts.rules import Rule
from peekapi_server.store import open_store
from peekapi_server.store.alerts import AlertState

from .test_cli import run

pytestmark = pytest.mark.slow


def test_channels_rules_list_silence_delete(db_url: str) -> None:
    project = f"alerts-{uuid.uuid4().hex[:8]}"
    db = ("--database", db_url)
    assert run("project", "create", project, *db).returncode == 0
    hook = run("alert", "channel", "create", project, "ops", "--webhook", "https://hooks.example/in/abc", *db)
    assert hook.returncode == 0, hook.stderr
    secret = hook.stdout.strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret) and "shown once" in hook.stderr
    mail = run("alert", "channel", "create", project, "mail", "--email", "a@example.com, b@example.com", *db)
    assert mail.returncode == 0 and mail.stdout == "", mail.stderr
    listed = run("alert", "channel", "list", project, *db).stdout.splitlines()
    assert listed == ["mail\temail\ta@example.com, b@example.com", "ops\twebhook\thttps://hooks.example/…\tsigned"]
    assert secret not in run("alert", "channel", "list", project, *db).stdout

    created = run(
        "alert", "create", project, "5xx spike", "--metric", "error_rate_5xx", "--above", "5", "--window", "10m",
        "--for", "2m", "--min-requests", "20", "--recovery", "2", "--no-data", "ok", "--endpoint", "/users/{id}",
        "--method", "get", "--status-class", "5", "--group-by", "consumer", "--channel", "ops", "--channel", "mail",
        "--repeat", "1h", *db,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "error_rate_5xx above 5% over 10 min" in created.stdout
    store = open_store(db_url)
    try:
        pid = store.get_project(project).id
        with store.alerts(False) as a:
            stored = a.rule_named(pid, "5xx spike")
        assert stored is not None
        rule = Rule.loads(stored.spec)
        assert rule == Rule.of(
            {
                "name": "5xx spike",
                "metric": "error_rate_5xx",
                "comparison": "above",
                "threshold": 5,
                "window_seconds": 600,
                "for_seconds": 120,
                "min_requests": 20,
                "recovery": 2,
                "no_data": "ok",
                "scope": {"endpoint": "/users/{id}", "method": "GET", "status_class": 5},
                "group_by": "consumer",
                "channels": ["ops", "mail"],
                "repeat_seconds": 3600,
            }
        )
        drop = run("alert", "create", project, "traffic drop", "--metric", "requests_per_minute", "--decrease", "50",
                   "--baseline", "week", *db)  # fmt: skip
        assert drop.returncode == 0, drop.stderr
        now = int(time.time())
        with store.alerts(True) as a:
            a.save_states(
                [
                    AlertState(stored.id, "alice", "firing", now - 300, 12.5, now - 60, now - 300),
                    AlertState(stored.id, "bob", "inactive", now - 300, 0.0, now - 60, 0),
                ]
            )
    finally:
        store.close()
    lines = run("alert", "list", "--project", project, *db).stdout.splitlines()
    assert len(lines) == 2
    first, second = (line.split("\t") for line in lines)
    assert first[1:6] == [project, "5xx spike", "firing (1/2 groups firing)", "12.5", "-"]
    assert second[1:6] == [project, "traffic drop", "inactive", "-", "-"]
    assert second[6] == "requests_per_minute decreases by 50% vs the week window over 5 min"

    assert run("alert", "silence", project, "5xx spike", "--for", "2h", *db).returncode == 0
    silenced = run("alert", "list", *db).stdout
    assert re.search(r"5xx spike\tfiring.*\tsilenced until \d{4}-\d\d-\d\d \d\d:\d\d\t", silenced)
    until = run("alert", "silence", project, "5xx spike", "--until", "2099-01-01T08:00", *db)
    assert until.returncode == 0 and "until 2099-01-01 08:00 UTC" in until.stdout
    assert "silenced until 2099-01-01 08:00" in run("alert", "list", "--project", project, *db).stdout
    assert run("alert", "silence", project, "5xx spike", "--off", *db).returncode == 0
    assert "silenced" not in run("alert", "list", "--project", project, *db).stdout

    in_use = run("alert", "channel", "delete", project, "ops", *db)
    assert in_use.returncode == 2 and "used by the rule(s) '5xx spike'" in in_use.stderr
    assert run("alert", "delete", project, "5xx spike", *db).returncode == 0
    assert run("alert", "channel", "delete", project, "ops", *db).returncode == 0
    assert [line.split("\t")[2] for line in run("alert", "list", "--project", project, *db).stdout.splitlines()] == [
        "traffic drop"
    ]
    assert run("alert", "channel", "list", project, *db).stdout.splitlines() == [
        "mail\temail\ta@example.com, b@example.com"
    ]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--metric", "cpu", "--above", "1"], 2, "metric must be one of"),
        (["--metric", "error_rate", "--above", "150"], 2, "a rate threshold is a percentage from 0 to 100"),
        (["--metric", "p95_ms", "--above", "x"], 2, "threshold must be a number"),
        (["--metric", "p95_ms", "--above", "9", "--window", "90s"], 2, "window_seconds must be whole minutes"),
        (["--metric", "p95_ms", "--above", "9", "--for", "soon"], 2, "for must be a duration"),
        (["--metric", "p95_ms", "--above", "9", "--channel", "nowhere"], 2, "no channel named 'nowhere'"),
        (["--metric", "p95_ms", "--above", "9", "--group-by", "host"], 2, "group_by must be"),
        (["--metric", "p95_ms"], 2, "one of the arguments --above --below --increase --decrease is required"),
        (["--metric", "p95_ms", "--above", "1", "--below", "2"], 2, "not allowed with argument"),
    ],
)
def test_bad_rules_exit_2_with_the_reason(db_url: str, args: list[str], status: int, message: str) -> None:
    project = f"bad-{uuid.uuid4().hex[:8]}"
    assert run("project", "create", project, "--database", db_url).returncode == 0
    r = run("alert", "create", project, "r", *args, "--database", db_url)
    assert (r.returncode, r.stdout) == (status, "")
    assert message in r.stderr, r.stderr
    assert run("alert", "list", "--project", project, "--database", db_url).stdout == ""


def test_other_mistakes_say_what_is_wrong(db_url: str) -> None:
    project = f"oops-{uuid.uuid4().hex[:8]}"
    db = ("--database", db_url)
    assert run("project", "create", project, *db).returncode == 0
    for args, status, message in [
        (["channel", "create", project, "x", "--slack", "not-a-url"], 2, "a slack channel's target is an http(s) URL"),
        (["channel", "create", project, "x", "--email", "nobody"], 2, "one or more addresses"),
        (["channel", "delete", project, "x"], 1, "no channel named 'x'"),
        (["silence", project, "ghost", "--for", "1h"], 1, f"project {project!r} has no rule named 'ghost'"),
        (["delete", project, "ghost"], 1, "no rule named 'ghost'"),
        (["create", "no-such-project", "r", "--metric", "p95_ms", "--above", "1"], 1, "no project"),
    ]:
        r = run("alert", *args, *db)
        assert r.returncode == status and message in r.stderr, (args, r.returncode, r.stderr)
    assert run("alert", "create", project, "r", "--metric", "p95_ms", "--above", "1", *db).returncode == 0
    for args, message in [
        (["--for", "0s"], "--for must be longer than 0s"),
        (["--until", "2001-01-01T00:00"], "--until must be in the future"),
        (["--until", "next week"], "--until must be a time"),
    ]:
        r = run("alert", "silence", project, "r", *args, *db)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    again = run("alert", "create", project, "r", "--metric", "p95_ms", "--above", "1", *db)
    assert again.returncode == 1 and "already exists" in again.stderr
