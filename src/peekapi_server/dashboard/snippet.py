"""The SDK snippet's endpoint, checked the way the SDK will check it, so the copied code works as it is.

The SDK sends plain HTTP only to localhost, and refuses private addresses unless ``allow_private_endpoint`` is set
(``peekapi.endpoint``), which also allows plain HTTP to them. A collector reached at ``https://10.0.0.5`` or
``http://10.0.0.5:8787`` then needs that option in the snippet; one reached over plain HTTP at a public address
cannot be sent to at all, and the page says so instead of showing code that fails at start-up; one reached over
plain HTTP by name works only while the name resolves to private addresses, which the page says too.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from peekapi.endpoint import literal_address, parse_endpoint


@dataclass(frozen=True)
class Snippet:
    """What the snippet template needs: the ingest URL, the options it requires, and a warning if unusable."""

    base: str  # the collector's address as this request reached it, without a trailing slash
    allow_private: bool
    warning: str | None

    @property
    def endpoint(self) -> str:
        return f"{self.base}/v1/events"

    @property
    def kwargs(self) -> str:
        """Extra keyword arguments for the Python snippets (``""`` when none are needed)."""
        return ", allow_private_endpoint=True" if self.allow_private else ""

    @property
    def settings(self) -> str:
        """Extra entries for Django's ``PEEKAPI`` dict (``""`` when none are needed)."""
        return ', "allow_private_endpoint": True' if self.allow_private else ""


def snippet_for(request: Request) -> Snippet:
    """The snippet for the address the browser used to reach this collector. Never raises."""
    base = str(request.base_url).rstrip("/")
    endpoint = f"{base}/v1/events"
    try:
        parse_endpoint(endpoint)
        return Snippet(base, False, None)
    except ValueError:
        pass
    try:
        parsed = parse_endpoint(endpoint, allow_private=True)
    except ValueError as exc:
        reason = str(exc).removeprefix("peekapi: ")
        return Snippet(
            base,
            False,
            f"The SDK will not send to this address: {reason}. Serve the collector over "
            "HTTPS (behind a reverse proxy) and use that address in the endpoint.",
        )
    if parsed.scheme == "http" and literal_address(parsed.host) is None:
        return Snippet(
            base,
            True,
            f"Plain HTTP is allowed only within a private network: the SDK sends to {parsed.host} only while "
            "the name resolves to private addresses. Otherwise, serve the collector over HTTPS.",
        )
    return Snippet(base, True, None)
