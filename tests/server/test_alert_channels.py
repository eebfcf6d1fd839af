"""Notification channels against real receivers on 127.0.0.1: a local HTTP server verifies webhook signatures
itself (from the Standard Webhooks scheme) and stands in for Slack's and Discord's hooks; email goes to a real
aiosmtpd server, in plain SMTP and with STARTTLS under a certificate for 127.0.0.1 from a private CA (trustme)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from peekapi_server.alerts.channels import DeliveryFailed, send, smtp_settings, webhook_signature
from peekapi_server.config import ServerConfig
from peekapi_server.store.alerts import StoredChannel
from tests.server.support import free_port

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PAYLOAD: dict[str, Any] = {
    "type": "alert.firing",
    "rule": {"id": 7, "name": "errors", "project": "shop", "description": "error_rate above 5% over 5 min"},
    "group": "GET /v1/orders",
    "state": "firing",
    "value": 12.5,
    "threshold": 5.0,
    "at": 1_796_380_800,
    "since": 1_796_380_740,
    "url": "https://peek.example.com/alerts/rule?project=shop&id=7",
    "text": "FIRING: errors for GET /v1/orders in shop: error_rate above 5% over 5 min; now 12.5",
}
HOSTILE = "<!channel> @everyone & <http://evil.example|click> **bold** [x](http://evil.example)\r\nBcc: x@evil.example"


# -- a real HTTP receiver ---------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | str  # the status sent back, or "reset" / "hang"


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; it answers from ``plan`` (a status, ``"reset"`` to reset
    the connection, ``"hang"`` to answer nothing), then ``default``."""

    plan: deque[int | str] = field(default_factory=deque)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    answer = receiver.plan.popleft() if receiver.plan else receiver.default
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(self.path, headers, body, answer))
                if answer == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if answer == "hang":
                    receiver.stopping.wait(30)
                    self.close_connection = True
                    return
                assert isinstance(answer, int)
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if answer >= 300 else b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def channel(kind: str, target: str, secret: str | None = None) -> StoredChannel:
    return StoredChannel(1, 1, "ops", kind, target, secret, 0)


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """A receiver's check, written from the Standard Webhooks scheme (not from the sender's code)."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (s.partition(",") for s in headers["webhook-signature"].split())
    )


# -- webhooks ---------------------------------------------------------------------------------------------------


def test_the_signature_matches_the_schemes_published_example() -> None:
    body = b'{"test": 2432232314}'
    got = webhook_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    with pytest.raises(ValueError, match="whsec_"):
        webhook_signature("secret", "msg", 1, body)


def test_a_webhook_is_signed_and_verifies_at_the_receiver(receiver: Receiver) -> None:
    send(channel("webhook", receiver.url, SECRET), "msg_abc", PAYLOAD, ServerConfig())
    [got] = receiver.requests()
    assert got.path == "/hook?x=1" and got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == "msg_abc"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert json.loads(got.body) == PAYLOAD and "peek.example.com/alerts/rule" in json.loads(got.body)["url"]
    assert verify(SECRET, got.headers, got.body)
    # a tampered body, another id, another secret or an old timestamp do not verify
    assert not verify(SECRET, got.headers, got.body.replace(b"12.5", b"1.25"))
    assert not verify(SECRET, {**got.headers, "webhook-id": "msg_other"}, got.body)
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), got.headers, got.body)
    old = str(int(got.headers["webhook-timestamp"]) - 3600)
    assert not verify(SECRET, {**got.headers, "webhook-timestamp": old}, got.body)


@pytest.mark.parametrize(
    ("answer", "retryable"), [(400, False), (404, False), (410, False), (408, True), (429, True), (503, True)]
)
def test_answers_say_whether_to_retry(receiver: Receiver, answer: int, retryable: bool) -> None:
    receiver.plan.append(answer)
    with pytest.raises(DeliveryFailed) as failed:
        send(channel("webhook", receiver.url, SECRET), "msg_1", PAYLOAD, ServerConfig())
    assert failed.value.retryable is retryable and str(answer) in failed.value.reason
    assert len(receiver.requests()) == 1


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.plan.append(307)
    with pytest.raises(DeliveryFailed, match=r"redirect.*not followed") as failed:
        send(channel("webhook", receiver.url, SECRET), "msg_1", PAYLOAD, ServerConfig())
    assert not failed.value.retryable and len(receiver.requests()) == 1


def test_resets_hangs_and_refusals_are_retryable(receiver: Receiver) -> None:
    receiver.plan.extend(["reset", "hang"])
    hook = channel("webhook", receiver.url, SECRET)
    with pytest.raises(DeliveryFailed) as reset:
        send(hook, "msg_1", PAYLOAD, ServerConfig(), timeout=2)
    assert reset.value.retryable
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="timed out") as hung:
        send(hook, "msg_1", PAYLOAD, ServerConfig(), timeout=0.5)
    assert hung.value.retryable and time.monotonic() - started < 5
    closed = channel("webhook", f"http://127.0.0.1:{free_port()}/hook", SECRET)
    with pytest.raises(DeliveryFailed) as refused:
        send(closed, "msg_1", PAYLOAD, ServerConfig(), timeout=2)
    assert refused.value.retryable


def test_a_trickling_receiver_is_cut_off_at_the_deadline() -> None:
    """A peer that sends a byte now and then stays under the per-read timeout; the whole send still ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"X-Slow: y\r\n")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    hook = channel("webhook", f"http://127.0.0.1:{listener.getsockname()[1]}/", SECRET)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryFailed, match=r"no answer within 1\.5 s") as failed:
            send(hook, "msg_1", PAYLOAD, ServerConfig(), timeout=0.5)
    finally:
        stop.set()
        listener.close()
    assert failed.value.retryable and 1.4 < time.monotonic() - started < 4


