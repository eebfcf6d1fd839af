"""Identifying the API consumer of a request from its headers."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping

logger = logging.getLogger("peekapi")

MAX_CONSUMER_ID_LENGTH = 256


def hash_consumer_id(raw: str) -> str:
    """Return ``hash_`` + the first 12 hex digits of the SHA-256 of ``raw`` (as every PeekAPI SDK does).

    Used for credentials (the ``Authorization`` header) so that the secret itself never leaves the app.
    """
    return "hash_" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def default_identify_consumer(headers: Mapping[str, str]) -> str | None:
    """The default consumer id: ``x-api-key`` as-is, else the hashed ``authorization`` header, else None.

    ``headers`` maps lower-cased header names to values. Never raises for a mapping of strings.
    """
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key
    auth = headers.get("authorization")
    if auth:
        return hash_consumer_id(auth)
    return None


def identify_consumer(
    headers: Mapping[str, str],
    callback: Callable[[dict[str, str]], str | None] | None,
) -> str | None:
    """The consumer id of a request: the user's ``identify_consumer`` callback when one is set, else the default.

    Never raises: a callback that raises, or returns something other than a string, yields ``None`` (logged at
    WARNING under the ``peekapi`` logger) so the request's event is still recorded.
    """
    if callback is None:
        return default_identify_consumer(headers)
    try:
        result: object = callback(headers if isinstance(headers, dict) else dict(headers))
    except Exception as exc:
        logger.warning(
            "peekapi: identify_consumer raised %s; recording the event without a consumer id",
            type(exc).__name__,
        )
        return None
    if result is None or isinstance(result, str):
        return result or None
    logger.warning("peekapi: identify_consumer returned %s, not a string; ignored", type(result).__name__)
    return None
