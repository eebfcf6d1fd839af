"""The route table and the application factory.

``create_app()`` builds the ASGI app without side effects; the lifespan opens (and migrates) the store,
creates the dashboard's first user when there is none (printing its one-time password to stderr) and starts
the writer and maintenance threads, and on shutdown writes what is queued before closing.

The ingest endpoint, the read API and ``/openapi.json`` come first; everything else is the dashboard
(:mod:`.dashboard`), mounted under ``/``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ingest, readapi
from .config import ENV_PUBLIC_URL, ENV_SMTP_URL, ENV_SUMMARY_SECONDS, ServerConfig
from .dashboard import login as dashboard_login
from .dashboard import routes as dashboard_routes
from .openapi import SPEC
from .runtime import Collector
from .store import Store


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``."""
    return JSONResponse(SPEC)


def create_app(config: ServerConfig | None = None, store: Store | None = None) -> Starlette:
    """The collector app. ``store`` (optional) is used instead of opening ``config``'s database and not closed."""
    collector = Collector(config or ServerConfig(), store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        collector.start()
        try:
            dashboard_login.ensure_admin(collector.store)
            yield
        finally:
            collector.stop()

    app = Starlette(
        routes=[
            Route("/v1/events", ingest.ingest, methods=["POST"]),
            Route("/healthz", ingest.healthz, methods=["GET"]),
            Route("/v1/overview", readapi.overview, methods=["GET"]),
            Route("/v1/endpoints", readapi.endpoints, methods=["GET"]),
            Route("/v1/consumers", readapi.consumers, methods=["GET"]),
            Route("/v1/status-codes", readapi.status_codes, methods=["GET"]),
            Route("/v1/events/recent", readapi.recent, methods=["GET"]),
            Route("/v1/export", readapi.export, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            dashboard_routes.mount(),
        ],
        lifespan=lifespan,
    )
    app.state.collector = collector
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (used by ``peekapi serve --workers N``): settings from the env."""
    summary = os.environ.get(ENV_SUMMARY_SECONDS)
    return create_app(
        ServerConfig(
            summary_interval_seconds=60.0 if summary is None else float(summary),
            public_url=os.environ.get(ENV_PUBLIC_URL, ""),
            smtp_url=os.environ.get(ENV_SMTP_URL, ""),
        )
    )