def test_unusable_channels_fail_without_retry(receiver: Receiver) -> None:
    for broken in (
        channel("webhook", receiver.url, None),
        channel("webhook", receiver.url, "whsec_not base64!"),
        channel("webhook", "ftp://127.0.0.1/x", SECRET),
        channel("sms", "+1555", None),
        channel("email", "a@example.com"),  # no smtp_url configured
    ):
        with pytest.raises(DeliveryFailed) as failed:
            send(broken, "msg_1", PAYLOAD, ServerConfig())
        assert not failed.value.retryable
    assert receiver.requests() == []


# -- Slack and Discord ------------------------------------------------------------------------------------------


def test_slack_gets_an_incoming_webhook_message_with_untrusted_text_escaped(receiver: Receiver) -> None:
    payload = {**PAYLOAD, "group": HOSTILE, "text": f"FIRING: errors for {HOSTILE}"}
    send(channel("slack", receiver.url), "msg_1", payload, ServerConfig())
    [got] = receiver.requests()
    message = json.loads(got.body)
    assert "webhook-signature" not in got.headers
    assert set(message) == {"text", "blocks"} and [b["type"] for b in message["blocks"]] == ["section", "context"]
    section = message["blocks"][0]["text"]
    assert section["type"] == "mrkdwn" and "FIRING: errors" in section["text"] and "12.5" in section["text"]
    everything = json.dumps(message)
    # no mention, no link of the attacker's making: their <, > and & are entities
    assert "<!channel>" not in everything and "<http://evil" not in everything
    assert "&lt;!channel&gt;" in section["text"] and "&amp;" in section["text"] and "\r" not in everything
    link = "<https://peek.example.com/alerts/rule?project=shop&amp;id=7|Open in PeekAPI>"
    assert link in message["text"] and link in message["blocks"][1]["elements"][0]["text"]


def test_discord_gets_a_webhook_message_that_pings_nobody(receiver: Receiver) -> None:
    payload = {**PAYLOAD, "rule": {**PAYLOAD["rule"], "name": HOSTILE}}
    send(channel("discord", receiver.url), "msg_1", payload, ServerConfig())
    message = json.loads(receiver.requests()[0].body)
    assert message["allowed_mentions"] == {"parse": []}
    [embed] = message["embeds"]
    assert embed["url"] == PAYLOAD["url"] and f"<{PAYLOAD['url']}>" in message["content"]
    assert embed["color"] == 0xD93025 and embed["timestamp"].startswith("2026-")
    for text in (message["content"], embed["title"]):
        assert "@everyone" not in text and "<!channel>" not in text  # the @ is broken by a zero-width space
        assert r"\*\*bold\*\*" in text and r"\[x\]\(http" in text  # shown as written, not as markdown
        assert "\n" not in text.split("\n<http")[0]
    assert len(message["content"]) <= 2000 and len(embed["title"]) <= 256


# -- email ------------------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What a real aiosmtpd server received."""

    messages: list[tuple[str, list[str], email.message.EmailMessage]] = field(default_factory=list)
    reject: str | None = None  # an SMTP reply for DATA, e.g. "451 try later"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject:
            return self.reject
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


