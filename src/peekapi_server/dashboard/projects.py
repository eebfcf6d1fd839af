"""The projects and keys page: create a project, create and revoke ingest keys and read tokens (the secret is
shown once, in the answer to the form that created it), set retention, and copy the SDK snippets.

Forms post to this page's actions; with htmx (``HX-Request``) the answer is the project's panel alone, swapped
into the page, otherwise the whole page.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from peekapi_server.store import CredentialKind, Project, StoreError
from peekapi_server.store.users import Session

from .snippet import snippet_for
from .web import base_context, form_field, page, render, store_of

_KINDS: dict[str, CredentialKind] = {"ingest": "ingest", "read": "read"}


def _selected(projects: list[Project], name: str | None) -> Project | None:
    return next((p for p in projects if p.name == name), projects[0] if projects else None)


async def _render(
    request: Request,
    session: Session,
    name: str | None,
    status: int = 200,
    *,
    secret: tuple[str, str] | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    store = store_of(request)
    projects = await run_in_threadpool(store.list_projects)
    project = _selected(projects, name)
    keys = tokens = []
    if project is not None:
        keys = await run_in_threadpool(store.list_credentials, project.name, "ingest")
        tokens = await run_in_threadpool(store.list_credentials, project.name, "read")
    context: dict[str, Any] = {
        **base_context(request, session, None, "projects"),
        "projects": [p.name for p in projects],
        "all_projects": projects,
        "project": project,
        "keys": keys,
        "tokens": tokens,
        "secret": secret,
        "error": error,
        "notice": notice,
        "snippet": snippet_for(request),
    }
    partial = request.headers.get("hx-request") == "true" and request.method == "POST" and project is not None
    return render("_project_panel.html" if partial else "projects.html", status, **context)


@page
async def projects_page(request: Request, session: Session) -> Response:
    """``GET /projects?project=NAME``: every project, and the chosen one's keys, tokens, retention, snippets."""
    return await _render(request, session, request.query_params.get("project"))


@page
async def projects_json(request: Request, session: Session) -> Response:
    """``GET /projects.json``: every project with its settings, keys and tokens (prefixes, never secrets)."""
    store = store_of(request)

    def build() -> dict[str, Any]:
        out = []
        for p in store.list_projects():
            creds = [
                {"id": c.id, "kind": c.kind, "prefix": c.prefix, "created_at": c.created_at, "revoked_at": c.revoked_at}
                for kind in ("ingest", "read")
                for c in store.list_credentials(p.name, kind)
            ]
            out.append({**p._asdict(), "credentials": creds})
        return {"projects": out}

    return JSONResponse(await run_in_threadpool(build))


@page
async def create_project(request: Request, session: Session) -> Response:
    """``POST /projects/create``: a new project (name), then its page."""
    name = (await form_field(request, "name")).strip()
    try:
        await run_in_threadpool(store_of(request).create_project, name)
    except StoreError as exc:
        return await _render(request, session, None, 400, error=str(exc))
    return RedirectResponse("/projects?" + _q(name), status_code=303)


def _q(name: str) -> str:
    return urlencode({"project": name})


@page
async def create_credential(request: Request, session: Session) -> Response:
    """``POST /projects/credentials``: a new ingest key (``kind=ingest``) or read token (``kind=read``); the
    answer shows the secret once."""
    name = await form_field(request, "project")
    kind = _KINDS.get(await form_field(request, "kind"))
    if kind is None:
        return await _render(request, session, name, 400, error="kind must be ingest or read")
    try:
        _, secret = await run_in_threadpool(store_of(request).create_credential, name, kind)
    except StoreError as exc:
        return await _render(request, session, name, 400, error=str(exc))
    label: Literal["ingest key", "read token"] = "ingest key" if kind == "ingest" else "read token"
    return await _render(request, session, name, secret=(label, secret))


@page
async def revoke_credential(request: Request, session: Session) -> Response:
    """``POST /projects/credentials/revoke``: revokes a key or token of the project by id (``kind``, ``id``)."""
    name = await form_field(request, "project")
    kind = _KINDS.get(await form_field(request, "kind"))
    ident = await form_field(request, "id")
    store = store_of(request)
    if kind is None or not ident.isdigit():
        return await _render(request, session, name, 400, error="kind and id are required")
    owned = await run_in_threadpool(store.list_credentials, name, kind)
    if not any(str(c.id) == ident for c in owned):
        return await _render(request, session, name, 404, error="no such key or token in this project")
    try:
        cred = await run_in_threadpool(store.revoke_credential, ident, kind)
    except StoreError as exc:
        return await _render(request, session, name, 400, error=str(exc))
    return await _render(request, session, name, notice=f"Revoked {cred.prefix}...")


@page
async def set_retention(request: Request, session: Session) -> Response:
    """``POST /projects/retention``: how many days raw events and rollups are kept."""
    name = await form_field(request, "project")
    raw, rollups = await form_field(request, "raw_retention_days"), await form_field(request, "rollup_retention_days")
    if not (raw.isdigit() and rollups.isdigit() and len(raw) < 7 and len(rollups) < 7):
        return await _render(request, session, name, 400, error="retention must be whole days")
    try:
        await run_in_threadpool(store_of(request).set_retention, name, int(raw), int(rollups))
    except StoreError as exc:
        return await _render(request, session, name, 400, error=str(exc))
    return await _render(request, session, name, notice="Retention saved.")
