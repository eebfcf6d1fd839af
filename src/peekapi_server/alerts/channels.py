"""Sending one notification through one channel: a signed webhook, Slack, Discord or email.

:func:`send` is the only entry point. It renders the outbox payload (its fields: ``peekapi_server.alerts.evaluate``
``notification``) for the channel's kind, sends it once, and raises :class:`DeliveryFailed` (and nothing else)
when it did not arrive, saying whether trying again later may help. Retrying, backoff and giving up are the
outbox's business (``peekapi_server.alerts.outbox``).

- **Webhook** (Standard Webhooks): ``POST`` of the payload JSON with ``webhook-id`` (the message id, the same on
  every retry so receivers can drop duplicates), ``webhook-timestamp`` (epoch seconds at sending) and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the base64-decoded part of the
  channel's ``whsec_`` secret.
- **Slack**: an incoming-webhook message (``text`` and ``blocks``); **Discord**: an execute-webhook message
  (``content`` and ``embeds``) that pings nobody (``allowed_mentions`` empty).
- **Email**: a plain-text message over SMTP (:func:`smtp_settings` reads ``ServerConfig.smtp_url``).

What counts as retryable: a 2xx answer is success; 408, 429, 5xx, network errors, timeouts and TLS failures are
retryable; any other answer (4xx, a redirect: never followed) is not, and neither is a channel or SMTP setting
that cannot work. SMTP: 4xx replies are retryable, 5xx ones and refused credentials are not.

Everything in a payload that came from traffic (rule, project and group names) is untrusted text: it is escaped
for Slack's mrkdwn and Discord's markdown, and stripped of line breaks in email headers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from peekapi_server.config import ServerConfig
from peekapi_server.store.alerts import StoredChannel

from .rules import readable

logger = logging.getLogger("peekapi_server.alerts")

#: Bytes of a receiver's answer read at most (the start of it goes into the failure reason).
MAX_ANSWER = 64 * 1024
USER_AGENT = "PeekAPI-Alerts/1"
_WORDS = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "STILL FIRING", "test": "TEST"}
_COLOURS = {"firing": 0xD93025, "resolved": 0x1E8E3E, "reminder": 0xE37400, "test": 0x5F6368}
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "reminder": ":bell:", "test": ":wave:"}
_DISCORD_MARKDOWN = re.compile(r"([\\*_~`|>#\-\[\]()<:!])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


class DeliveryFailed(Exception):
    """A notification did not arrive; ``retryable`` says whether trying again later may help."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def send(
    channel: StoredChannel, message_id: str, payload: dict[str, Any], settings: ServerConfig, timeout: float = 10.0
) -> None:
    """Sends ``payload`` through ``channel`` once, as message ``message_id``.

    Raises :class:`DeliveryFailed` when it did not arrive, never anything else. Blocks on the network: each
    operation waits at most ``timeout`` seconds and the whole send about ``3 * timeout`` at most (a receiver
    trickling its answer is cut off then). Thread-safe (nothing shared).
    """
    try:
        if channel.kind == "webhook":
            _send_webhook(channel, message_id, payload, timeout)
        elif channel.kind == "slack":
            _post_json(channel.target, json.dumps(slack_message(payload)).encode(), {}, timeout)
        elif channel.kind == "discord":
            _post_json(channel.target, json.dumps(discord_message(payload)).encode(), {}, timeout)
        elif channel.kind == "email":
            _send_email(channel, message_id, payload, settings, timeout)
        else:
            raise DeliveryFailed(f"unknown channel kind {channel.kind!r}", retryable=False)
    except DeliveryFailed:
        raise
    except Exception as exc:  # the contract: DeliveryFailed only, whatever went wrong
        raise DeliveryFailed(f"unexpected error: {exc!r}", retryable=True) from exc


# -- webhooks ---------------------------------------------------------------------------------------------------


def webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``.

    ``ValueError`` when ``secret`` is not ``whsec_`` followed by base64."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a webhook secret is 'whsec_' followed by base64")
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _send_webhook(channel: StoredChannel, message_id: str, payload: dict[str, Any], timeout: float) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())  # the receiver checks it against its own clock: always the real time
    try:
        signature = webhook_signature(channel.secret or "", message_id, timestamp, body)
    except ValueError as exc:
        raise DeliveryFailed(f"the channel's signing secret is unusable: {exc}", retryable=False) from None
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    _post_json(channel.target, body, headers, timeout)


def _post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """One ``POST``; returns on a 2xx answer, else raises :class:`DeliveryFailed`. Redirects are not followed."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise DeliveryFailed(f"not a valid URL: {url!r}", retryable=False) from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise DeliveryFailed("the channel's target is not an http(s) URL", retryable=False)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    with _Deadline(3 * timeout, lambda: conn.sock) as deadline:
        try:
            conn.request("POST", path, body=body, headers=all_headers)
            response = conn.getresponse()
            answer = response.read(MAX_ANSWER)
            status, location = response.status, response.getheader("Location", "")
        except (OSError, http.client.HTTPException) as exc:
            took = f"no answer within {3 * timeout:g} s" if deadline.expired else _describe(exc)
            raise DeliveryFailed(f"{host}: {took}", retryable=True) from None
        finally:
            conn.close()
    if deadline.expired:  # the shut-down socket may read as a short, complete-looking answer
        raise DeliveryFailed(f"{host}: no answer within {3 * timeout:g} s", retryable=True)
    if 200 <= status < 300:
        return
    detail = f"{host} answered {status}"
    if 300 <= status < 400:
        raise DeliveryFailed(f"{detail}, a redirect to {location[:200]!r} (not followed)", retryable=False)
    snippet = _CONTROL.sub(" ", answer[:200].decode("utf-8", "replace")).strip()
    if snippet:
        detail += f": {snippet}"
    raise DeliveryFailed(detail, retryable=status in (408, 429) or status >= 500)


class _Deadline:
    """Bounds a whole conversation: after ``seconds`` the socket is shut down, which ends the read in progress
    (each operation also has its own timeout; this stops a peer that trickles bytes to stay under it)."""

    def __init__(self, seconds: float, sock: Callable[[], socket.socket | None]) -> None:
        self.expired = False
        self._sock = sock
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        sock = self._sock()
        if sock is not None:
            # the plain socket's shutdown, under a TLS wrapper too: wakes the reader, touches no TLS state
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return _CONTROL.sub(" ", text)[:300]


# -- message text -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """A payload's fields as text, tolerant of a payload missing some (``str`` of what is there, never raises)."""

    kind: str  # firing, resolved, reminder or test
    rule: str
    project: str
    description: str
    group: str
    value: str
    threshold: str
    url: str
    text: str
    at: int

    @classmethod
    def of(cls, payload: dict[str, Any]) -> _Facts:
        found = payload.get("rule")
        rule: dict[str, Any] = found if isinstance(found, dict) else {}
        kind = str(payload.get("type", "")).removeprefix("alert.")
        at = payload.get("at")
        return cls(
            kind=kind if kind in _WORDS else "firing",
            rule=_field(rule.get("name"), 200) or "(unnamed rule)",
            project=_field(rule.get("project"), 200),
            description=_field(rule.get("description"), 300),
            group=_field(payload.get("group"), 300),
            value=_number(payload.get("value")),
            threshold=_number(payload.get("threshold")),
            url=_field(payload.get("url"), 2000),
            text=_field(payload.get("text"), 1000),
            at=at if isinstance(at, int) and not isinstance(at, bool) else int(time.time()),
        )

    @property
    def word(self) -> str:
        return _WORDS[self.kind]

    @property
    def title(self) -> str:
        """e.g. ``FIRING: errors (GET /v1/orders)``."""
        return f"{self.word}: {self.rule}" + (f" ({self.group})" if self.group else "")