def smtp_server(mailbox: Mailbox, **kwargs: Any) -> Any:
    from aiosmtpd.controller import Controller

    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def test_email_over_plain_smtp_with_a_safe_subject() -> None:
    pytest.importorskip("aiosmtpd")
    mailbox = Mailbox()
    server = smtp_server(mailbox)
    try:
        settings = ServerConfig(smtp_url=f"smtp://127.0.0.1:{server.port}?from=alerts@peek.example.com")
        payload = {**PAYLOAD, "group": HOSTILE}
        send(channel("email", "ops@example.com, oncall@example.com"), "msg_1", payload, settings)
    finally:
        server.stop()
    [(sender, recipients, msg)] = mailbox.messages
    assert sender == "alerts@peek.example.com" and recipients == ["ops@example.com", "oncall@example.com"]
    assert msg["From"] == "alerts@peek.example.com" and msg["To"] == "ops@example.com, oncall@example.com"
    subject = str(msg["Subject"])
    assert subject.startswith("[PeekAPI] FIRING: errors (<!channel>") and "\n" not in subject and "\r" not in subject
    assert msg["Bcc"] is None  # the newline in the group did not start a header
    body = msg.get_content()
    assert "https://peek.example.com/alerts/rule?project=shop&id=7" in body and "Value: 12.5" in body
    assert msg["Message-ID"] == "<msg_1@peekapi>"


def test_email_over_starttls_with_login_and_a_private_ca(ca: Any, tmp_path: Path) -> None:
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    logins: list[tuple[bytes, bool]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, session.ssl is not None))
        ok = auth_data.login == b"alerts" and auth_data.password == b"p@ss:word"
        return AuthResult(success=ok, handled=False)

    mailbox = Mailbox()
    server = smtp_server(
        mailbox, tls_context=server_context, require_starttls=True, authenticator=authenticator, auth_required=True
    )
    base = f"127.0.0.1:{server.port}?from=alerts@peek.example.com&starttls=true"
    try:
        good = ServerConfig(smtp_url=f"smtp://alerts:p%40ss%3Aword@{base}&cafile={cafile}")
        send(channel("email", "ops@example.com"), "msg_1", PAYLOAD, good)
        # the certificate is checked: without the private CA it does not verify (retryable: certificates change)
        with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED") as untrusted:
            send(
                channel("email", "ops@example.com"), "msg_2", PAYLOAD, ServerConfig(smtp_url=f"smtp://alerts:x@{base}")
            )
        assert untrusted.value.retryable
        wrong = ServerConfig(smtp_url=f"smtp://alerts:wrong@{base}&cafile={cafile}")
        with pytest.raises(DeliveryFailed, match="login refused") as refused:
            send(channel("email", "ops@example.com"), "msg_3", PAYLOAD, wrong)
        assert not refused.value.retryable
    finally:
        server.stop()
    assert [m[2]["Message-ID"] for m in mailbox.messages] == ["<msg_1@peekapi>"]
    # credentials were only ever sent inside TLS (smtplib tries each mechanism the server offers)
    assert len(logins) >= 2 and all(login == b"alerts" and in_tls for login, in_tls in logins)


@pytest.mark.parametrize(("reply", "retryable"), [("451 4.3.0 try again later", True), ("554 5.7.1 no", False)])
def test_smtp_replies_say_whether_to_retry(reply: str, retryable: bool) -> None:
    pytest.importorskip("aiosmtpd")
    server = smtp_server(Mailbox(reject=reply))
    try:
        settings = ServerConfig(smtp_url=f"smtp://127.0.0.1:{server.port}?from=alerts@peek.example.com")
        with pytest.raises(DeliveryFailed, match=reply[:3]) as failed:
            send(channel("email", "ops@example.com"), "msg_1", PAYLOAD, settings)
    finally:
        server.stop()
    assert failed.value.retryable is retryable


def test_smtp_urls_are_checked(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("x")
    got = smtp_settings(f"smtp://u%40x:p%3Aw@mail.example.com:587?from=a@example.com&starttls=true&cafile={cafile}")
    assert (got.host, got.port, got.user, got.password, got.starttls, got.cafile) == (
        "mail.example.com",
        587,
        "u@x",
        "p:w",
        True,
        str(cafile),
    )
    assert smtp_settings("smtps://mail.example.com?from=a@example.com").port == 465
    assert smtp_settings("smtp://mail.example.com?from=a@example.com").port == 25
    for bad, reason in [
        ("http://mail.example.com?from=a@example.com", "smtp://"),
        ("smtp://mail.example.com", "from=ADDRESS"),
        ("smtp://mail.example.com?from=nobody", "from=ADDRESS"),
        ("smtp://mail.example.com?from=a@example.com&tls=1", "unknown parameter"),
        ("smtp://mail.example.com?from=a@example.com&starttls=maybe", "starttls"),
        ("smtps://mail.example.com?from=a@example.com&starttls=true", "smtps://"),
        ("smtp://u:p@mail.example.com?from=a@example.com", "only sent over TLS"),
        (f"smtp://mail.example.com?from=a@example.com&cafile={tmp_path / 'none.pem'}", "cafile"),
        ("smtp://mail.example.com:99999?from=a@example.com", "port"),
    ]:
        with pytest.raises(ValueError, match=reason):
            smtp_settings(bad)
