"""Evaluating alert rules: the metric of each window from the rollups, each group's state, and what to notify.

Every pass (``evaluate_due``, run by the alert job in each collector process) looks at the last whole minute that
has settled (``SETTLE_SECONDS`` after it ended, so that late batches are in) and evaluates each rule that has not
seen that minute yet, over the window that ends there. Per rule, under ``store.alert_lock`` (an advisory lock on
PostgreSQL) one process at a time measures, decides and writes; the write also moves the rule's evaluation mark,
in the same transaction, so no minute is evaluated twice and no transition is notified twice.

States per rule and group (see :func:`step`):

- ``inactive`` / ``resolved`` --breach--> ``pending`` (or straight to ``firing`` when ``for_seconds`` is 0);
- ``pending`` --breach for ``for_seconds``--> ``firing`` (notified); --no breach--> ``inactive``;
- ``firing`` --value back past ``recovery``--> ``resolved`` (notified, when its firing was); a value between
  the threshold and the recovery keeps it firing (hysteresis); ``repeat_seconds`` sends reminders.

A window without enough requests for its metric (``min_requests``, or none at all for a rate or a latency) holds
the state, unless the rule's ``no_data`` says otherwise. A silenced rule changes state and keeps its history,
but queues no notification; a resolution whose firing was never notified is not notified either.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlencode

from peekapi_server.config import ServerConfig
from peekapi_server.store import ReadQuery, Store
from peekapi_server.store.alerts import AlertState, AlertTables, HistoryRow, StoredRule

from .rules import COUNTS, RATES, Rule, readable

logger = logging.getLogger("peekapi_server.alerts")

SETTLE_SECONDS = 15
WEEK = 7 * 86400
_TABLE_LIMIT = 10_000  # groups (endpoints, consumers) read per window
UNGROUPED = ""
ANONYMOUS = "(anonymous)"


@dataclass(frozen=True)
class Reading:
    """One group's figures over one window: its requests and the rule's metric (``None``: no value)."""

    requests: int
    value: float | None


# -- measuring --------------------------------------------------------------------------------------------------


def _query(rule: Rule, start: int, end: int) -> ReadQuery:
    s = rule.scope
    return ReadQuery(
        start, end, rule.window_seconds, s.endpoint, s.consumer, s.method, s.status_class, limit=_TABLE_LIMIT
    )


def _metric(rule: Rule, figures: dict[str, Any]) -> float | None:
    """The rule's metric from a row of read figures (``requests``, ``errors_4xx`` ... as the read API gives)."""
    n = int(figures["requests"])
    metric = rule.metric
    if metric == "requests":
        return float(n)
    if metric == "requests_per_minute":
        return n * 60.0 / rule.window_seconds
    if metric == "bytes":
        return float(figures["bytes_in"] + figures["bytes_out"])
    if n == 0:
        return None
    if metric == "error_rate":
        return 100.0 * float(figures["errors"]) / n
    if metric == "error_rate_5xx":
        return 100.0 * float(figures["errors_5xx"]) / n
    if metric == "error_rate_4xx":
        return 100.0 * float(figures["errors_4xx"]) / n
    value = figures.get(metric)  # p50_ms, p95_ms, p99_ms
    return None if value is None else float(value)


def measure(store: Store, project_id: int, rule: Rule, start: int, end: int) -> dict[str, Reading]:
    """Each group's reading over ``[start, end)`` (one entry, ``""``, when the rule is not grouped). Groups with
    no requests in the window are absent."""
    q = _query(rule, start, end)
    if rule.metric == "consumers":
        rows = store.consumers_table(project_id, q)
        named = [r for r in rows if r["consumer"] is not None]
        return {UNGROUPED: Reading(sum(int(r["requests"]) for r in rows), float(len(named)))}
    if rule.group_by is None:
        totals = store.overview(project_id, q)["totals"]
        return {UNGROUPED: Reading(int(totals["requests"]), _metric(rule, totals))}
    if rule.group_by == "endpoint":
        rows = store.endpoints_table(project_id, q)
        return {f"{r['method']} {r['route']}": Reading(int(r["requests"]), _metric(rule, r)) for r in rows}
    rows = store.consumers_table(project_id, q)
    return {r["consumer"] or ANONYMOUS: Reading(int(r["requests"]), _metric(rule, r)) for r in rows}


