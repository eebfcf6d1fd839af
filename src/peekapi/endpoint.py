"""Which URLs the SDK may send to: scheme, credentials, and address checks against SSRF.

``parse_endpoint`` runs once, at configuration time, and raises ``ValueError`` with a clear reason.
``check_address`` runs again at connect time on every address a host name resolves to, so a DNS answer
cannot smuggle a private address past the configuration check.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# The only hosts allowed over plain HTTP, and allowed although they are loopback addresses.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))  # RFC 6052, RFC 8215
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated), but still an IPv4 address within


@dataclass(frozen=True)
class Endpoint:
    """A validated ingestion URL, split into what a connection needs."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    is_local: bool
    allow_private: bool

    @property
    def origin(self) -> str:
        """``scheme://host:port`` for messages (never carries credentials: they are rejected)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_endpoint(url: str, *, allow_private: bool = False) -> Endpoint:
    """Validate ``url`` and return its parts.

    Raises ``ValueError`` for: a scheme other than http/https; plain HTTP to anything but localhost,
    127.0.0.1 or ::1, unless ``allow_private`` is set and the host is not a public address (a host name is
    then checked at connect time: plain HTTP only to private addresses); user or password in the URL; a literal
    address (in any IPv4 spelling: decimal, hex, octal, short forms; or IPv6, including IPv4-mapped) that is
    private, loopback, link-local, CGNAT, multicast, reserved or unspecified, unless ``allow_private`` is set;
    a missing host or a bad port.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("peekapi: 'endpoint' must be a non-empty URL")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("peekapi: 'endpoint' must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port_value = parts.port
    except ValueError as exc:
        raise ValueError(f"peekapi: 'endpoint' is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"peekapi: 'endpoint' must use https (or http for localhost), not {scheme or 'no'!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("peekapi: 'endpoint' must not contain credentials; pass the key as 'api_key'")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ValueError("peekapi: 'endpoint' has no host")
    is_local = host in LOCAL_HOSTS
    address = literal_address(host)
    if scheme != "https" and not is_local:
        if not allow_private:
            raise ValueError(
                f"peekapi: 'endpoint' must use https for {host!r} (plain http is only for localhost, or for a "
                "collector on a private network with allow_private_endpoint=True)"
            )
        if address is not None and blocked_reason(address) is None:
            raise ValueError(f"peekapi: 'endpoint' must use https for the public address {host!r}")
    if address is not None and not is_local and not allow_private:
        reason = blocked_reason(address)
        if reason:
            raise ValueError(
                f"peekapi: 'endpoint' host {host!r} is a {reason} address; set allow_private_endpoint=True "
                "to send to a self-hosted collector on a private network"
            )
    port = port_value if port_value is not None else (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Endpoint(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        target=target,
        is_local=is_local,
        allow_private=allow_private,
    )


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` spells, in any form the C resolver accepts, or None for a host name.

    Beyond the dotted-quad that :mod:`ipaddress` reads, ``inet_aton`` accepts ``2130706433``, ``0x7f000001``,
    ``0177.0.0.1`` and ``127.1``: all of them reach 127.0.0.1, so all of them are checked.
    """
    candidate = host.strip("[]")
    try:
        return ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        pass
    if candidate and all(c in "0123456789abcdefx." for c in candidate) and candidate[-1] != "x":
        try:
            return ipaddress.IPv4Address(socket.inet_aton(candidate))
        except OSError:
            return None
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be sent to (e.g. ``"private"``), or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        translated = any(address in net for net in _NAT64) or address in _IPV4_COMPATIBLE
        if embedded is None and translated and int(address) > 1:  # :: and ::1 are said as such below
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return blocked_reason(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("CGNAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for reason, hit in checks:
        if hit:
            return reason
    if not address.is_global:
        return "non-public"
    return None


def check_address(endpoint: Endpoint, address: str) -> None:
    """Raise ``ConnectionRefusedError`` if ``endpoint`` may not connect to resolved ``address``.

    Called at connect time for every address a host name resolves to. Local endpoints may connect anywhere,
    and endpoints with ``allow_private`` too, except plain HTTP to a public address (the api key would cross
    the internet in the clear).
    """
    if endpoint.is_local or (endpoint.allow_private and endpoint.scheme == "https"):
        return
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise ConnectionRefusedError(f"peekapi: {endpoint.host} resolved to an unparseable address") from None
    reason = blocked_reason(parsed)
    if endpoint.allow_private:  # plain HTTP within a private network only
        if reason is None:
            raise ConnectionRefusedError(
                f"peekapi: {endpoint.host} resolved to a public address ({parsed}); refusing plain http to it"
            )
        return
    if reason:
        raise ConnectionRefusedError(
            f"peekapi: {endpoint.host} resolved to a {reason} address ({parsed}); refusing to connect"
        )
