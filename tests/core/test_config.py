"""Configuration: defaults, environment fallbacks, and a clear ValueError for every bad option."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from peekapi import Options, PeekApiClient
from peekapi.config import DEFAULT_ENDPOINT, resolve_options

BASE: dict[str, Any] = {"api_key": "ak_live_x", "handle_signals": False}


def test_defaults_match_the_documented_table() -> None:
    s = resolve_options({"api_key": "k"})
    assert s.endpoint.url == DEFAULT_ENDPOINT
    assert (s.flush_interval, s.batch_size, s.max_buffer_size) == (10.0, 100, 10_000)
    assert (s.max_storage_bytes, s.max_event_bytes) == (5_242_880, 65_536)
    assert s.debug is False and s.on_error is None and s.identify_consumer is None
    assert "peekapi" in str(s.storage_dir) and s.storage_dir.is_absolute()


def test_options_dataclass_and_dict_are_equivalent() -> None:
    assert resolve_options(Options(api_key="k", batch_size=7)) == resolve_options({"api_key": "k", "batch_size": 7})


def test_environment_fills_api_key_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEEKAPI_API_KEY", "ak_env")
    monkeypatch.setenv("PEEKAPI_ENDPOINT", "http://localhost:9999/v1/events")
    s = resolve_options({})
    assert s.api_key == "ak_env" and s.endpoint.port == 9999
    # Explicit options win over the environment.
    s = resolve_options({"api_key": "ak_opt", "endpoint": "https://ingest.example.com/e"})
    assert s.api_key == "ak_opt" and s.endpoint.host == "ingest.example.com"


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEEKAPI_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"api_key.*required.*PEEKAPI_API_KEY"):
        PeekApiClient({"handle_signals": False})


@pytest.mark.parametrize("key", ["ak\nlive", "ak\x00x", "ak\x7f", "   "])
def test_bad_api_keys_are_rejected_without_echoing_them(key: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_options({"api_key": key})
    assert key.strip() == "" or key not in str(info.value)


def test_legitimate_zero_and_false_are_kept() -> None:
    s = resolve_options(
        {"api_key": "k", "max_storage_bytes": 0, "debug": False, "shutdown_timeout": 0, "retry_base_delay": 0}
    )
    assert s.max_storage_bytes == 0 and s.shutdown_timeout == 0 and s.retry_base_delay == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("flush_interval", 0, "flush_interval.*> 0"),
        ("flush_interval", -1, "flush_interval"),
        ("flush_interval", float("nan"), "flush_interval.*finite"),
        ("flush_interval", "10", "flush_interval"),
        ("batch_size", 0, "batch_size.*>= 1"),
        ("batch_size", 1.5, "batch_size.*integer"),
        ("batch_size", True, "batch_size.*integer"),
        ("max_buffer_size", -5, "max_buffer_size"),
        ("max_storage_bytes", -1, "max_storage_bytes"),
        ("max_event_bytes", 10, "max_event_bytes.*>= 512"),
        ("debug", "yes", "debug.*True or False"),
        ("on_error", 42, "on_error.*callable"),
        ("identify_consumer", "x-user", "identify_consumer.*callable"),
        ("exclude_paths", "/health", "exclude_paths.*list"),
        ("exclude_paths", ["health"], "exclude_paths.*start with '/'"),
        ("exclude_methods", [1], "exclude_methods"),
        ("storage_path", 5, "storage_path"),
        ("request_timeout", 0, "request_timeout"),
    ],
)
def test_bad_values_name_the_option(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PeekApiClient({**BASE, name: value})


def test_batch_size_cannot_exceed_the_buffer() -> None:
    with pytest.raises(ValueError, match=r"'batch_size' \(500\) must not exceed 'max_buffer_size' \(100\)"):
        resolve_options({"api_key": "k", "batch_size": 500, "max_buffer_size": 100})


def test_unknown_options_are_rejected_with_the_known_ones_listed() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*'flush_intervall'.*known options are.*flush_interval"):
        resolve_options({"api_key": "k", "flush_intervall": 5})


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="Options or a dict"):
        resolve_options(["api_key"])  # type: ignore[arg-type]


def test_exclusions_are_normalised() -> None:
    s = resolve_options({"api_key": "k", "exclude_paths": ["/health", "/internal/*"], "exclude_methods": ["options"]})
    assert s.exclude_paths == frozenset({"/health"})
    assert s.exclude_path_prefixes == ("/internal/",)
    assert s.exclude_methods == frozenset({"OPTIONS"})


def test_default_storage_dir_is_per_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    a = resolve_options({"api_key": "k", "endpoint": "https://a.example.com/e"}).storage_dir
    b = resolve_options({"api_key": "k", "endpoint": "https://b.example.com/e"}).storage_dir
    assert a != b and a.parent == b.parent and str(a).startswith(str(tmp_path))


def test_options_fields_are_all_documented() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(Options) if f"`{f.name}`" not in readme]
    assert missing == []


def test_the_removed_delivery_option_is_refused_saying_so() -> None:
    """``delivery`` (the delivery process of 0.2.0's development versions, never released) is gone."""
    for mode in ("thread", "process"):
        with pytest.raises(ValueError, match=r"unknown option\(s\) 'delivery' \('delivery' was removed: encoding"):
            resolve_options({"api_key": "ak_x", "delivery": mode})
    assert "delivery" not in {f.name for f in dataclasses.fields(Options)}


def test_debug_logs_through_the_applications_logging_when_it_is_set_up(
    ingest: Any, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    peek = logging.getLogger("peekapi")
    monkeypatch.setattr(peek, "handlers", [])
    monkeypatch.setattr(peek, "level", logging.NOTSET)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])  # the application's logging.basicConfig()
    client = PeekApiClient({**options, "debug": True})
    try:
        assert peek.level == logging.DEBUG
        assert peek.handlers == []  # no second handler: each line would be written twice
    finally:
        client.shutdown(5)
    monkeypatch.setattr(root, "handlers", [])  # no logging set up: debug=True writes to stderr itself
    client = PeekApiClient({**options, "debug": True})
    try:
        assert [type(h) for h in peek.handlers] == [logging.StreamHandler]
    finally:
        client.shutdown(5)