# -- deciding ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one window says: ``breach`` (``None``: cannot tell, hold the state), whether the value is back past
    the recovery threshold, and the value compared (the metric, or its change in percent)."""

    breach: bool | None
    recovered: bool | None
    value: float | None


def judge(rule: Rule, current: Reading | None, baseline: Reading | None = None) -> Verdict:
    """The verdict of a window's reading (and, for an increase or decrease, of its baseline window's)."""
    # no requests at all in the window: counts are 0, everything else has no value
    reading = current or Reading(0, 0.0 if rule.metric in COUNTS else None)
    needs_requests = rule.metric in RATES or rule.comparison in ("increase", "decrease")
    if needs_requests and 0 < reading.requests < rule.min_requests:
        return Verdict(None, None, reading.value)  # too few requests to say: hold
    if reading.value is None:
        return _no_data(rule)
    value = reading.value
    if rule.comparison in ("increase", "decrease"):
        base = baseline.value if baseline is not None else None
        if (
            base is None
            or base <= 0
            or (baseline is not None and needs_requests and baseline.requests < rule.min_requests)
        ):
            return Verdict(None, None, None)  # nothing to compare with: hold
        change = (value - base) / base * 100.0
        moved = change if rule.comparison == "increase" else -change
        return Verdict(moved > rule.threshold, moved <= rule.recovery_threshold, change)
    if rule.comparison == "above":
        return Verdict(value > rule.threshold, value <= rule.recovery_threshold, value)
    return Verdict(value < rule.threshold, value >= rule.recovery_threshold, value)


def _no_data(rule: Rule) -> Verdict:
    if rule.no_data == "ok":
        return Verdict(False, True, None)
    if rule.no_data == "alert":
        return Verdict(True, False, None)
    return Verdict(None, None, None)


@dataclass(frozen=True)
class Step:
    """One group's new state after a window, and the notification it calls for (``None``: none)."""

    state: AlertState
    changed: bool
    notify: str | None  # "firing", "resolved" or "reminder"


def step(rule: Rule, prev: AlertState | None, verdict: Verdict, *, now: int, rule_id: int, group: str) -> Step:
    """The state machine of one rule and group (see the module docstring). Pure."""
    state = prev.state if prev else "inactive"
    since = prev.since if prev else now
    notified = prev.notified_at if prev else 0

    def to(new: str, notify: str | None = None) -> Step:
        return Step(AlertState(rule_id, group, new, now, verdict.value, now, notified), True, notify)

    if state in ("inactive", "resolved"):
        if verdict.breach:
            return to("firing", "firing") if rule.for_seconds == 0 else to("pending")
    elif state == "pending":
        if verdict.breach and now - since >= rule.for_seconds:
            return to("firing", "firing")
        if verdict.breach is False:
            return to("inactive")
    elif state == "firing":
        if verdict.recovered:
            return to("resolved", "resolved")
        if rule.repeat_seconds and notified and now - notified >= rule.repeat_seconds:
            return Step(AlertState(rule_id, group, state, since, verdict.value, now, notified), False, "reminder")
    return Step(AlertState(rule_id, group, state, since, verdict.value, now, notified), False, None)


# -- the pass ---------------------------------------------------------------------------------------------------


def due_minute(now: float) -> int:
    """The last whole minute that has settled at ``now`` (epoch seconds)."""
    return int(now - SETTLE_SECONDS) // 60 * 60


