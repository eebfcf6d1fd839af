"""Dashboard users and sessions in the store (SQLite and PostgreSQL), passwords, the first-start admin and the
``peekapi user`` commands."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from peekapi_server.dashboard import passwords
from peekapi_server.dashboard.login import ADMIN_NAME, LoginLimiter, ensure_admin
from peekapi_server.store import Store, StoreError, open_store
from tests.server.support import Collector, http, start_collector


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_password_hashes_are_salted_scrypt_and_verified() -> None:
    a, b = passwords.hash_password("correct horse"), passwords.hash_password("correct horse")
    assert a != b and a.startswith(f"scrypt${passwords.N}${passwords.R}${passwords.P}$")
    assert passwords.verify_password("correct horse", a) and passwords.verify_password("correct horse", b)
    assert not passwords.verify_password("correct horsf", a)
    assert not passwords.verify_password("correct horse", None)
    assert not passwords.verify_password("correct horse", "md5$abc")
    assert not passwords.verify_password("x" * 2000, a)
    with pytest.raises(ValueError):
        passwords.hash_password("short")


def test_users_and_sessions(store: Store) -> None:
    name = _name("u")
    user = store.create_user(name, "h1")
    assert store.get_user(name) == user and store.get_user(_name("nobody")) is None
    with pytest.raises(StoreError, match="already exists"):
        store.create_user(name, "h2")
    for bad in ("", " padded", "x" * 65, "tab\there"):
        with pytest.raises(StoreError):
            store.create_user(bad, "h")
    now = int(time.time())
    live, old = uuid.uuid4().hex, uuid.uuid4().hex
    store.create_session(live, user.id, "csrf-1", now + 60)
    store.create_session(old, user.id, "csrf-2", now - 1)
    s = store.get_session(live)
    assert s is not None and (s.user_id, s.user_name, s.csrf) == (user.id, name, "csrf-1")
    assert store.get_session(old) is None  # expired
    store.delete_session(live)
    assert store.get_session(live) is None
    store.create_session(live, user.id, "csrf-3", now + 60)
    store.set_user_password(name, "h3")
    assert store.get_user(name).password_hash == "h3"  # type: ignore[union-attr]
    assert store.get_session(live) is None  # a new password ends every session
    with pytest.raises(StoreError):
        store.set_user_password(_name("nobody"), "h")


def test_set_retention(store: Store) -> None:
    p = store.create_project(_name("p"))
    assert store.set_retention(p.name, 3, 30)[2:4] == (3, 30)
    assert store.get_project(p.name)[2:4] == (3, 30)
    for raw, rollups in ((0, 30), (3, 0), (36501, 30)):
        with pytest.raises(StoreError):
            store.set_retention(p.name, raw, rollups)
    with pytest.raises(StoreError):
        store.set_retention(_name("nope"), 3, 30)


def test_first_start_creates_one_admin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        password = ensure_admin(s)
        assert password is not None
        err = capsys.readouterr().err
        assert password in err and "shown only this once" in err
        user = s.get_user(ADMIN_NAME)
        assert user is not None and passwords.verify_password(password, user.password_hash)
        assert ensure_admin(s) is None and capsys.readouterr().err == ""
    finally:
        s.close()


def test_login_limiter_counts_per_user_and_per_address(store: Store) -> None:
    now = [1_000_000.0]
    limiter = LoginLimiter(window=300, clock=lambda: now[0])
    for _ in range(5):
        assert not limiter.blocked(store, "a", "1.1.1.1")
        limiter.failed(store, "a", "1.1.1.1")
    assert limiter.blocked(store, "a", "2.2.2.2")  # the user name, from any address
    assert not limiter.blocked(store, "b", "1.1.1.1")
    for i in range(15):
        limiter.failed(store, f"u{i}", "1.1.1.1")
    assert limiter.blocked(store, "b", "1.1.1.1")  # the address, for any user name
    now[0] += 301
    assert not limiter.blocked(store, "a", "1.1.1.1")  # the window has passed
    limiter.failed(store, "c", "3.3.3.3")  # and recording a failure forgets the old ones
    assert store.recent_login_failures(["user:a", "addr:1.1.1.1", "user:c"], 0) == {"user:c": 1}


def test_the_login_limit_holds_across_collector_processes(db_url: str) -> None:
    """Two collectors on one database (as ``--workers 2`` runs): failures at either count at both."""
    a = start_collector(db_url)
    b = start_collector(db_url, like=a)
    try:
        user = _name("limited")
        a.store.create_user(user, passwords.hash_password("the right password"))
        for i in range(5):
            assert _login(a if i % 2 else b, user, "a wrong password") == 401
        assert _login(a, user, "the right password") == 429
        assert _login(b, user, "the right password") == 429
    finally:
        for c in (b, a):
            c.stop()
            c.store.close()


def _login(collector: Collector, user: str, password: str) -> int:
    """Posts the login form as a browser does (its CSRF cookie and field); the answer's status."""
    form = http("GET", collector.url + "/login")
    cookie = form.headers["set-cookie"].split(";")[0]
    csrf = re.search(rb'name="csrf" value="([^"]+)"', form.body)
    assert csrf is not None
    body = urlencode({"csrf": csrf.group(1).decode(), "username": user, "password": password}).encode()
    headers = {"cookie": cookie, "content-type": "application/x-www-form-urlencoded"}
    return http("POST", collector.url + "/login", body, headers).status


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peekapi.cli", *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_cli_user_create_and_password(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    r = _cli("user", "create", "ops", "--password-stdin", "--database", db, stdin="first password\n")
    assert r.returncode == 0 and "created dashboard user 'ops'" in r.stderr, r.stderr
    again = _cli("user", "create", "ops", "--password-stdin", "--database", db, stdin="first password\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    short = _cli("user", "create", "dev", "--password-stdin", "--database", db, stdin="short\n")
    assert short.returncode == 2 and "8 to 1024" in short.stderr
    changed = _cli("user", "password", "ops", "--password-stdin", "--database", db, stdin="second password\n")
    assert changed.returncode == 0, changed.stderr
    s = open_store(db)
    try:
        user = s.get_user("ops")
        assert user is not None and passwords.verify_password("second password", user.password_hash)
        assert not passwords.verify_password("first password", user.password_hash)
    finally:
        s.close()