def _field(value: object, limit: int) -> str:
    """One line of at most ``limit`` characters (control characters and line breaks become spaces)."""
    text = _CONTROL.sub(" ", "" if value is None else str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return readable(float(value))
    return "no data"


def slack_escape(text: str) -> str:
    """Text safe in Slack mrkdwn: ``&``, ``<`` and ``>`` escaped, so it can neither link nor mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def discord_escape(text: str) -> str:
    """Text shown as written in Discord markdown: formatting characters backslash-escaped and every ``@`` broken
    by a zero-width space (no mention renders; ``allowed_mentions`` already stops the pings)."""
    return _DISCORD_MARKDOWN.sub(r"\\\1", text).replace("@", "@\u200b")


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Slack incoming-webhook message for a payload: a ``text`` fallback and ``blocks`` with the details."""
    f = _Facts.of(payload)
    lines = [f"{_EMOJI[f.kind]} *{slack_escape(f.title)}*"]
    if f.description:
        lines.append(slack_escape(f.description))
    lines.append(f"Value: {f.value} (threshold {f.threshold})" if f.kind != "test" else "A test notification.")
    details = f"Project {slack_escape(f.project)}" if f.project else "PeekAPI"
    link = f"<{slack_escape(f.url)}|Open in PeekAPI>" if f.url else ""
    return {
        "text": slack_escape(f.text or f.title) + (f" {link}" if link else ""),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(x for x in (details, link) if x)}]},
        ],
    }


def discord_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Discord webhook message for a payload: a ``content`` line and an embed linking to the dashboard."""
    f = _Facts.of(payload)
    lines = [discord_escape(f.description)] if f.description else []
    lines.append(f"Value: {f.value} (threshold {f.threshold})" if f.kind != "test" else "A test notification.")
    embed: dict[str, Any] = {
        "title": discord_escape(f.title)[:256],
        "description": "\n".join(lines)[:4000],
        "color": _COLOURS[f.kind],
        "timestamp": datetime.fromtimestamp(f.at, timezone.utc).isoformat(),
    }
    if f.project:
        embed["footer"] = {"text": f"PeekAPI · {f.project}"[:2000]}  # footers show text as is: no markdown
    content = f"**{discord_escape(f.title)}**"
    if f.url:
        embed["url"] = f.url
        content += f"\n<{f.url}>"  # <...>: a link without a preview card
    return {"content": content[:2000], "embeds": [embed], "allowed_mentions": {"parse": []}}


def email_message(payload: dict[str, Any], message_id: str, sender: str, recipients: str) -> EmailMessage:
    """The plain-text email for a payload; its subject like ``[PeekAPI] FIRING: errors (GET /v1/orders)``."""
    f = _Facts.of(payload)
    msg = EmailMessage()
    msg["Subject"] = f"[PeekAPI] {f.title}"  # _Facts fields hold no line breaks: no header injection
    msg["From"] = sender
    msg["To"] = recipients
    msg["Date"] = formatdate(f.at, usegmt=True)
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9_.-]', '', message_id)[:100]}@peekapi>"
    lines = [f.text or f.title, ""]
    if f.description:
        lines.append(f"Rule: {f.rule} ({f.description})")
    if f.project:
        lines.append(f"Project: {f.project}")
    if f.group:
        lines.append(f"Group: {f.group}")
    if f.kind != "test":
        lines.append(f"Value: {f.value} (threshold {f.threshold})")
    lines.append(f"At: {datetime.fromtimestamp(f.at, timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    if f.url:
        lines += ["", f"Open in PeekAPI: {f.url}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


# -- email ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    """Where email leaves, read from ``smtp_url`` by :func:`smtp_settings`."""

    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    implicit_tls: bool = False  # smtps://
    cafile: str | None = None


def smtp_settings(url: str) -> SmtpSettings:
    """Reads ``smtp://[user:password@]host[:port]?from=ADDRESS[&starttls=true][&cafile=PATH]`` (``smtps://``:
    TLS from the start). ``ValueError`` saying what is wrong; credentials need TLS (STARTTLS or smtps)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("smtp_url must look like smtp://[user:password@]host[:port]?from=ADDRESS")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("smtp_url has an invalid port") from None
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    unknown = sorted(set(query) - {"from", "starttls", "cafile"})
    if unknown:
        raise ValueError(f"smtp_url: unknown parameter(s) {', '.join(unknown)} (from, starttls, cafile)")
    if any(len(v) > 1 for v in query.values()):
        raise ValueError("smtp_url: each parameter may be given once")
    sender = query.get("from", [""])[0].strip()
    if not sender or "@" not in parseaddr(sender)[1] or _CONTROL.search(sender):
        raise ValueError("smtp_url needs from=ADDRESS, the sender of notification emails")
    starttls_text = query.get("starttls", ["false"])[0].lower()
    if starttls_text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("smtp_url: starttls must be true or false")
    starttls = starttls_text in ("true", "1", "yes")
    implicit = parts.scheme == "smtps"
    if implicit and starttls:
        raise ValueError("smtp_url: smtps:// is TLS from the start; starttls=true is for smtp://")
    cafile = query.get("cafile", [""])[0] or None
    if cafile is not None and not Path(cafile).is_file():
        raise ValueError(f"smtp_url: cafile {cafile!r} is not a readable file")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if user is not None and not (starttls or implicit):
        raise ValueError("smtp_url: a user and password are only sent over TLS (starttls=true or smtps://)")
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        sender=sender,
        user=user,
        password=password,
        starttls=starttls,
        implicit_tls=implicit,
        cafile=cafile,
    )