def evaluate_due(store: Store, settings: ServerConfig, now: float) -> int:
    """Evaluates every rule not yet evaluated at the minute due at ``now``; returns how many were. Never raises
    for one rule's failure (logged, the others go on)."""
    minute = due_minute(now)
    with store.alerts(False) as a:
        rules = [r for r in a.rules() if r.evaluated_upto < minute]
    done = 0
    for stored in rules:
        try:
            done += _evaluate(store, settings, stored, minute)
        except Exception:
            logger.exception("alert rule %r of project %r could not be evaluated", stored.name, stored.project)
    return done


def _evaluate(store: Store, settings: ServerConfig, stored: StoredRule, minute: int) -> int:
    rule = Rule.loads(stored.spec)
    with store.alert_lock(f"alert-rule:{stored.id}") as mine:
        if not mine:
            return 0  # another process is evaluating it
        w = rule.window_seconds
        current = measure(store, stored.project_id, rule, minute - w, minute)
        baselines: dict[str, Reading] = {}
        if rule.comparison in ("increase", "decrease"):
            shift = w if rule.baseline == "previous" else WEEK
            baselines = measure(store, stored.project_id, rule, minute - w - shift, minute - shift)
        with store.alerts(True) as a:
            if a.claim_minute(stored.id, minute) is None:
                return 0  # evaluated by another process meanwhile
            _Decision(a, settings, stored, rule, minute).apply(current, baselines)
    return 1


def _fired_at(prev: AlertState | None) -> int:
    return prev.since if prev is not None and prev.state == "firing" else 0


@dataclass(frozen=True)
class _Decision:
    """One rule's evaluation at one minute, inside the transaction that records it."""

    a: AlertTables
    settings: ServerConfig
    stored: StoredRule
    rule: Rule
    minute: int

    def apply(self, current: dict[str, Reading], baselines: dict[str, Reading]) -> None:
        """Steps every group, saves states and history, and queues the notifications."""
        stored, rule, minute = self.stored, self.rule, self.minute
        states = self.a.states(stored.id)
        groups = set(current) | set(states) | ({UNGROUPED} if rule.group_by is None else set())
        changed, history, notices = [], [], []
        silenced = stored.silenced_until > minute
        for group in sorted(groups):
            verdict = judge(rule, current.get(group), baselines.get(group))
            s = step(rule, states.get(group), verdict, now=minute, rule_id=stored.id, group=group)
            state = s.state
            if s.changed:
                history.append(HistoryRow(stored.id, group, minute, state.state, verdict.value, rule.threshold))
            notify = s.notify
            if notify == "resolved" and not (state.notified_at and state.notified_at >= _fired_at(states.get(group))):
                notify = None  # its firing was never notified (silenced): its end is not either
            if state.state == "firing" and not s.changed and not state.notified_at:
                notify = "firing"  # fired while silenced and still firing: said once the silence is over
            if notify and not silenced:
                state = state._replace(notified_at=minute)
                notices.append((group, notify, state))
            elif notify == "firing":
                state = state._replace(notified_at=0)
            # Groups never breached are not stored (a rule per consumer may see thousands), except a rule's only
            # group: its page shows the value it was evaluated at.
            if group in states or state.state != "inactive" or rule.group_by is None:
                changed.append(state)
        self.a.save_states(changed)
        self.a.add_history(history)
        for group, kind, state in notices:
            added = self.queue(group, kind, state)
            logger.info(
                "alert %r %s%s: %d notification(s) queued", stored.name, kind, f" ({group})" if group else "", added
            )

    def queue(self, group: str, kind: str, state: AlertState) -> int:
        """Queues one notification per channel of the rule, each under its own message id; returns how many."""
        stored = self.stored
        body = json.dumps(notification(self.settings, stored, self.rule, Notice(group, kind, state)), sort_keys=True)
        items, missing = [], []
        for name in self.rule.channels:
            channel = self.a.channel(stored.project_id, name)
            if channel is None:
                missing.append(name)
                continue
            key = f"{stored.id}\0{group}\0{kind}\0{self.minute}\0{channel.id}".encode()
            items.append((channel.id, "msg_" + hashlib.sha256(key).hexdigest()[:32], body))
        if missing:
            logger.warning(
                "alert %r: no channel named %s in project %r", stored.name, ", ".join(missing), stored.project
            )
        return self.a.enqueue(stored.id, items, self.minute)


