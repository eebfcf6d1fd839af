"""What every dashboard page shares: templates, security headers, sessions and CSRF, the view in the URL.

Every page and JSON twin is wrapped by :func:`page`, which requires a live session: without one a page
redirects to ``/login?next=...`` and a JSON or stream endpoint answers 401. Every state-changing request
(any method but GET and HEAD) must carry the session's CSRF token (form field ``csrf`` or header
``x-csrf-token``), else it is refused with 403.

The view (project, time range and filters) lives in the query string: ``project``, ``range`` (``1h``, ``24h``,
``7d``, ``30d``) or ``from``/``to`` (epoch seconds or ``YYYY-MM-DDTHH:MM`` in UTC), ``endpoint``, ``method``,
``consumer`` and ``status_class`` (``1``..``5``), so any view can be shared and reloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peekapi_server.runtime import Collector
from peekapi_server.store import Project, ReadQuery, Store
from peekapi_server.store.base import DAY, HOUR, MINUTE
from peekapi_server.store.users import Session

HERE = Path(__file__).parent
SESSION_COOKIE = "peekapi_session"
SESSION_SECONDS = 7 * DAY

#: The Content-Security-Policy of every dashboard response: scripts, styles, images and fetches from this
#: origin only; no inline script or style, no plugins, no framing, forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class SecurityHeaders:
    """ASGI middleware adding :data:`CSP` and the other security headers to every response it wraps; responses
    other than static files are also marked ``Cache-Control: no-store``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def fmt_number(value: object, digits: int = 1) -> str:
    """A figure for a table cell: ``-`` for none, thousands separated, floats with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def fmt_bytes(value: object) -> str:
    """Bytes in B, KB, MB or GB (powers of 1000)."""
    n = float(value) if isinstance(value, (int, float)) else 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} GB"


def fmt_time(seconds: object) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM`` UTC."""
    if not isinstance(seconds, (int, float)):
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


templates.filters["num"] = fmt_number
templates.filters["bytes"] = fmt_bytes
templates.filters["utc"] = fmt_time
templates.filters["pct"] = lambda v: "-" if v is None else f"{float(v) * 100:.1f}%"


def render(template: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    """The template ``template`` rendered with ``context`` (autoescaped) as an HTML response."""
    return HTMLResponse(templates.get_template(template).render(**context), status_code=status)


def collector_of(request: Request) -> Collector:
    """The running collector of the app serving ``request``."""
    collector: Collector = request.app.state.collector
    return collector


def store_of(request: Request) -> Store:
    """The collector's open store."""
    return collector_of(request).store


def token_hash(token: str) -> str:
    """The stored form of a session token (tokens are long and random: one SHA-256 is enough)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


async def current_session(request: Request) -> Session | None:
    """The live session named by the request's cookie, else ``None``."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not 20 <= len(token) <= 100 or not token.isascii():
        return None
    return await run_in_threadpool(store_of(request).get_session, token_hash(token))


def csrf_ok(session: Session, presented: str | None) -> bool:
    """True when ``presented`` is the session's CSRF token (constant-time comparison)."""
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirects): it must start with one ``/``
    and hold only printable ASCII without spaces or backslashes (browsers drop tabs and newlines from URLs, so
    ``/\t/evil.example`` would otherwise become ``//evil.example``)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and all(33 <= ord(c) < 127 and c != "\\" for c in target)
    ):
        return target
    return "/"


def wants_json(request: Request) -> bool:
    """True for the JSON twins, the live stream and the export (answered 401 rather than redirected)."""
    path = request.url.path
    return path.endswith(".json") or path.startswith(("/live/stream", "/export"))