def _send_email(
    channel: StoredChannel, message_id: str, payload: dict[str, Any], settings: ServerConfig, timeout: float
) -> None:
    if not settings.smtp_url:
        raise DeliveryFailed("no smtp_url is configured: email cannot be sent", retryable=False)
    try:
        smtp_config = smtp_settings(settings.smtp_url)
    except ValueError as exc:
        raise DeliveryFailed(str(exc), retryable=False) from None
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    if not recipients:
        raise DeliveryFailed("the channel has no email address", retryable=False)
    msg = email_message(payload, message_id, smtp_config.sender, ", ".join(recipients))
    context = ssl.create_default_context(cafile=smtp_config.cafile)
    server = smtp_config.host
    smtp: smtplib.SMTP | None = None
    with _Deadline(3 * timeout, lambda: None if smtp is None else smtp.sock) as deadline:
        try:
            if smtp_config.implicit_tls:
                smtp = smtplib.SMTP_SSL(server, smtp_config.port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(server, smtp_config.port, timeout=timeout)
            with smtp:
                if smtp_config.starttls:
                    smtp.starttls(context=context)
                if smtp_config.user is not None:
                    smtp.login(smtp_config.user, smtp_config.password or "")
                refused = smtp.send_message(msg, from_addr=smtp_config.sender, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryFailed(f"{server}: login refused: {_smtp_reply(exc)}", retryable=False) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryFailed(f"{server}: {_describe(exc)}", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            reason = f"{server} refused every recipient: " + "; ".join(
                f"{address} {code}" for address, (code, _) in exc.recipients.items()
            )
            raise DeliveryFailed(reason, retryable=all(400 <= c < 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code
            raise DeliveryFailed(f"{server}: {_smtp_reply(exc)}", retryable=not 500 <= code < 600) from None
        except (OSError, smtplib.SMTPException) as exc:
            took = f"no answer within {3 * timeout:g} s" if deadline.expired else _describe(exc)
            raise DeliveryFailed(f"{server}: {took}", retryable=True) from None
    if refused:  # some recipients took it: sending again would send them duplicates
        logger.warning(
            "email %s: %s refused %s (the others received it)", message_id, server, ", ".join(sorted(refused))
        )


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {_CONTROL.sub(' ', text)[:300]}"