class Notice(NamedTuple):
    """A notification to send: for which group, of what kind (firing, resolved, reminder), at which state."""

    group: str
    kind: str
    state: AlertState


def rule_url(settings: ServerConfig, project: str, rule_id: int) -> str:
    """The dashboard page of a rule, for the links in its notifications."""
    base = (settings.public_url or "http://127.0.0.1:8787").rstrip("/")
    return f"{base}/alerts/rule?{urlencode({'project': project, 'id': rule_id})}"


def notification(settings: ServerConfig, stored: StoredRule, rule: Rule, notice: Notice) -> dict[str, Any]:
    """The outbox payload of one notification (its format: ``peekapi_server.alerts.channels``)."""
    group, kind, state = notice
    where = f" for {group}" if group else ""
    value = "no data" if state.value is None else readable(state.value)
    words = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "STILL FIRING"}[kind]
    return {
        "type": f"alert.{kind}",
        "rule": {"id": stored.id, "name": stored.name, "project": stored.project, "description": rule.describe()},
        "group": group,
        "state": "resolved" if kind == "resolved" else "firing",
        "value": state.value,
        "threshold": rule.threshold,
        "at": state.evaluated_at,
        "since": state.since,
        "url": rule_url(settings, stored.project, stored.id),
        "text": f"{words}: {stored.name}{where} in {stored.project}: {rule.describe()}; now {value}",
    }


# -- the preview ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A rule replayed over past traffic: the compared value per window (oldest first) and when it would have
    fired and resolved (``None``: still firing at the end)."""

    points: list[tuple[int, float | None]]
    firings: list[tuple[int, int | None]]
    threshold: float
    recovery: float


def preview(store: Store, project_id: int, rule: Rule, now: int, hours: int = 24) -> Preview:
    """``rule`` replayed window by window over the last ``hours`` (all groups together: ``group_by`` is not
    applied). Live evaluation slides the window every minute; the preview steps a whole window at a time."""
    w = rule.window_seconds
    end = now // w * w
    start = end - hours * 3600 // w * w
    current = _series(store, project_id, rule, start, end)
    if rule.comparison in ("increase", "decrease"):
        shift = w if rule.baseline == "previous" else WEEK
        base = _series(store, project_id, rule, start - shift, end - shift)
        shifted = {t + shift: r for t, r in base.items()}
    else:
        shifted = {}
    points: list[tuple[int, float | None]] = []
    firings: list[tuple[int, int | None]] = []
    prev: AlertState | None = None
    for t in range(start, end, w):
        verdict = judge(rule, current.get(t), shifted.get(t))
        points.append((t + w, verdict.value))
        s = step(rule, prev, verdict, now=t + w, rule_id=0, group=UNGROUPED)
        prev = s.state
        if s.notify == "firing":
            firings.append((t + w, None))
        elif s.notify == "resolved" and firings:
            firings[-1] = (firings[-1][0], t + w)
    return Preview(points, firings, rule.threshold, rule.recovery_threshold)


def _series(store: Store, project_id: int, rule: Rule, start: int, end: int) -> dict[int, Reading]:
    """Readings per window over ``[start, end)`` from one read (windows aligned on multiples of the window)."""
    if rule.metric == "consumers":  # distinct consumers do not add up across windows: one read per window
        w = rule.window_seconds
        return {t: measure(store, project_id, rule, t, t + w)[UNGROUPED] for t in range(start, end, w)}
    series = store.overview(project_id, _query(rule, start, end))["series"]
    return {int(p["t"]): Reading(int(p["requests"]), _metric(rule, p)) for p in series if p["requests"]}
