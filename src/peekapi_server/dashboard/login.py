"""Login, logout, the login rate limit, and the admin account created on first start.

``GET /login`` sets a pre-session CSRF cookie and puts the same value in the form; ``POST /login`` checks it,
then the rate limit (failures per user name and per client address, kept in the store so that it holds across
processes), then the password. A successful login
deletes the session the browser had (if any) and issues a new one: the cookie is rotated, ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS.
"""

from __future__ import annotations

import hmac
import secrets
import sys
import threading
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from peekapi_server.store import Store, StoreError
from peekapi_server.store.users import Session

from . import passwords
from .web import SESSION_COOKIE, SESSION_SECONDS, page, read_form, render, safe_next, store_of
from .web import token_hash as hash_token

LOGIN_CSRF_COOKIE = "peekapi_login_csrf"
ADMIN_NAME = "admin"
#: Failed logins allowed per user name and per client address within :data:`WINDOW_SECONDS`.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 300.0
#: scrypt needs 64 MiB per hash: at most this many run at once.
_HASHING = threading.BoundedSemaphore(2)


class LoginLimiter:
    """Counts failed logins per user name and per client address over a sliding window, in the store: the limit
    holds across every collector process sharing the database. Thread-safe (each call is a transaction)."""

    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self._window = window
        self._clock = clock

    @staticmethod
    def _keys(user: str, address: str) -> list[str]:
        return ["user:" + user[:128], "addr:" + address]

    def blocked(self, store: Store, user: str, address: str) -> bool:
        """True when the user name or the address has used up its failures in the window."""
        since = int(self._clock() - self._window) + 1
        counts = store.recent_login_failures(self._keys(user, address), since)
        return (
            counts.get("user:" + user[:128], 0) >= MAX_FAILURES_PER_USER
            or counts.get("addr:" + address, 0) >= MAX_FAILURES_PER_ADDRESS
        )

    def failed(self, store: Store, user: str, address: str) -> None:
        """Records one failed login (and forgets those older than the window)."""
        now = int(self._clock())
        store.record_login_failure(self._keys(user, address), now, now - int(self._window))


LIMITER = LoginLimiter()


def _check(store: Store, name: str, password: str) -> int | None:
    """The user's id when ``password`` is theirs, else ``None`` (same work for an unknown user)."""
    user = store.get_user(name) if len(name) <= 64 else None
    with _HASHING:
        ok = passwords.verify_password(password, user.password_hash if user else None)
    return user.id if ok and user else None


def _login_form(request: Request, status: int = 200, error: str | None = None, name: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html", status, csrf=token, error=error, name=name, next=safe_next(request.query_params.get("next"))
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/login"
    )
    return response


async def login(request: Request) -> Response:
    """``GET /login`` (the form, also when logged in: to log in again or as someone else) and ``POST /login``
    (check, rate limit, new session replacing the browser's old one, redirect to ``next``)."""
    if request.method == "GET":
        return _login_form(request)
    form = await read_form(request)
    sent = form.get("csrf", "")
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        return _login_form(request, 403, "The login form expired: please try again.")
    name = form.get("username", "")
    password = form.get("password", "")
    address = request.client.host if request.client else "?"
    store = store_of(request)
    if await run_in_threadpool(LIMITER.blocked, store, name, address):
        return _login_form(request, 429, "Too many failed logins: wait a few minutes and try again.", name)
    user_id = await run_in_threadpool(_check, store, name, password)
    if user_id is None:
        await run_in_threadpool(LIMITER.failed, store, name, address)
        return _login_form(request, 401, "Wrong user name or password.", name)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(store.delete_session, hash_token(old))
    token = secrets.token_urlsafe(32)
    expires = int(time.time()) + SESSION_SECONDS
    await run_in_threadpool(store.create_session, hash_token(token), user_id, secrets.token_urlsafe(32), expires)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@page
async def logout(request: Request, session: Session) -> Response:
    """``POST /logout``: ends the session and clears its cookie."""
    token = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(store_of(request).delete_session, hash_token(token))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def ensure_admin(store: Store) -> str | None:
    """On a database without users, creates ``admin`` with a random password, prints it once to stderr and
    returns it; otherwise (or when another process created it first) does nothing and returns ``None``."""
    if store.count_users():
        return None
    password = passwords.new_password()
    try:
        store.create_user(ADMIN_NAME, passwords.hash_password(password))
    except StoreError:
        return None
    print(
        f"peekapi: created the dashboard user {ADMIN_NAME!r} with the password {password}\n"
        f"peekapi: it is shown only this once; change it with: peekapi user password {ADMIN_NAME}",
        file=sys.stderr,
        flush=True,
    )
    return password
