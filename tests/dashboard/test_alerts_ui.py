"""The alerts pages in real headless Chromium against a real collector on 127.0.0.1 holding known events (on
each engine the ``dashboard`` fixture gives): channels and rules created through the forms, the rule's preview
drawn from the known traffic, a rule's state on the list, silences, edits, deletes, and names and group keys
carrying XSS payloads rendered as text. Screenshots go to tests/artifacts/alerts-*.png.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import pytest

from peekapi_server.alerts import admin
from peekapi_server.alerts.rules import Rule
from peekapi_server.store.alerts import AlertState, HistoryRow
from tests.server.support import http

from .conftest import ARTIFACTS, ORDERS_ROUTE, XSS_CONSUMER, XSS_ROUTE, Dashboard, unique

pytestmark = pytest.mark.slow

XSS_NAME = '<img src=x onerror=alert("rule")><script>alert(5)</script>'


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"alerts-{name}.png"), full_page=True)


def project_id(d: Dashboard) -> int:
    return d.collector.store.get_project(d.project).id


def no_injection(page: Any) -> None:
    injected = page.evaluate("() => document.querySelectorAll('[onerror], img[src=x], script:not([src])').length")
    assert injected == 0
    assert page.console.dialogs == []


def stored_rule(d: Dashboard, name: str) -> Any:
    pid = project_id(d)
    with d.collector.store.alerts(False) as a:
        return a.rule_named(pid, name)


def make_rule(d: Dashboard, **fields: Any) -> Any:
    """A rule stored the way the forms store it (admin.create_rule), scoped to a route with no traffic so that an
    evaluation would hold whatever state the test gives it."""
    rule = Rule.of({"metric": "error_rate", "comparison": "above", "threshold": 5, "scope": {"endpoint": "/none"},
                    **fields})  # fmt: skip
    return admin.create_rule(d.collector.store, project_id(d), rule, int(time.time()))


def test_create_a_channel_and_a_rule_through_the_forms_with_its_preview(page: Any, dashboard: Dashboard) -> None:
    channel = unique("ops")
    page.goto(f"{dashboard.url}/alerts/channels?project={quote(dashboard.project)}")
    page.fill("#channel-name", channel)
    page.select_option("#channel-kind", "webhook")
    page.fill("#channel-target", "http://127.0.0.1:9/hooks/secret-path")
    page.click("#create-channel")
    page.wait_for_selector("#new-secret")
    assert urlparse(page.url).path == "/alerts/channels"  # htmx swapped the panel in place
    secret = page.text_content("#new-secret")
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret
    pid = project_id(dashboard)
    with dashboard.collector.store.alerts(False) as a:
        stored = a.channel(pid, channel)
    assert stored is not None and stored.secret == secret and stored.kind == "webhook"
    row = page.locator(f'#channels-table tr[data-channel="{channel}"]')
    assert row.locator(".target").text_content() == "http://127.0.0.1/…"  # the URL's path is a credential
    shot(page, "channel-created")
    page.reload()
    assert secret not in page.content()  # shown once
    # a bad target is refused with the reason, nothing stored
    page.fill("#channel-name", unique("bad"))
    page.select_option("#channel-kind", "email")
    page.fill("#channel-target", "not an address")
    page.click("#create-channel")
    page.wait_for_selector("#channel-error")
    assert "email" in page.text_content("#channel-error")

    name = unique("orders-traffic")
    page.goto(f"{dashboard.url}/alerts?project={quote(dashboard.project)}")
    page.click("#new-rule")
    page.wait_for_url("**/alerts/new?**")
    page.wait_for_selector("#preview-hint")  # nothing typed yet: a prompt, not an error
    assert page.locator("#preview-error").count() == 0
    page.fill("#rule-name", name)
    page.select_option("#rule-metric", "requests_per_minute")
    page.select_option("#rule-comparison", "above")
    page.fill("#rule-threshold", "0.5")
    page.fill("#rule-window", "1m")
    page.fill("#rule-method", "POST")
    page.fill("#rule-endpoint", ORDERS_ROUTE)
    page.check(f'input[name=channels][value="{channel}"]')
    page.click("#preview-rule")
    # the ten POST /orders of the known data, one a minute: one value per minute, one firing while they came
    page.wait_for_function(
        "() => { const p = document.querySelector('#preview-result'); return p && p.dataset.total === '10.0'; }"
    )
    result = page.locator("#preview-result")
    assert result.get_attribute("data-firings") == "1"
    assert int(result.get_attribute("data-values")) == 24 * 60
    svg = page.locator("svg.alert-preview")
    assert svg.locator("polyline.value").count() >= 1 and svg.locator("line.threshold").count() == 1
    fired = svg.locator("rect.firing")
    assert fired.count() == 1
    started, ended = int(fired.get_attribute("data-fired")), int(fired.get_attribute("data-resolved"))
    assert 9 * 60 <= ended - started <= 11 * 60 and time.time() - 45 * 60 < started < time.time()
    assert "would have fired 1 time" in page.text_content("#preview-result")
    assert page.console.errors == []
    shot(page, "rule-new-preview")
    page.click("#save-rule")
    page.wait_for_url("**/alerts/rule?id=**")
    assert page.text_content("#rule-title") == name
    assert "requests_per_minute above 0.5 over 1 min" in page.text_content("#rule-condition")
    rule = Rule.loads(stored_rule(dashboard, name).spec)
    assert (rule.threshold, rule.window_seconds, rule.channels) == (0.5, 60, (channel,))
    assert (rule.scope.endpoint, rule.scope.method) == (ORDERS_ROUTE, "POST")
    page.wait_for_selector("#preview-result")  # the edit form previews the stored rule at once
    assert page.get_attribute("#preview-result", "data-firings") == "1"
    shot(page, "rule-page")
    # on the list, not evaluated yet
    page.goto(f"{dashboard.url}/alerts?project={quote(dashboard.project)}")
    row = page.locator("#rules-table tr", has=page.locator(f'a.rule-name:text-is("{name}")'))
    assert row.get_attribute("data-state") == "inactive"
    # the channel is in use: it cannot be deleted
    page.goto(f"{dashboard.url}/alerts/channels?project={quote(dashboard.project)}")
    page.locator(f'#channels-table tr[data-channel="{channel}"] .delete-channel').click()
    page.wait_for_selector("#channel-error")
    assert name in page.text_content("#channel-error")


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on 127.0.0.1 keeping what it was sent."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_send_a_test_notification_and_see_the_result(page: Any, dashboard: Dashboard, receiver: str) -> None:
    name, dead = unique("hook"), unique("dead")
    page.goto(f"{dashboard.url}/alerts/channels?project={quote(dashboard.project)}")
    page.fill("#channel-name", name)
    page.fill("#channel-target", receiver)
    page.click("#create-channel")
    page.wait_for_selector("#new-secret")
    secret = page.text_content("#new-secret")
    page.locator(f'#channels-table tr[data-channel="{name}"] .test-channel').click()
    page.wait_for_selector("#channel-notice:has-text('Sent a test notification')")
    assert name in page.text_content("#channel-notice")
    ((headers, body),) = Receiver.received
    # signed as Standard Webhooks say, with the secret the page showed once
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in headers["webhook-signature"].split()
    payload = json.loads(body)
    assert payload["type"] == "alert.test" and name in payload["text"]
    shot(page, "channel-test-sent")
    # a receiver that is not there: the reason is shown
    page.fill("#channel-name", dead)
    page.select_option("#channel-kind", "slack")
    page.fill("#channel-target", "http://127.0.0.1:9/services/x")
    page.click("#create-channel")
    page.wait_for_selector(f"#channel-notice:has-text('{dead}')")
    page.locator(f'#channels-table tr[data-channel="{dead}"] .test-channel').click()
    page.wait_for_selector("#channel-error")
    assert f"The test notification to '{dead}' failed:" in page.text_content("#channel-error")
    assert page.locator("#new-secret").count() == 0  # a Slack channel has no secret of ours
    assert len(Receiver.received) == 1
    shot(page, "channel-test-failed")


def test_a_wrong_field_is_shown_and_the_form_kept(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/alerts/new?project={quote(dashboard.project)}")
    page.fill("#rule-name", "kept")
    page.fill("#rule-threshold", "150")  # a rate is 0..100: the live preview says so as it is typed
    page.wait_for_function(
        "() => /percentage from 0 to 100/.test(document.querySelector('#preview-error')?.textContent || '')"
    )
    page.click("#save-rule")
    page.wait_for_selector("#form-error")
    assert "percentage from 0 to 100" in page.text_content("#form-error")
    assert page.input_value("#rule-name") == "kept" and page.input_value("#rule-threshold") == "150"
    assert stored_rule(dashboard, "kept") is None
    page.fill("#rule-window", "90s")
    page.fill("#rule-threshold", "5")
    page.click("#save-rule")
    page.wait_for_selector("#form-error")
    assert "window_seconds must be whole minutes" in page.text_content("#form-error")


def test_the_list_shows_each_rules_state_and_the_rule_page_its_groups(page: Any, dashboard: Dashboard) -> None:
    quiet, grouped = (
        make_rule(dashboard, name=unique("quiet")),
        make_rule(dashboard, name=unique("per-consumer"), group_by="consumer"),
    )
    now = int(time.time())
    with dashboard.collector.store.alerts(True) as a:
        a.save_states(
            [
                AlertState(grouped.id, "alice", "firing", now - 300, 12.5, now - 60, now - 300),
                AlertState(grouped.id, XSS_CONSUMER, "firing", now - 240, 40.0, now - 60, now - 240),
                AlertState(grouped.id, "bob", "pending", now - 120, 7.25, now - 60, 0),
                AlertState(quiet.id, "", "resolved", now - 600, 1.0, now - 60, now - 600),
            ]
        )
        a.add_history(
            [
                HistoryRow(grouped.id, "alice", now - 360, "pending", 9.0, 5.0),
                HistoryRow(grouped.id, "alice", now - 300, "firing", 12.5, 5.0),
                HistoryRow(grouped.id, XSS_CONSUMER, now - 240, "firing", 40.0, 5.0),
            ]
        )
    page.goto(f"{dashboard.url}/alerts?project={quote(dashboard.project)}")
    rows = page.locator("#rules-table tbody tr")
    by_name = {r.locator(".rule-name").text_content(): r for r in rows.all()}
    assert by_name[grouped.name].get_attribute("data-state") == "firing"
    assert by_name[grouped.name].locator(".firing-count").text_content() == "2 of 3 groups firing"
    assert by_name[grouped.name].locator(".value").text_content() in ("12.50", "40.00")
    assert by_name[quiet.name].get_attribute("data-state") == "resolved"
    assert by_name[quiet.name].locator(".value").text_content() == "1.00"
    assert "error_rate above 5% over 5 min" in by_name[quiet.name].locator(".condition").text_content()
    data = page.evaluate("async (p) => (await (await fetch(p)).json())", f"/alerts.json?project={dashboard.project}")
    twin = {r["name"]: r for r in data["rules"]}
    assert (twin[grouped.name]["state"], twin[grouped.name]["firing"], twin[grouped.name]["groups"]) == ("firing", 2, 3)
    shot(page, "list")
    page.click(f'a.rule-name:text-is("{grouped.name}")')
    page.wait_for_url("**/alerts/rule?id=**")
    groups = page.locator("#states-table tbody .group").all_text_contents()
    assert set(groups[:2]) == {"alice", XSS_CONSUMER} and groups[2] == "bob"  # firing first
    history = page.locator("#history-table tbody tr")
    assert history.count() == 3 and history.first.locator(".group").text_content() == XSS_CONSUMER  # newest first
    assert history.nth(2).locator("td.num").all_text_contents() == ["9.00", "5.00"]
    no_injection(page)
    shot(page, "rule-groups")
    twin = page.evaluate("async (p) => (await (await fetch(p)).json())", f"/alerts/rule.json?id={grouped.id}")
    assert (twin["name"], twin["state"], twin["rule"]["group_by"]) == (grouped.name, "firing", "consumer")
    assert {s["group_key"]: (s["state"], s["value"]) for s in twin["states"]} == {
        "alice": ("firing", 12.5),
        XSS_CONSUMER: ("firing", 40.0),
        "bob": ("pending", 7.25),
    }
    assert [(h["group_key"], h["state"], h["value"], h["threshold"]) for h in twin["history"]][-1] == (
        "alice",
        "pending",
        9.0,
        5.0,
    )


def test_silence_for_a_while_until_a_time_and_lift(page: Any, dashboard: Dashboard) -> None:
    stored = make_rule(dashboard, name=unique("noisy"))
    page.goto(f"{dashboard.url}/alerts/rule?id={stored.id}")
    assert "Not silenced" in page.text_content("#silence-state")
    before = int(time.time())
    page.click("#silence-8h")
    page.wait_for_selector("#silenced-until")
    until = stored_rule(dashboard, stored.name).silenced_until
    assert before + 8 * 3600 <= until <= int(time.time()) + 8 * 3600
    assert page.text_content("#silenced-until") == time.strftime("%Y-%m-%d %H:%M", time.gmtime(until))
    shot(page, "silenced")
    page.goto(f"{dashboard.url}/alerts?project={quote(dashboard.project)}")
    row = page.locator("#rules-table tr", has=page.locator(f'a.rule-name:text-is("{stored.name}")'))
    assert row.locator(".silenced").text_content() == time.strftime("%Y-%m-%d %H:%M", time.gmtime(until))
    # until a time (UTC), then lifted
    page.goto(f"{dashboard.url}/alerts/rule?id={stored.id}")
    target = (int(time.time()) // 60 + 3 * 24 * 60) * 60
    page.fill("#silence-until", time.strftime("%Y-%m-%dT%H:%M", time.gmtime(target)))
    page.click("#silence-until-button")
    page.wait_for_url(f"**/alerts/rule?id={stored.id}")
    assert stored_rule(dashboard, stored.name).silenced_until == target
    page.click("#silence-off")
    page.wait_for_selector("text=Not silenced")
    assert stored_rule(dashboard, stored.name).silenced_until == 0
    # a time in the past is refused, the silence unchanged
    page.fill("#silence-until", "2020-01-01T00:00")
    page.click("#silence-until-button")
    page.wait_for_selector("#silence-error")
    assert "future" in page.text_content("#silence-error")
    assert stored_rule(dashboard, stored.name).silenced_until == 0


def test_edit_and_delete_a_rule(page: Any, dashboard: Dashboard) -> None:
    stored = make_rule(dashboard, name=unique("edit-me"), for_seconds=120, recovery=3)
    page.goto(f"{dashboard.url}/alerts/rule?id={stored.id}")
    assert page.input_value("#rule-for") == "2m" and page.input_value("#rule-recovery") == "3"
    assert page.input_value("#rule-endpoint") == "/none"
    renamed = unique("edited")
    page.fill("#rule-name", renamed)
    page.select_option("#rule-metric", "p95_ms")
    page.fill("#rule-threshold", "250")
    page.fill("#rule-recovery", "")
    page.fill("#rule-repeat", "1h")
    page.click("#save-rule")
    page.wait_for_url(f"**/alerts/rule?id={stored.id}")
    page.wait_for_selector("text=p95_ms above 250 over 5 min")
    rule = Rule.loads(stored_rule(dashboard, renamed).spec)
    assert (rule.metric, rule.threshold, rule.recovery, rule.repeat_seconds, rule.for_seconds) == (
        "p95_ms",
        250.0,
        None,
        3600,
        120,
    )
    page.click("#delete-rule")
    page.wait_for_url("**/alerts?**")
    assert parse_qs(urlparse(page.url).query)["project"] == [dashboard.project]
    assert page.locator(f'a.rule-name:text-is("{renamed}")').count() == 0
    assert stored_rule(dashboard, renamed) is None
    page.goto(f"{dashboard.url}/alerts/rule?id={stored.id}")
    assert "no such rule" in page.text_content("main")


def test_names_scopes_and_group_keys_are_rendered_inert(page: Any, dashboard: Dashboard) -> None:
    channel = f'"><script>alert(6)</script>{unique("c")}'
    pid = project_id(dashboard)
    with dashboard.collector.store.alerts(True) as a:
        a.create_channel(pid, channel, "slack", "https://hooks.example/x", secret=None, now=1)
    name = XSS_NAME + unique("")
    stored = make_rule(
        dashboard,
        name=name,
        group_by="endpoint",
        channels=[channel],
        scope={"endpoint": XSS_ROUTE, "consumer": XSS_CONSUMER},
    )
    now = int(time.time())
    with dashboard.collector.store.alerts(True) as a:
        a.save_states([AlertState(stored.id, XSS_ROUTE, "firing", now, 50.0, now, now)])
        a.add_history([HistoryRow(stored.id, XSS_ROUTE, now, "firing", 50.0, 5.0)])
    for path in [
        f"/alerts?project={quote(dashboard.project)}",
        f"/alerts/rule?id={stored.id}",
        f"/alerts/channels?project={quote(dashboard.project)}",
        f"/alerts/new?project={quote(dashboard.project)}",
    ]:
        page.goto(dashboard.url + path)
        page.wait_for_load_state("load")
        no_injection(page)
    page.goto(f"{dashboard.url}/alerts/rule?id={stored.id}")
    page.wait_for_selector("#preview-result, #preview-error")
    assert page.text_content("#rule-title") == name
    assert XSS_ROUTE in page.text_content("#rule-condition") and XSS_CONSUMER in page.text_content("#rule-condition")
    assert page.locator("#states-table .group").first.text_content() == XSS_ROUTE
    assert page.input_value("#rule-endpoint") == XSS_ROUTE
    assert page.locator(".channel-name").all_text_contents().count(channel) == 1
    no_injection(page)
    shot(page, "xss")
    page.goto(f"{dashboard.url}/alerts?project={quote(dashboard.project)}")
    assert page.locator("#rules-table .rule-name", has_text=XSS_NAME).count() >= 1
    no_injection(page)


def test_pages_need_a_login_and_forms_a_csrf_token(page: Any, anon_page: Any, dashboard: Dashboard) -> None:
    for path in ["/alerts", "/alerts/new", "/alerts/rule?id=1", "/alerts/channels"]:
        anon_page.goto(dashboard.url + path)
        assert urlparse(anon_page.url).path == "/login", path
    for path in ["/alerts.json", "/alerts/rule.json?id=1", "/alerts/channels.json"]:
        assert http("GET", dashboard.url + path).status == 401, path
    form = {"project": dashboard.project, "name": unique("no-csrf"), "kind": "email", "target": "a@example.com"}
    r = page.request.post(dashboard.url + "/alerts/channels/create", form=form)
    assert r.status == 403
    r = page.request.post(dashboard.url + "/alerts/create", form={"project": dashboard.project, "name": "x"})
    assert r.status == 403
    pid = project_id(dashboard)
    with dashboard.collector.store.alerts(False) as a:
        assert a.channel(pid, form["name"]) is None
    # the channels' JSON twin never holds a secret or a URL's path
    page.goto(f"{dashboard.url}/alerts/channels?project={quote(dashboard.project)}")
    data = page.evaluate(
        "async (p) => (await (await fetch(p)).json())", f"/alerts/channels.json?project={dashboard.project}"
    )
    assert all("secret" not in c and c["target"].endswith(("/…", "com")) for c in data["channels"])


def test_phone_width(browser: Any, auth_state: dict[str, Any], dashboard: Dashboard) -> None:
    stored = make_rule(dashboard, name=unique("phone"), group_by="endpoint")
    context = browser.new_context(storage_state=auth_state, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        for path, name in [
            (f"/alerts?project={quote(dashboard.project)}", "list-phone"),
            (f"/alerts/rule?id={stored.id}", "rule-phone"),
            (f"/alerts/channels?project={quote(dashboard.project)}", "channels-phone"),
        ]:
            page.goto(dashboard.url + path)
            if "rule" in path:
                page.wait_for_selector("#preview-result")
                assert "counts every endpoint together" in page.text_content("#preview-result")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 400, (path, width)
            shot(page, name)
    finally:
        context.close()
