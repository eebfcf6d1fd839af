"""The alert rules pages: a project's rules with where each stands, a rule's page (its groups' states, the
history of transitions, edit, silence, delete), the form creating a rule, and the form's live preview.

``GET /alerts?project=P`` lists the rules (``/alerts.json`` is its twin); ``GET /alerts/rule?id=N`` shows one
(``/alerts/rule.json?id=N``); ``GET /alerts/new?project=P`` is the empty form. Forms post to ``/alerts/create``,
``/alerts/update``, ``/alerts/silence`` and ``/alerts/delete`` and are answered with a redirect to the rule (or
the list), or with the form and the reason when a field is wrong (400). ``POST /alerts/preview`` (htmx, from the
form) answers the preview partial: the rule's metric over the last 24 hours, its threshold, and when it would
have fired. Rule names, group keys, scopes and values from the wire are only ever rendered autoescaped.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from peekapi_server.alerts import admin
from peekapi_server.alerts.rules import COMPARISONS, METRICS, RATES, Rule
from peekapi_server.alerts.text import FIELDS, parse_time, rule_fields, rule_from_fields
from peekapi_server.store import Store, StoreError
from peekapi_server.store.alerts import StoredRule
from peekapi_server.store.base import DAY, HOUR
from peekapi_server.store.users import Session

from .alert_chart import chart
from .web import (
    MAX_FORM_BYTES,
    BadView,
    View,
    base_context,
    page,
    parse_view,
    project_names,
    read_form,
    render,
    store_of,
)

#: The silences the rule page offers, by their button's value.
SILENCES = {"1h": HOUR, "8h": 8 * HOUR, "24h": DAY}
PREVIEW_HOURS = 24
#: The new rule form's fields: Rule's own defaults, an error rate above a threshold still to be written.
_DEFAULTS = {**rule_fields(Rule("", "error_rate", "above", 0.0)), "threshold": ""}


def _now() -> int:
    return int(time.time())


async def project_view(request: Request, project: str | None) -> View | Response:
    """The view of ``project`` (the first one when ``None``), for the navigation; else the answer to send."""
    projects = await run_in_threadpool(store_of(request).list_projects)
    if not projects:
        return RedirectResponse("/projects", status_code=303)
    try:
        return parse_view({"project": project} if project else {}, projects)
    except BadView as exc:
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": str(exc)}, status_code=404)
        return render("error.html", 404, message=str(exc))


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Every value of each field of the request's urlencoded form (checkboxes send one value each)."""
    if not await read_form(request):  # wrong type, too large or too many fields: nothing
        return {}
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8")
    out: dict[str, list[str]] = {}
    for name, value in parse_qsl(body, keep_blank_values=True, max_num_fields=50):
        out.setdefault(name, []).append(value)
    return out


def _summary_json(s: admin.Summary, now: int) -> dict[str, Any]:
    return {
        "id": s.stored.id,
        "name": s.stored.name,
        "rule": s.rule.to_json() if s.rule else None,
        "description": s.rule.describe() if s.rule else None,
        "problem": s.problem,
        "state": s.state,
        "groups": s.groups,
        "firing": s.firing,
        "value": s.value,
        "evaluated_at": s.evaluated_at,
        "silenced_until": s.stored.silenced_until if s.silenced(now) else None,
    }


# -- the rules list ----------------------------------------------------------------------------------------
@page
async def alerts_page(request: Request, session: Session) -> Response:
    """``GET /alerts?project=P``: the project's rules: each in words, its state, last value and silence."""
    view = await project_view(request, request.query_params.get("project"))
    if isinstance(view, Response):
        return view
    rules = await run_in_threadpool(admin.summaries, store_of(request), view.project.id)
    return render(
        "alerts.html",
        **base_context(request, session, view, "alerts"),
        projects=await project_names(request),
        rules=rules,
        now=_now(),
    )


@page
async def alerts_json(request: Request, session: Session) -> Response:
    """``GET /alerts.json?project=P``: the rules list's figures."""
    view = await project_view(request, request.query_params.get("project"))
    if isinstance(view, Response):
        return view
    rules = await run_in_threadpool(admin.summaries, store_of(request), view.project.id)
    now = _now()
    return JSONResponse({"project": view.project.name, "rules": [_summary_json(s, now) for s in rules]})


