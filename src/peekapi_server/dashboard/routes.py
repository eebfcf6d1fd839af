"""The dashboard's route table, mounted by the app under ``/`` after the ingest and read API routes."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import alert_channels, alerts, export, live, login, overview, projects, tables
from .web import HERE, SecurityHeaders, current_session


async def home(request: Request) -> Response:
    """``GET /``: the overview when logged in, else the login page."""
    if await current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/overview", status_code=303)


def mount() -> Mount:
    """Every dashboard route (pages, JSON twins, forms, the live stream, static files) behind the security
    headers of :class:`~.web.SecurityHeaders`."""
    get = ["GET"]
    post = ["POST"]
    return Mount(
        "/",
        routes=[
            Route("/", home, methods=get),
            Route("/login", login.login, methods=["GET", "POST"]),
            Route("/logout", login.logout, methods=post),
            Route("/overview", overview.overview_page, methods=get),
            Route("/overview.json", overview.overview_json, methods=get),
            Route("/endpoint", overview.endpoint_page, methods=get),
            Route("/endpoint.json", overview.endpoint_json, methods=get),
            Route("/consumer", overview.consumer_page, methods=get),
            Route("/consumer.json", overview.consumer_json, methods=get),
            Route("/endpoints", tables.endpoints_page, methods=get),
            Route("/endpoints.json", tables.endpoints_json, methods=get),
            Route("/consumers", tables.consumers_page, methods=get),
            Route("/consumers.json", tables.consumers_json, methods=get),
            Route("/live", live.live_page, methods=get),
            Route("/live.json", live.live_json, methods=get),
            Route("/live/stream", live.live_stream, methods=get),
            Route("/projects", projects.projects_page, methods=get),
            Route("/projects.json", projects.projects_json, methods=get),
            Route("/projects/create", projects.create_project, methods=post),
            Route("/projects/credentials", projects.create_credential, methods=post),
            Route("/projects/credentials/revoke", projects.revoke_credential, methods=post),
            Route("/projects/retention", projects.set_retention, methods=post),
            Route("/export", export.export, methods=get),
            Route("/alerts", alerts.alerts_page, methods=get),
            Route("/alerts.json", alerts.alerts_json, methods=get),
            Route("/alerts/rule", alerts.rule_page, methods=get),
            Route("/alerts/rule.json", alerts.rule_json, methods=get),
            Route("/alerts/new", alerts.new_page, methods=get),
            Route("/alerts/create", alerts.create_rule, methods=post),
            Route("/alerts/update", alerts.update_rule, methods=post),
            Route("/alerts/preview", alerts.preview_rule, methods=post),
            Route("/alerts/silence", alerts.silence_rule, methods=post),
            Route("/alerts/delete", alerts.delete_rule, methods=post),
            Route("/alerts/channels", alert_channels.channels_page, methods=get),
            Route("/alerts/channels.json", alert_channels.channels_json, methods=get),
            Route("/alerts/channels/create", alert_channels.create_channel, methods=post),
            Route("/alerts/channels/delete", alert_channels.delete_channel, methods=post),
            Route("/alerts/channels/test", alert_channels.test_channel, methods=post),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )
