"""The notification channels page: a project's webhooks, Slack and Discord incoming webhooks and email
addresses; create one (a webhook's ``whsec_`` signing secret is shown once, in the answer), delete one no rule
uses, and send a test notification through one, with the result shown.

``GET /alerts/channels?project=P`` (twin ``/alerts/channels.json``); forms post to ``/alerts/channels/create``,
``/alerts/channels/delete`` and ``/alerts/channels/test``. With htmx the answer is the channels panel alone,
otherwise the whole page. URL targets are shown with their path hidden: a Slack or Discord webhook URL is a
credential.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from peekapi_server.alerts import admin
from peekapi_server.alerts.outbox import send_test
from peekapi_server.alerts.rules import Channel
from peekapi_server.store import StoreError
from peekapi_server.store.users import Session

from .alerts import project_view
from .web import base_context, collector_of, page, project_names, read_form, render, store_of


async def _render(
    request: Request,
    session: Session,
    project: str | None,
    status: int = 200,
    *,
    secret: tuple[str, str] | None = None,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    context: dict[str, Any] = {
        **base_context(request, session, view, "alerts"),
        "projects": await project_names(request),
        "channels": await run_in_threadpool(admin.channels, store_of(request), view.project.id),
        "shown_target": admin.shown_target,
        "secret": secret,
        "error": error,
        "notice": notice,
        "form": form or {"name": "", "kind": "webhook", "target": ""},
    }
    if request.headers.get("hx-request") == "true" and request.method == "POST":
        # htmx swaps only 2xx answers: the panel carries the outcome, error or not
        return render("_alert_channels_panel.html", **context)
    return render("alert_channels.html", status, **context)


@page
async def channels_page(request: Request, session: Session) -> Response:
    """``GET /alerts/channels?project=P``: the project's channels and the form creating one."""
    return await _render(request, session, request.query_params.get("project"))


@page
async def channels_json(request: Request, session: Session) -> Response:
    """``GET /alerts/channels.json?project=P``: the channels (targets as shown, never secrets)."""
    view = await project_view(request, request.query_params.get("project"))
    if isinstance(view, Response):
        return view
    rows = await run_in_threadpool(admin.channels, store_of(request), view.project.id)
    return JSONResponse(
        {
            "project": view.project.name,
            "channels": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "target": admin.shown_target(c),
                    "signed": c.secret is not None,
                    "created_at": c.created_at,
                }
                for c in rows
            ],
        }
    )


@page
async def create_channel(request: Request, session: Session) -> Response:
    """``POST /alerts/channels/create``: ``name``, ``kind`` and ``target`` (URL or email addresses)."""
    form = await read_form(request)
    project = form.get("project", "")
    fields = {k: form.get(k, "") for k in ("name", "kind", "target")}
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    channel = Channel(fields["name"], fields["kind"], fields["target"])  # type: ignore[arg-type]  # checked next
    try:
        stored, secret = await run_in_threadpool(
            admin.create_channel, store_of(request), view.project.id, channel, int(time.time())
        )
    except (ValueError, StoreError) as exc:
        return await _render(request, session, project, 400, error=str(exc), form=fields)
    shown = ("signing secret of " + stored.name, secret) if secret else None
    return await _render(request, session, project, secret=shown, notice=f"Created the channel {stored.name!r}.")


@page
async def delete_channel(request: Request, session: Session) -> Response:
    """``POST /alerts/channels/delete``: the channel ``name``, unless a rule still sends to it."""
    form = await read_form(request)
    project, name = form.get("project", ""), form.get("name", "")
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    try:
        await run_in_threadpool(admin.delete_channel, store_of(request), view.project.id, name)
    except (ValueError, StoreError) as exc:
        return await _render(request, session, project, 400, error=str(exc))
    return await _render(request, session, project, notice=f"Deleted the channel {name!r}.")


@page
async def test_channel(request: Request, session: Session) -> Response:
    """``POST /alerts/channels/test``: sends a test notification through the channel ``name`` now (blocks a
    worker thread until the receiver answers, at most the outbox's timeouts) and shows whether it arrived."""
    form = await read_form(request)
    project, name = form.get("project", ""), form.get("name", "")
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    collector = collector_of(request)
    failure = await run_in_threadpool(send_test, collector.store, collector.config, view.project.id, name)
    if failure is not None:
        return await _render(
            request, session, project, 502, error=f"The test notification to {name!r} failed: {failure}"
        )
    return await _render(request, session, project, notice=f"Sent a test notification to {name!r}.")