Handler = Callable[[Request, Session], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wraps a handler that needs a logged-in user (see the module docstring for what happens without one)."""

    async def wrapped(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            if wants_json(request):
                return JSONResponse({"error": "log in first"}, status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get("x-csrf-token") or (await read_form(request)).get("csrf")
            if not csrf_ok(session, presented):
                return render("error.html", 403, message="The form has expired or was not sent by this site.")
        return await handler(request, session)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


MAX_FORM_BYTES = 65536


async def read_form(request: Request) -> dict[str, str]:
    """The request's ``application/x-www-form-urlencoded`` body as a dict (first value of each name); empty for
    any other content type, a body over 64 KiB or more than 50 fields. Every dashboard form is urlencoded."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


async def form_field(request: Request, name: str) -> str:
    """A text field of the request's form ('' when missing)."""
    return (await read_form(request)).get(name, "")


# -- the view: project, range and filters in the query string ---------------------------------------------
RANGES: dict[str, int] = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
_INTERVALS = (MINUTE, 5 * MINUTE, 15 * MINUTE, HOUR, 6 * HOUR, DAY)
_MAX_POINTS = 200
MAX_SPAN = 400 * DAY


class BadView(ValueError):
    """A query-string value the dashboard cannot understand; the message says which."""


@dataclass(frozen=True)
class View:
    """What a page shows: one project, a time range ``[start, end)`` and optional filters."""

    project: Project
    range: str
    start: int
    end: int
    endpoint: str | None = None
    method: str | None = None
    consumer: str | None = None
    status_class: int | None = None

    @property
    def span(self) -> int:
        """The range's length in seconds."""
        return self.end - self.start

    @property
    def interval(self) -> int:
        """Chart resolution: the finest of 1, 5, 15 minutes, 1, 6, 24 hours giving at most 200 points."""
        return self.coarse_interval(_MAX_POINTS)

    def coarse_interval(self, points: int) -> int:
        """The finest of the chart intervals giving at most ``points`` points (for sparklines: whole hours
        from a day up, which the store reads from its hour tables)."""
        return next((iv for iv in _INTERVALS if self.span // iv <= points), DAY)

    def query(self, limit: int = 100, previous: bool = False, interval: int | None = None) -> ReadQuery:
        """The store query for this view (``previous``: the same span just before it; ``interval``: another
        series resolution than :attr:`interval`)."""
        start, end = (self.start - self.span, self.start) if previous else (self.start, self.end)
        return ReadQuery(
            start=max(start, 0),
            end=end,
            interval=interval or self.interval,
            endpoint=self.endpoint,
            consumer=self.consumer,
            method=self.method,
            status_class=self.status_class,
            limit=limit,
        )

    def params(self, **changes: object) -> dict[str, str]:
        """The query-string parameters of this view, with ``changes`` (``None`` drops a filter)."""
        out: dict[str, str] = {"project": self.project.name}
        if self.range == "custom":
            out["from"], out["to"] = str(self.start), str(self.end)
        else:
            out["range"] = self.range
        for name in ("endpoint", "method", "consumer", "status_class"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        for name, value in changes.items():
            if name == "range":
                out.pop("from", None)
                out.pop("to", None)
            if value is None:
                out.pop(name, None)
            else:
                out[name] = str(value)
        return out

    def qs(self, **changes: object) -> str:
        """:meth:`params` as a URL query string (every value percent-encoded)."""
        return urlencode(self.params(**changes))

    def filtered(
        self,
        *,
        endpoint: str | None = None,
        method: str | None = None,
        consumer: str | None = None,
        status_class: int | None = None,
    ) -> View:
        """This view (project and range) with exactly these filters."""
        return replace(self, endpoint=endpoint, method=method, consumer=consumer, status_class=status_class)

    def as_json(self) -> dict[str, object]:
        """The view as the JSON twins report it."""
        return {
            "project": self.project.name,
            "range": self.range,
            "from": self.start,
            "to": self.end,
            "interval": self.interval,
            "endpoint": self.endpoint,
            "method": self.method,
            "consumer": self.consumer,
            "status_class": self.status_class,
        }


def _time(value: str, name: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadView(f"{name} must be epoch seconds or YYYY-MM-DDTHH:MM (UTC)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def parse_view(q: Mapping[str, str], projects: list[Project], now: float | None = None) -> View:
    """The view described by the query string ``q``; :class:`BadView` for a value that cannot be used.

    Without ``project`` the first project (by name) is shown; without a range, the last 24 hours. Preset ranges
    end at the next whole minute, so a reload shows the same buckets within a minute.
    """
    for name, value in q.items():
        if "\x00" in value or len(value) > 2000:
            raise BadView(f"{name} is not a usable value")
    if not projects:
        raise BadView("there is no project yet")
    wanted = q.get("project")
    project = next((p for p in projects if p.name == wanted), None) if wanted else projects[0]
    if project is None:
        raise BadView("no such project")
    if "from" in q or "to" in q:
        end = _time(q["to"], "to") if q.get("to") else int(now or time.time())
        start = _time(q["from"], "from") if q.get("from") else end - DAY
        rng = "custom"
        if not 0 <= start < end or end - start > MAX_SPAN:
            raise BadView("from must be before to, at most 400 days apart, after 1970")
        if end - start < MINUTE:
            end = start + MINUTE
    else:
        rng = q.get("range") or "24h"
        if rng not in RANGES:
            raise BadView(f"range must be one of {', '.join(RANGES)}")
        end = (int(now or time.time()) // MINUTE + 1) * MINUTE
        start = end - RANGES[rng]
    status_class: int | None = None
    if q.get("status_class"):
        raw = q["status_class"].lower().removesuffix("xx")
        if raw not in ("1", "2", "3", "4", "5"):
            raise BadView("status_class must be 1..5")
        status_class = int(raw)
    return View(
        project=project,
        range=rng,
        start=start,
        end=end,
        endpoint=q.get("endpoint") or None,
        method=(q.get("method") or "").upper() or None,
        consumer=q.get("consumer") or None,
        status_class=status_class,
    )


async def view_of(request: Request) -> View | Response:
    """The request's view, else the response to send (no project yet: to the projects page; bad value: 400)."""
    store = store_of(request)
    projects = await run_in_threadpool(store.list_projects)
    if not projects:
        if wants_json(request):
            return JSONResponse({"error": "there is no project yet"}, status_code=404)
        return RedirectResponse("/projects", status_code=303)
    try:
        return parse_view(request.query_params, projects)
    except BadView as exc:
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=400)
        return render("error.html", 400, message=str(exc))


def base_context(request: Request, session: Session, view: View | None, active: str) -> dict[str, Any]:
    """What ``base.html`` needs: the user, their CSRF token, the view and which page is active."""
    return {"user": session.user_name, "csrf": session.csrf, "view": view, "active": active, "path": request.url.path}


async def project_names(request: Request) -> list[str]:
    """Every project's name, for the project switcher."""
    return [p.name for p in await run_in_threadpool(store_of(request).list_projects)]
