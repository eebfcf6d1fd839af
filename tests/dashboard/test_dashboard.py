"""The dashboard in real headless Chromium against a real collector on 127.0.0.1 holding known events.

Every page is screenshotted into tests/artifacts/ (git-ignored). Figures are read twice: from the page's JSON
twin and from what the page drew (the totals' text and the series handed to uPlot, kept on each chart).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

import pytest

from peekapi_server.dashboard.web import safe_next, token_hash
from tests.server.support import event, http

from .conftest import (
    ARTIFACTS,
    ORDERS_ROUTE,
    PASSWORD,
    PREVIOUS,
    USERS_ROUTE,
    XSS_CONSUMER,
    XSS_METHOD,
    XSS_PATH,
    XSS_ROUTE,
    Dashboard,
    login,
    unique,
)

pytestmark = pytest.mark.slow

PAGES = ["/overview", "/endpoints", "/consumers", "/live", "/projects"]


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def qs(d: Dashboard, **extra: str) -> str:
    return urlencode({"project": d.project, "range": "1h", **extra})


def wait_charts(page: Any) -> None:
    page.wait_for_selector("#charts[data-loaded=true]")


def fetch_json(page: Any, path: str) -> Any:
    """The JSON twin, fetched by the page itself (with its session cookie)."""
    return page.evaluate("async (p) => { const r = await fetch(p); return await r.json(); }", path)


def drawn(page: Any, chart: str) -> tuple[int, list[float]]:
    """(points, per-series sums) of what was handed to uPlot for one chart, and a canvas must exist."""
    el = page.locator(f'[data-chart="{chart}"]')
    assert el.locator("canvas").count() >= 1
    return int(el.get_attribute("data-points")), json.loads(el.get_attribute("data-sums"))


def test_unauthenticated_requests_go_to_login(anon_page: Any, dashboard: Dashboard) -> None:
    for path in [*PAGES, "/endpoint?endpoint=/x", "/consumer?consumer=x", "/"]:
        anon_page.goto(dashboard.url + path)
        assert urlparse(anon_page.url).path == "/login", (path, anon_page.url)
    shot(anon_page, "login")
    for path in ["/overview.json", "/endpoints.json", "/consumers.json", "/live.json", "/projects.json", "/export"]:
        r = http("GET", dashboard.url + path)
        assert r.status == 401, (path, r.status)
    r = http("GET", dashboard.url + "/live/stream")
    assert r.status == 401
    # the read API keeps its bearer tokens, the ingest endpoint its keys
    assert dashboard.collector.get("/v1/overview").status == 200
    assert http("GET", dashboard.url + "/v1/overview").status == 401


def test_security_headers_and_no_csp_violation(page: Any, dashboard: Dashboard) -> None:
    response = page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    wait_charts(page)
    assert not [e for e in page.console.errors if "Content Security Policy" in e], page.console.errors
    assert page.console.errors == []
    static = http("GET", dashboard.url + "/static/vendor/uplot/LICENSE")
    assert static.status == 200 and b"MIT" in static.body


def test_overview_draws_the_known_figures(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
    wait_charts(page)
    data = fetch_json(page, f"/overview.json?{qs(dashboard)}")
    t = data["current"]["totals"]
    assert (t["requests"], t["errors_4xx"], t["errors_5xx"]) == (41, 4, 4)
    assert (t["bytes_in"], t["bytes_out"]) == (500, 30 * 200 + 10 * 20 + 100)
    assert t["latency_min_ms"] == 5.0 and t["latency_max_ms"] == 100.0
    assert 5.0 <= t["p50_ms"] <= t["p95_ms"] <= t["p99_ms"] <= 100.0
    assert data["previous"]["totals"]["requests"] == PREVIOUS
    # the JSON twin holds what the read API answers for the same range
    view = data["view"]
    api = dashboard.collector.get(f"/v1/overview?from={view['from']}&to={view['to']}&interval={view['interval']}")
    assert api.json()["totals"] == t and api.json()["series"] == data["current"]["series"]
    # what the page shows and drew
    assert page.text_content('[data-total="requests"]') == "41"
    assert page.text_content('[data-total="errors_4xx"]') == "4"
    assert page.text_content('[data-total="errors_5xx"]') == "4"
    assert page.text_content('[data-total="error_rate"]') == f"{8 / 41 * 100:.2f}%"
    assert json.loads(page.get_attribute('[data-total="latency"]', "data-value")) == [
        t["p50_ms"],
        t["p95_ms"],
        t["p99_ms"],
    ]
    assert "+720% vs previous" in page.text_content('[data-delta="requests"]')
    points, sums = drawn(page, "requests")
    assert points == len(data["current"]["series"]) == 60
    assert sums[0] == 41 and sums[1] == PREVIOUS
    _, bytes_sums = drawn(page, "bytes")
    assert bytes_sums == [500, 6300]
    _, latency_sums = drawn(page, "latency")
    assert len(latency_sums) == 3 and all(s > 0 for s in latency_sums)
    _, error_sums = drawn(page, "errors")
    assert error_sums[0] > 0 and error_sums[1] > 0
    shot(page, "overview")


def test_filter_by_endpoint(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
    wait_charts(page)
    page.select_option("#filter-endpoint", ORDERS_ROUTE)
    page.click("#apply-filters")
    page.wait_for_url("**endpoint=%2Forders**")
    wait_charts(page)
    assert parse_qs(urlparse(page.url).query)["endpoint"] == [ORDERS_ROUTE]
    assert page.text_content('[data-total="requests"]') == "10"
    assert page.text_content('[data-total="errors_5xx"]') == "2"
    assert drawn(page, "requests")[1][0] == 10
    # the view in the URL reloads to the same figures
    page.reload()
    wait_charts(page)
    assert page.text_content('[data-total="requests"]') == "10"
    shot(page, "overview-filtered")
    # and by status class on top: the two 503s
    page.select_option("#filter-status", "5")
    page.click("#apply-filters")
    page.wait_for_url("**status_class=5**")
    wait_charts(page)
    assert page.text_content('[data-total="requests"]') == "2"
    assert page.text_content('[data-total="error_rate"]') == "100.00%"


def test_drag_on_a_chart_zooms_into_the_url(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
    wait_charts(page)
    box = page.locator("#chart-requests .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=8)
    page.mouse.up()
    page.wait_for_url("**from=**")
    wait_charts(page)
    q = parse_qs(urlparse(page.url).query)
    assert "range" not in q
    start, end = int(q["from"][0]), int(q["to"][0])
    data = fetch_json(page, "/overview.json?" + urlparse(page.url).query)
    assert data["view"]["range"] == "custom" and (data["view"]["from"], data["view"]["to"]) == (start, end)
    # half the hour, give or take the pixels: 30 minutes, less than the hour
    assert 20 * 60 <= end - start <= 40 * 60
    assert 0 < int(page.text_content('[data-total="requests"]')) < 41
    shot(page, "overview-zoomed")


def test_endpoints_and_consumers_tables(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/endpoints?{qs(dashboard)}")
    page.wait_for_selector("#endpoints-table[data-loaded=true]")
    rows = page.locator("#endpoints-table tbody tr")
    assert rows.count() == 3
    assert (
        "/users/{id}" in rows.nth(0).text_content()
        and rows.nth(0).locator('[data-col="requests"]').text_content() == "30"
    )
    assert rows.nth(0).locator("[data-spark] svg polyline").count() == 1
    assert rows.nth(0).locator("[data-spark]").get_attribute("data-sum") == "30"
    shot(page, "endpoints")
    # the JSON twin holds the read API's rows for the same range
    data = fetch_json(page, f"/endpoints.json?{qs(dashboard)}")
    view = data["view"]
    api = dashboard.collector.get(f"/v1/endpoints?from={view['from']}&to={view['to']}").json()["endpoints"]
    assert data["endpoints"] == api
    # sorted by p95, ascending: the XSS endpoint (5 ms) first, /orders (100 ms) last
    page.click('a[data-sort="p95_ms"]')
    page.wait_for_url("**sort=p95_ms**")
    page.click('a[data-sort="p95_ms"]')
    page.wait_for_url("**dir=asc**")
    routes = page.locator("#endpoints-table tbody .route").all_text_contents()
    assert routes == [XSS_ROUTE, USERS_ROUTE, ORDERS_ROUTE]
    page.click(f'#endpoints-table a:has-text("{ORDERS_ROUTE}")')
    page.wait_for_url("**/endpoint?**")
    wait_charts(page)
    assert page.text_content("#endpoint-route") == ORDERS_ROUTE
    assert page.text_content('[data-total="requests"]') == "10"
    assert "bob" in page.text_content("main")
    # its latency distribution: the ten /orders requests (100 ms each) in one bar
    bars = page.locator("#latency-distribution g[data-count]")
    counts = [int(c) for c in bars.evaluate_all("gs => gs.map(g => g.dataset.count)")]
    assert counts == [10] and bars.first.get_attribute("data-bin") in ("50-100 ms", "100-200 ms")
    shot(page, "endpoint")

    page.goto(f"{dashboard.url}/consumers?{qs(dashboard)}")
    page.wait_for_selector("#consumers-table[data-loaded=true]")
    assert page.locator("#consumers-table .consumer").all_text_contents() == ["alice", "bob", XSS_CONSUMER]
    shot(page, "consumers")
    page.click('#consumers-table a:has-text("alice")')
    page.wait_for_url("**/consumer?**")
    wait_charts(page)
    assert page.text_content("#consumer-name") == "alice"
    assert page.text_content('[data-total="requests"]') == "30"
    shot(page, "consumer")


def test_wire_fields_are_rendered_inert(page: Any, dashboard: Dashboard) -> None:
    xss_endpoint = qs(dashboard, endpoint=XSS_ROUTE, method=XSS_METHOD)
    for path in [
        f"/overview?{qs(dashboard)}",
        f"/endpoints?{qs(dashboard)}",
        f"/consumers?{qs(dashboard)}",
        f"/endpoint?{xss_endpoint}",
        f"/consumer?{qs(dashboard, consumer=XSS_CONSUMER)}",
        f"/live?{qs(dashboard)}",
    ]:
        page.goto(dashboard.url + path)
        page.wait_for_load_state("load")
        if "/live" in path:
            page.wait_for_selector("#live-rows tr")
        elif "/endpoints" in path or "/consumers" in path:
            page.wait_for_selector("table[data-loaded=true]")
        else:
            wait_charts(page)
        injected = page.evaluate("() => document.querySelectorAll('[onerror], img[src=x], script:not([src])').length")
        assert injected == 0, path
        text = page.text_content("main")
        assert XSS_ROUTE in text or XSS_CONSUMER in text or XSS_PATH in text, path
    assert page.console.dialogs == []
    page.goto(f"{dashboard.url}/endpoint?{xss_endpoint}")
    wait_charts(page)
    assert page.text_content("#endpoint-route") == XSS_ROUTE
    assert page.text_content("h1 .method") == XSS_METHOD
    assert page.text_content('[data-total="requests"]') == "1"
    shot(page, "endpoint-xss")
    assert page.console.dialogs == []


def test_live_page_shows_new_requests_and_pauses(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/live?{qs(dashboard)}")
    # the stream starts with the stored events, oldest first, each put on top: the newest known one ends on top
    page.wait_for_function("() => document.querySelectorAll('#live-rows tr').length >= 46")
    assert page.locator("#live-rows tr").first.locator(".path").text_content() == XSS_PATH
    first = unique("/live")
    assert dashboard.collector.post([event(path=first, route="/live/{id}", consumer_id="carol")]).status == 200
    page.wait_for_function(
        "(p) => document.querySelector('#live-rows tr .path').textContent === p", arg=first, timeout=10_000
    )
    page.click("#live-pause")
    assert page.text_content("#live-status").startswith("paused")
    hidden = unique("/live")
    assert dashboard.collector.post([event(path=hidden)]).status == 200
    page.wait_for_function("() => /new/.test(document.querySelector('#live-status').textContent)", timeout=10_000)
    assert page.locator(f'#live-rows td:text-is("{hidden}")').count() == 0
    shot(page, "live")
    # filtered by consumer: only carol's request
    page.goto(f"{dashboard.url}/live?{qs(dashboard, consumer='carol')}")
    page.wait_for_selector("#live-rows tr")
    assert page.locator("#live-rows .path").all_text_contents() == [first]


def test_create_and_revoke_an_ingest_key(page: Any, dashboard: Dashboard) -> None:
    name = unique("proj")
    page.goto(dashboard.url + "/projects")
    page.fill("#new-project", name)
    page.click("text=Create project")
    page.wait_for_url(f"**project={name}**")
    page.click("#create-ingest")
    page.wait_for_selector("#new-secret")
    assert urlparse(page.url).path == "/projects"  # htmx swapped the panel in place
    assert page.console.errors == []
    secret = page.text_content("#new-secret")
    assert secret.startswith("ak_live_")
    shot(page, "projects-new-key")
    ev = json.dumps([event(path="/first")]).encode()
    headers = {"content-type": "application/json", "x-api-key": secret}
    assert http("POST", dashboard.url + "/v1/events", ev, headers).status == 200
    # the secret is not shown again
    page.goto(f"{dashboard.url}/projects?project={quote(name)}")
    assert secret not in page.content()
    page.click("table[data-kind=ingest] button:has-text('Revoke')")
    page.wait_for_selector("text=Revoked")
    assert page.locator("table[data-kind=ingest] .state").first.text_content().startswith("revoked")
    assert http("POST", dashboard.url + "/v1/events", ev, headers).status == 401
    shot(page, "projects-revoked")
    # retention
    page.fill("input[name=raw_retention_days]", "3")
    page.click("text=Save")
    page.wait_for_selector("text=Retention saved.")
    assert dashboard.collector.store.get_project(name).raw_retention_days == 3


def test_empty_project_shows_how_to_send_the_first_event(page: Any, dashboard: Dashboard) -> None:
    name = unique("empty")
    dashboard.collector.store.create_project(name)
    page.goto(f"{dashboard.url}/overview?project={quote(name)}")
    assert page.locator("#first-event").is_visible()
    assert page.locator("#charts").count() == 0
    assert "PeekApiASGI" in page.text_content("#first-event")
    assert f"{dashboard.url}/v1/events" in page.text_content("#first-event")
    shot(page, "overview-empty")


def test_csrf_token_is_required(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/projects?project={quote(dashboard.project)}")
    csrf = page.get_attribute("input[name=csrf]", "value")
    form = {"project": dashboard.project, "kind": "read"}
    before = len(dashboard.collector.store.list_credentials(dashboard.project, "read"))
    for bad in ({}, {"csrf": "x" * len(csrf)}):
        r = page.request.post(dashboard.url + "/projects/credentials", form={**form, **bad})
        assert r.status == 403, r.status
    assert len(dashboard.collector.store.list_credentials(dashboard.project, "read")) == before
    r = page.request.post(dashboard.url + "/projects/credentials", form={**form, "csrf": csrf})
    assert r.status == 200 and "rt_" in r.text()
    assert len(dashboard.collector.store.list_credentials(dashboard.project, "read")) == before + 1
    r = page.request.post(dashboard.url + "/logout", form={})
    assert r.status == 403


def test_login_rotates_the_cookie_rate_limits_and_logs_out(browser: Any, dashboard: Dashboard) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(dashboard.url + "/login")
        # a wrong password, then the login form's own CSRF check
        page.fill("input[name=username]", "tester")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        assert "Wrong user name or password" in page.text_content(".error")
        r = page.request.post(dashboard.url + "/login", form={"username": "tester", "password": PASSWORD})
        assert r.status == 403
        # a session id fixed before login (session fixation) is not kept
        context.add_cookies([{"name": "peekapi_session", "value": "f" * 43, "url": dashboard.url}])
        login(page, dashboard.url)
        cookie1 = next(c for c in context.cookies() if c["name"] == "peekapi_session")
        assert cookie1["value"] != "f" * 43
        assert cookie1["httpOnly"] and cookie1["sameSite"] == "Strict"
        login(page, dashboard.url)
        cookie2 = next(c for c in context.cookies() if c["name"] == "peekapi_session")
        assert cookie2["value"] != cookie1["value"]
        # the old session is gone
        r = http("GET", dashboard.url + "/overview.json", headers={"cookie": f"peekapi_session={cookie1['value']}"})
        assert r.status == 401
        page.goto(dashboard.url + "/overview")
        page.click("text=Log out")
        page.wait_for_url("**/login")
        page.goto(dashboard.url + "/overview")
        assert urlparse(page.url).path == "/login"
        # five failures for one user name: the sixth attempt is refused even with the right password
        user = unique("limited")
        dashboard.collector.store.create_user(user, dashboard.collector.store.get_user("tester").password_hash)
        for _ in range(5):
            login(page, dashboard.url, user, "nope nope nope")
            assert "Wrong user name" in page.text_content(".error")
        started = time.monotonic()
        login(page, dashboard.url, user, PASSWORD)
        assert "Too many failed logins" in page.text_content(".error")
        assert time.monotonic() - started < 5
    finally:
        context.close()


def test_export_links_download_the_view(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/overview?{qs(dashboard, endpoint=ORDERS_ROUTE)}")
    href = page.get_attribute("a:has-text('JSON')", "href")
    data = fetch_json(page, href)
    assert len(data) == 10 and {e["route"] for e in data} == {ORDERS_ROUTE}
    csv_href = page.get_attribute("a:has-text('CSV')", "href")
    text = page.evaluate("async (p) => (await fetch(p)).text()", csv_href)
    assert text.splitlines()[0].startswith("id,ts_ms,method,path,route") and len(text.splitlines()) == 11


def test_phone_width_screenshots(browser: Any, auth_state: dict[str, Any], dashboard: Dashboard) -> None:
    context = browser.new_context(storage_state=auth_state, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
        wait_charts(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, width
        shot(page, "overview-phone")
    finally:
        context.close()


def _stream(dashboard: Dashboard, cookie: str, last_event_id: str | None = None) -> Any:
    headers = {"cookie": f"peekapi_session={cookie}", "accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    req = urllib.request.Request(f"{dashboard.url}/live/stream?{qs(dashboard)}", headers=headers)
    return urllib.request.urlopen(req, timeout=10)


def _events(resp: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` (id, data) pairs of an event stream."""
    out: list[tuple[str, dict[str, Any]]] = []
    ident = ""
    while len(out) < count:
        line = resp.readline().decode().rstrip("\n")
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            out.append((ident, json.loads(line[6:])))
    return out


