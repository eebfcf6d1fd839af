"""Delivering the outbox: each queued notification sent through its channel, retried with backoff, given up loudly.

:func:`deliver_due` runs one pass; the alert job calls it every few seconds in every collector process. Each
notification is claimed alone, under a lease of :data:`LEASE_SECONDS` (longer than a send can take: see
``channels.send``), so however many processes deliver, one of them holds it at a time; it is then marked delivered,
or failed with the time of its next attempt, or given up. Delivery is at least once: a process that dies between
sending and recording sends again after the lease (the webhook id stays the same, for receivers to drop it).

:func:`send_test` sends a test notification through a channel now, for the dashboard's button.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from peekapi_server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig
from peekapi_server.store import Store
from peekapi_server.store.alerts import OutboxItem, StoredChannel

from .channels import DeliveryFailed, send

logger = logging.getLogger("peekapi_server.alerts")

#: Seconds a claimed notification is held by its deliverer (a send takes at most about 3 x SEND_TIMEOUT).
LEASE_SECONDS = 60
SEND_TIMEOUT = 10.0
#: Seconds before the 1st, 2nd, ... retry; every later one waits the last of these.
BACKOFF_SECONDS = (10, 30, 120, 600, 1800, 3600)
#: A notification not delivered this long after it was queued is given up (about 28 attempts).
GIVE_UP_SECONDS = 24 * 3600


def retry_delay(attempts: int) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
    return BACKOFF_SECONDS[min(max(attempts, 1), len(BACKOFF_SECONDS)) - 1]


def deliver_due(
    store: Store, settings: ServerConfig, now: float, limit: int = 20, timeout: float = SEND_TIMEOUT
) -> int:
    """One pass: up to ``limit`` attempts at the notifications due at ``now``; returns how many were delivered.

    ``now`` is the clock of the pass (epoch seconds; it moves on with the real time spent sending). Blocks while
    sending, one notification at a time (up to about ``3 * SEND_TIMEOUT`` each). Store errors propagate (the alert
    job logs them); a notification that cannot be sent never raises: it is retried or given up with an ERROR log.
    Thread-safe and safe across processes (each notification is leased to one deliverer). ``timeout``: seconds
    per network operation (``ValueError`` unless a whole send, ``3 * timeout``, fits in the lease).
    """
    if not 0 < 3 * timeout < LEASE_SECONDS:
        raise ValueError(f"timeout must be above 0 and below {LEASE_SECONDS / 3:g} s (a send fits in the lease)")
    started = time.monotonic()
    delivered = attempts = misses = 0
    while attempts < limit and misses < 2:
        current = int(now + time.monotonic() - started)
        with store.alerts(write=True) as a:
            claimed = a.claim_due(current, LEASE_SECONDS, 1)
            channels = a.channels_by_id([claimed[0].channel_id]) if claimed else {}
        if not claimed:  # nothing due, or another deliverer took the row this one looked at: look once more
            misses += 1
            continue
        attempts += 1
        item = claimed[0]
        failure = _attempt(item, channels.get(item.channel_id), settings, timeout)
        current = int(now + time.monotonic() - started)
        if failure is None:
            with store.alerts(write=True) as a:
                a.delivered(item.id, current)
            delivered += 1
            logger.info("notification %s delivered (attempt %d)", item.message_id, item.attempts)
            continue
        retry_at = current + retry_delay(item.attempts)
        if failure.retryable and retry_at - item.created_at <= GIVE_UP_SECONDS:
            with store.alerts(write=True) as a:
                a.attempt_failed(item.id, failure.reason, retry_at, current)
            logger.warning(
                "notification %s: attempt %d failed (%s); next in %d s",
                item.message_id,
                item.attempts,
                failure.reason,
                retry_at - current,
            )
            continue
        with store.alerts(write=True) as a:
            a.attempt_failed(item.id, failure.reason, None, current)
        why = "not retryable" if not failure.retryable else f"undelivered for {current - item.created_at} s"
        logger.error(
            "notification %s given up after %d attempt(s) (%s): %s", item.message_id, item.attempts, why, failure.reason
        )
    return delivered


def _attempt(
    item: OutboxItem, channel: StoredChannel | None, settings: ServerConfig, timeout: float
) -> DeliveryFailed | None:
    """Sends one claimed notification: ``None`` when it arrived, else why not."""
    if channel is None:
        return DeliveryFailed(f"channel {item.channel_id} was deleted", retryable=False)
    try:
        payload = json.loads(item.payload)
    except ValueError:
        return DeliveryFailed("the queued payload is not JSON", retryable=False)
    if not isinstance(payload, dict):
        return DeliveryFailed("the queued payload is not a JSON object", retryable=False)
    try:
        send(channel, item.message_id, payload, settings, timeout)
    except DeliveryFailed as exc:
        return exc
    return None


def send_test(store: Store, settings: ServerConfig, project_id: int, channel_name: str) -> str | None:
    """Sends an ``alert.test`` notification through the project's channel ``channel_name`` now.

    Returns ``None`` when it arrived, else the reason. Recorded in the outbox as delivered or failed (never
    retried). Blocks while sending (up to about ``3 * SEND_TIMEOUT``); store errors propagate. Thread-safe.
    """
    with store.alerts(write=False) as a:
        channel = a.channel(project_id, channel_name)
    if channel is None:
        return f"no channel named {channel_name!r}"
    project = next((p.name for p in store.list_projects() if p.id == project_id), "")
    now = int(time.time())
    payload = test_payload(settings, project, channel, now)
    message_id = "msg_test_" + secrets.token_hex(12)
    failure: DeliveryFailed | None = None
    try:
        send(channel, message_id, payload, settings, SEND_TIMEOUT)
    except DeliveryFailed as exc:
        failure = exc
    done = int(time.time())
    # queued and settled in one transaction: no deliverer ever sees it due
    with store.alerts(write=True) as a:
        a.enqueue(None, [(channel.id, message_id, json.dumps(payload, sort_keys=True))], now)
        item = next((i for i in a.outbox(None, limit=50) if i.message_id == message_id), None)
        if item is not None:
            if failure is None:
                a.delivered(item.id, done)
            else:
                a.attempt_failed(item.id, failure.reason, None, done)
    if failure is None:
        logger.info("test notification %s sent through channel %r", message_id, channel.name)
        return None
    logger.warning("test notification through channel %r failed: %s", channel.name, failure.reason)
    return failure.reason


def test_payload(settings: ServerConfig, project: str, channel: StoredChannel, now: int) -> dict[str, Any]:
    """The payload of a test notification (the shape of every notification; ``rule.id`` 0)."""
    base = (settings.public_url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/")
    return {
        "type": "alert.test",
        "rule": {"id": 0, "name": "Test notification", "project": project, "description": "a test"},
        "group": "",
        "state": "resolved",
        "value": None,
        "threshold": 0.0,
        "at": now,
        "since": now,
        "url": f"{base}/alerts/channels?{urlencode({'project': project})}",
        "text": f"TEST: a test notification through the channel {channel.name!r} of {project}",
    }
