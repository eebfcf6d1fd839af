"""Consumer identification: X-API-Key as-is, hashed Authorization, or the user's callback."""

from __future__ import annotations

import hashlib
import logging

import pytest

from peekapi import default_identify_consumer, hash_consumer_id
from peekapi.consumer import identify_consumer


def test_hash_matches_every_peekapi_sdk() -> None:
    assert hash_consumer_id("Bearer abc") == "hash_" + hashlib.sha256(b"Bearer abc").hexdigest()[:12]
    assert len(hash_consumer_id("x")) == 17


def test_default_order() -> None:
    assert default_identify_consumer({"x-api-key": "k1", "authorization": "Bearer t"}) == "k1"
    assert default_identify_consumer({"authorization": "Bearer t"}) == hash_consumer_id("Bearer t")
    assert default_identify_consumer({"accept": "*/*"}) is None
    assert default_identify_consumer({"x-api-key": "", "authorization": ""}) is None


def test_callback_replaces_the_default() -> None:
    assert identify_consumer({"x-tenant": "t9", "x-api-key": "k"}, lambda h: h.get("x-tenant")) == "t9"
    assert identify_consumer({"x-api-key": "k"}, None) == "k"


@pytest.mark.parametrize("result", [42, b"bytes", ["x"]])
def test_callback_returning_a_non_string_yields_none(result: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="peekapi"):
        assert identify_consumer({}, lambda h: result) is None  # type: ignore[arg-type,return-value]
    assert "not a string" in caplog.text


def test_callback_that_raises_yields_none_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def boom(headers: dict[str, str]) -> str | None:
        raise KeyError("x-user")

    with caplog.at_level(logging.WARNING, logger="peekapi"):
        assert identify_consumer({"x-api-key": "k"}, boom) is None
    assert "KeyError" in caplog.text