def test_live_stream_resumes_after_last_event_id_and_ends_at_logout(
    dashboard: Dashboard, auth_state: dict[str, Any]
) -> None:
    # a session of its own, so that ending it does not log the other tests out
    store = dashboard.collector.store
    user = store.get_user("tester")
    assert user is not None
    cookie = uuid.uuid4().hex * 2
    store.create_session(token_hash(cookie), user.id, "csrf", int(time.time()) + 600)
    with _stream(dashboard, cookie) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        stored = min(100, store.count_events(dashboard.collector.project.id))
        newest_two = _events(resp, stored)[-2:]  # oldest first: the last two are the newest
    (second_id, _), (newest_id, newest) = newest_two
    with _stream(dashboard, cookie, second_id) as resp:
        ident, data = _events(resp, 1)[0]
        assert (ident, data) == (newest_id, newest)  # nothing before it is sent again
        store.delete_session(token_hash(cookie))
        started = time.monotonic()
        assert resp.read() is not None  # the stream ends once the session is gone
        assert time.monotonic() - started < 5


def test_redirects_stay_on_this_site(dashboard: Dashboard) -> None:
    for target in ["//evil.example", "/\t/evil.example", "/\\evil.example", "https://evil.example/", "/ x"]:
        assert safe_next(target) == "/"
    assert safe_next("/overview?project=a%20b") == "/overview?project=a%20b"


def test_endpoint_page_without_endpoint_shows_the_overview(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/endpoint?{qs(dashboard)}")
    assert urlparse(page.url).path == "/overview"
    wait_charts(page)


def test_custom_range_form(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/overview?{qs(dashboard)}")
    wait_charts(page)
    start = (int(time.time()) // 60 - 45) * 60
    end = start + 20 * 60
    fmt = "%Y-%m-%dT%H:%M"
    page.fill("input[name=from]", time.strftime(fmt, time.gmtime(start)))
    page.fill("input[name=to]", time.strftime(fmt, time.gmtime(end)))
    page.click("text=Custom range")
    page.wait_for_url("**from=**")
    wait_charts(page)
    data = fetch_json(page, "/overview.json?" + urlparse(page.url).query)
    assert (data["view"]["range"], data["view"]["from"], data["view"]["to"]) == ("custom", start, end)
    api = dashboard.collector.get(f"/v1/overview?from={start}&to={end}&interval={data['view']['interval']}").json()
    assert api["totals"] == data["current"]["totals"]
    assert page.text_content('[data-total="requests"]') == str(api["totals"]["requests"])
    assert page.get_attribute("#range-label", "id") and "UTC" in page.text_content("#range-label")