# -- one rule ----------------------------------------------------------------------------------------------
def _detail(store: Store, rule_id: int) -> dict[str, Any] | None:
    with store.alerts(False) as a:
        stored = a.rule(rule_id)
        if stored is None:
            return None
        states = sorted(a.states(rule_id).values(), key=lambda s: (-admin.rank(s.state), s.group_key))
        channels = a.channels(stored.project_id)
        return {
            "summary": admin.summarize(stored, states),
            "states": states,
            "history": a.history(rule_id),
            "outbox": a.outbox(rule_id, limit=20),
            "channels": channels,
            "channel_names": {c.id: c.name for c in channels},
        }


def _rule_id(request: Request, value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 12 else None


async def _rule_page(
    request: Request,
    session: Session,
    rule_id: int | None,
    status: int = 200,
    *,
    fields: dict[str, str] | None = None,
    chosen: list[str] | None = None,
    error: str | None = None,
    silence_error: str | None = None,
) -> Response:
    detail = None if rule_id is None else await run_in_threadpool(_detail, store_of(request), rule_id)
    if detail is None:
        return render("error.html", 404, message="There is no such rule (it may have been deleted).")
    summary: admin.Summary = detail["summary"]
    view = await project_view(request, summary.stored.project)
    if isinstance(view, Response):
        return view
    rule = summary.rule
    return render(
        "alert_rule.html",
        status,
        **base_context(request, session, view, "alerts"),
        projects=await project_names(request),
        s=summary,
        detail=detail,
        now=_now(),
        silence_error=silence_error,
        form=_form_context(
            fields or (rule_fields(rule) if rule else {**_DEFAULTS, "name": summary.stored.name}),
            detail["channels"],
            chosen if chosen is not None else list(rule.channels if rule else ()),
            error,
        ),
    )


def _form_context(fields: dict[str, str], channels: list[Any], chosen: list[str], error: str | None) -> dict[str, Any]:
    return {
        "fields": {name: fields.get(name, "") for name in FIELDS},
        "metrics": METRICS,
        "rates": sorted(RATES),
        "comparisons": COMPARISONS,
        "channels": [c.name for c in channels],
        "chosen": chosen,
        "error": error,
    }


@page
async def rule_page(request: Request, session: Session) -> Response:
    """``GET /alerts/rule?id=N``: the rule, its groups' states, its history, and its edit, silence and delete."""
    if "id" not in request.query_params and "project" in request.query_params:  # the project switcher
        return RedirectResponse("/alerts?" + urlencode({"project": request.query_params["project"]}), status_code=303)
    return await _rule_page(request, session, _rule_id(request, request.query_params.get("id")))


@page
async def rule_json(request: Request, session: Session) -> Response:
    """``GET /alerts/rule.json?id=N``: the rule page's figures."""
    rule_id = _rule_id(request, request.query_params.get("id"))
    detail = None if rule_id is None else await run_in_threadpool(_detail, store_of(request), rule_id)
    if detail is None:
        return JSONResponse({"error": "no such rule"}, status_code=404)
    names = detail["channel_names"]
    return JSONResponse(
        {
            "project": detail["summary"].stored.project,
            **_summary_json(detail["summary"], _now()),
            "states": [s._asdict() for s in detail["states"]],
            "history": [h._asdict() for h in detail["history"]],
            "notifications": [
                {
                    "channel": names.get(o.channel_id),
                    "created_at": o.created_at,
                    "attempts": o.attempts,
                    "delivered_at": o.delivered_at,
                    "failed_at": o.failed_at,
                    "last_error": o.last_error,
                }
                for o in detail["outbox"]
            ],
        }
    )


# -- the form ----------------------------------------------------------------------------------------------
async def _new_page(
    request: Request,
    session: Session,
    project: str | None,
    status: int = 200,
    *,
    fields: dict[str, str] | None = None,
    chosen: list[str] | None = None,
    error: str | None = None,
) -> Response:
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    channels = await run_in_threadpool(admin.channels, store_of(request), view.project.id)
    return render(
        "alert_new.html",
        status,
        **base_context(request, session, view, "alerts"),
        projects=await project_names(request),
        form=_form_context(fields or _DEFAULTS, channels, chosen or [], error),
    )


@page
async def new_page(request: Request, session: Session) -> Response:
    """``GET /alerts/new?project=P``: the form for a new rule, with its preview."""
    return await _new_page(request, session, request.query_params.get("project"))


def _fields(form: dict[str, list[str]]) -> tuple[dict[str, str], list[str]]:
    return {name: form.get(name, [""])[0] for name in FIELDS}, form.get("channels", [])


@page
async def create_rule(request: Request, session: Session) -> Response:
    """``POST /alerts/create``: a new rule of ``project`` from the form, then its page."""
    form = await form_lists(request)
    project = form.get("project", [""])[0]
    fields, chosen = _fields(form)
    view = await project_view(request, project)
    if isinstance(view, Response):
        return view
    try:
        rule = rule_from_fields(fields, chosen)
        stored = await run_in_threadpool(admin.create_rule, store_of(request), view.project.id, rule, _now())
    except (ValueError, StoreError) as exc:
        return await _new_page(request, session, project, 400, fields=fields, chosen=chosen, error=str(exc))
    return RedirectResponse(f"/alerts/rule?id={stored.id}", status_code=303)


@page
async def update_rule(request: Request, session: Session) -> Response:
    """``POST /alerts/update``: the rule ``id`` replaced by the form's (its states start again)."""
    form = await form_lists(request)
    rule_id = _rule_id(request, form.get("id", [""])[0])
    fields, chosen = _fields(form)
    try:
        if rule_id is None:
            raise StoreError("no such rule")
        rule = rule_from_fields(fields, chosen)
        await run_in_threadpool(admin.update_rule, store_of(request), rule_id, rule, _now())
    except (ValueError, StoreError) as exc:
        return await _rule_page(request, session, rule_id, 400, fields=fields, chosen=chosen, error=str(exc))
    return RedirectResponse(f"/alerts/rule?id={rule_id}", status_code=303)


PREVIEW_HINT = "Give a threshold to see when the rule would have fired over the last 24 hours."


@page
async def preview_rule(request: Request, session: Session) -> Response:
    """``POST /alerts/preview``: the preview partial of the form's rule against the project's last 24 hours."""
    form = await form_lists(request)
    fields, _ = _fields(form)
    fields["name"] = fields["name"].strip() or "preview"
    view = await project_view(request, form.get("project", [""])[0])
    if isinstance(view, Response):
        return render("_alert_preview.html", 400, error="There is no such project.", preview=None)
    if not fields["threshold"].strip():  # a form not filled in yet: a prompt, not an error
        return render("_alert_preview.html", error=None, preview=None, hint=PREVIEW_HINT)
    try:
        rule = rule_from_fields(fields, [])  # channels do not change what the rule sees
    except ValueError as exc:
        return render("_alert_preview.html", error=str(exc), preview=None)
    from peekapi_server.alerts import evaluate  # the evaluator, imported with the first preview

    now = _now()
    store, project_id = store_of(request), view.project.id
    result = await run_in_threadpool(evaluate.preview, store, project_id, rule, now, PREVIEW_HOURS)
    start = result.points[0][0] - rule.window_seconds if result.points else now - PREVIEW_HOURS * HOUR
    drawn = chart(result.points, result.firings, result.threshold, result.recovery, start=start, end=now)
    return render("_alert_preview.html", error=None, preview=result, chart=drawn, rule=rule)


# -- silence and delete ------------------------------------------------------------------------------------
@page
async def silence_rule(request: Request, session: Session) -> Response:
    """``POST /alerts/silence``: ``silence`` = ``1h``, ``8h``, ``24h``, ``until`` (with ``until``, a UTC time)
    or ``off``; nothing is sent for the rule until then."""
    form = await read_form(request)
    rule_id = _rule_id(request, form.get("id"))
    choice, now = form.get("silence", ""), _now()
    try:
        if choice in SILENCES:
            until = now + SILENCES[choice]
        elif choice == "until":
            until = parse_time(form.get("until", ""))
            if until <= now:
                raise ValueError("the silence must end in the future")
        elif choice == "off":
            until = 0
        else:
            raise ValueError("silence must be 1h, 8h, 24h, until or off")
        if rule_id is None:
            raise StoreError("no such rule")
        store = store_of(request)

        def silence() -> None:
            with store.alerts(True) as a:
                a.silence_rule(rule_id, until)

        await run_in_threadpool(silence)
    except (ValueError, StoreError) as exc:
        return await _rule_page(request, session, rule_id, 400, silence_error=str(exc))
    return RedirectResponse(f"/alerts/rule?id={rule_id}", status_code=303)


@page
async def delete_rule(request: Request, session: Session) -> Response:
    """``POST /alerts/delete``: the rule ``id``, its states and its history; then the project's rules."""
    rule_id = _rule_id(request, (await read_form(request)).get("id"))
    store = store_of(request)

    def delete() -> StoredRule | None:
        with store.alerts(True) as a:
            stored = a.rule(rule_id) if rule_id is not None else None
            if stored is not None:
                a.delete_rule(stored.id)
            return stored

    stored = await run_in_threadpool(delete)
    if stored is None:
        return render("error.html", 404, message="There is no such rule (it may have been deleted).")
    return RedirectResponse("/alerts?" + urlencode({"project": stored.project}), status_code=303)
