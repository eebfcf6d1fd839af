"""The ``peekapi`` command, run as a real subprocess: admin commands, ``serve``, and the missing-extra message."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peekapi_server.store import open_store
from tests.server.support import free_port, http

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peekapi.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_projects_keys_and_tokens(db_url: str) -> None:
    name = f"cli-{time.time_ns()}"
    r = run("project", "create", name, "--database", db_url, "--endpoint-cap", "9")
    assert r.returncode == 0, r.stderr
    assert name in r.stdout
    again = run("project", "create", name, "--database", db_url)
    assert again.returncode == 1 and "already exists" in again.stderr
    key = run("key", "create", name, "--database", db_url)
    assert key.returncode == 0 and key.stdout.strip().startswith("ak_live_")
    assert "shown once" in key.stderr
    secret = key.stdout.strip()
    listed = run("key", "list", "--project", name, "--database", db_url)
    assert secret[:16] in listed.stdout and secret not in listed.stdout and "active" in listed.stdout
    token = run("token", "create", name, "--database", db_url)
    assert token.stdout.strip().startswith("rt_")
    revoked = run("key", "revoke", secret[:16], "--database", db_url)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run("key", "list", "--project", name, "--database", db_url).stdout
    missing = run("key", "create", "no-such-project", "--database", db_url)
    assert missing.returncode == 1 and "no project" in missing.stderr
    assert name in run("project", "list", "--database", db_url).stdout


def test_database_defaults_to_the_per_user_data_dir(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path), "PEEKAPI_DATABASE_URL": ""}
    assert run("project", "create", "default-db", env=env).returncode == 0
    assert (tmp_path / "peekapi" / "peekapi.db").is_file()


def test_serve_receives_events_and_says_what_it_does(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    assert run("project", "create", "served", "--database", db).returncode == 0
    key = run("key", "create", "served", "--database", db).stdout.strip()
    token = run("token", "create", "served", "--database", db).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peekapi.cli",
            "serve",
            "--port",
            str(port),
            "--database",
            db,
            "--summary-seconds",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if http("GET", url + "/healthz", timeout=1).status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        body = json.dumps([{"method": "GET", "path": "/x/1", "status_code": 200, "response_time_ms": 3}]).encode()
        r = http("POST", url + "/v1/events", body, {"x-api-key": key, "x-peekapi-batch-id": "one"})
        assert r.json() == {"accepted": 1, "rejected": 0}
        deadline = time.monotonic() + 10
        while http("GET", url + "/healthz").json()["queued_events"] and time.monotonic() < deadline:
            time.sleep(0.01)
        overview = http("GET", url + "/v1/overview", headers={"authorization": f"Bearer {token}"}).json()
        assert overview["totals"]["requests"] == 1
        many = json.dumps([json.loads(body)[0]] * 500).encode()
        for i in range(10):
            assert (
                http("POST", url + "/v1/events", many, {"x-api-key": key, "x-peekapi-batch-id": f"m{i}"}).status == 200
            )
        bad_key = "ak_live_" + "s3cret" * 6
        for _ in range(3):
            assert http("POST", url + "/v1/events", body, {"x-api-key": bad_key}).status == 401
        half_bad = json.dumps([{**json.loads(body)[0], "status_code": 42}, json.loads(body)[0]]).encode()
        assert http("POST", url + "/v1/events", half_bad, {"x-api-key": key}).json() == {"accepted": 1, "rejected": 1}
        time.sleep(0.5)  # a summary is due
    finally:
        proc.terminate()  # a graceful stop: what was acknowledged is written before the process exits
        _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    log = err.decode()
    assert f"peekapi collector on http://127.0.0.1:{port} (database {db})" in log  # where it listens and stores
    refusals = [line for line in log.splitlines() if "refused a request from 127.0.0.1: 401 unknown or revoked" in line]
    assert len(refusals) == 1 and "(key sha256:" in refusals[0]  # rate-limited: three refusals, one line
    assert bad_key not in log and key not in log and "s3cret" not in log  # never a key
    assert "rejected 1 of 2 events (first: status_code is not an integer from 100 to 999)" in log
    summaries = re.findall(r"peekapi_server\.activity: stored (\d+) events in \d+ transactions", log)
    assert sum(int(n) for n in summaries) == 5002  # the summaries add up to what was stored
    store = open_store(db)
    try:
        (project,) = store.list_projects()
        assert store.count_events(project.id) == 5002
    finally:
        store.close()


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    r = run("serve", "--workers", "2", "--database", f"sqlite:///{tmp_path / 'w.db'}")
    assert r.returncode == 2
    assert "SQLite has one writer" in r.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "argument --port: must be between 1 and 65535, got 70000"),
        (["--port", "0"], "argument --port: must be between 1 and 65535, got 0"),
        (["--summary-seconds", "-5"], "argument --summary-seconds: must be 0 or more, got -5"),
    ],
)
def test_serve_refuses_out_of_range_flags_without_a_traceback(tmp_path: Path, flags: list[str], message: str) -> None:
    r = run("serve", *flags, "--database", f"sqlite:///{tmp_path / 'f.db'}")
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_a_password_prompt_without_a_terminal_says_to_use_password_stdin(db_url: str) -> None:
    name = f"user-{time.time_ns()}"
    r = subprocess.run(
        [sys.executable, "-m", "peekapi.cli", "user", "create", name, "--database", db_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2
    assert "--password-stdin" in r.stderr
    assert "Traceback" not in r.stderr


def test_unsupported_database_urls_are_reported(tmp_path: Path) -> None:
    r = run("project", "list", "--database", "mysql://localhost/x")
    assert r.returncode == 2 and "unsupported database URL" in r.stderr


def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = run("project", "list", "--database", f"sqlite:///{tmp_path / 'file' / 'sub.db'}")
    assert r.returncode == 2 and "cannot open the database" in r.stderr and "Traceback" not in r.stderr


def test_a_missing_server_extra_names_the_install_command() -> None:
    code = "import sys; sys.modules['starlette'] = None; from peekapi.cli import main; sys.exit(main(['serve']))"
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert 'pip install "peekapi[server]"' in r.stderr
    # the CLI module itself imports nothing outside the standard library
    probe = (
        "import sys, peekapi.cli; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('starlette', 'uvicorn', 'psycopg', 'peekapi_server')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_serve_on_a_port_in_use_fails_before_creating_the_first_user(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'peekapi.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("serve", "--database", db, "--port", str(port))
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    assert "password" not in r.stderr.lower()  # no one-time password shown for a collector that never ran
    store = open_store(db)
    try:
        assert store.count_users() == 0  # the next start creates the first user, and shows its password
    finally:
        store.close()


def test_serve_warns_of_email_channels_it_cannot_send_to(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'peekapi.db'}"
    assert run("project", "create", "shop", "--database", db).returncode == 0
    made = run("alert", "channel", "create", "shop", "oncall", "--email", "a@example.com", "--database", db)
    assert made.returncode == 0, made.stderr
    with socket.socket() as taken:  # serve then stops at its port check, after the warning
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = run("serve", "--database", db, "--port", str(taken.getsockname()[1]))
    assert "the email channel(s) shop/oncall cannot send" in r.stderr, r.stderr


def test_serve_refuses_a_public_url_that_is_not_one(tmp_path: Path) -> None:
    r = run("serve", "--database", f"sqlite:///{tmp_path / 'p.db'}", "--public-url", "notaurl")
    assert r.returncode == 2 and "--public-url must be the dashboard's address" in r.stderr, r.stderr


def test_the_hint_after_creating_a_project_can_be_pasted(tmp_path: Path) -> None:
    r = run("project", "create", "my shop", "--database", f"sqlite:///{tmp_path / 'p.db'}")
    assert r.returncode == 0 and "peekapi key create 'my shop'" in r.stdout, r.stdout


def test_dashboard_users_are_listed_and_deleted_but_never_the_last(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    for name in ("alice", "bob"):
        made = subprocess.run(
            [sys.executable, "-m", "peekapi.cli", "user", "create", name, "--password-stdin", "--database", db],
            input="a long enough password\n", check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    listed = run("user", "list", "--database", db)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["alice", "bob"]
    store = open_store(db)
    try:
        bob = store.get_user("bob")
        assert bob is not None
        store.create_session("token-hash", bob.id, "csrf", int(time.time()) + 3600)
    finally:
        store.close()
    deleted = run("user", "delete", "bob", "--database", db)
    assert deleted.returncode == 0 and "deleted dashboard user 'bob'" in deleted.stderr
    store = open_store(db)
    try:
        assert store.get_user("bob") is None
        assert store.get_session("token-hash") is None  # their session ended with them
    finally:
        store.close()
    last = run("user", "delete", "alice", "--database", db)
    assert last.returncode == 1 and "the only dashboard user" in last.stderr
    assert run("user", "delete", "nobody", "--database", db).returncode == 1
