"""Route normalisation groups raw paths by turning id-like segments into {id}."""

from __future__ import annotations

import pytest

from peekapi_server.normalize import normalize_path


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/42", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{id}"),
        ("/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/items/{id}"),
        ("/items/3F2504E0-4F89-11D3-9A0C-0305E82C3301/x", "/items/{id}/x"),
        ("/blobs/5f1d7a9e3c2b4a6f8e0d1c2b", "/blobs/{id}"),
        ("/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commits/{id}"),
        ("/search?q=1&page=2", "/search"),
        ("/users/42?expand=1", "/users/{id}"),
        ("/", "/"),
        ("", "/"),
        ("/v2/users", "/v2/users"),  # a version prefix is not an id
        ("/colors/beef", "/colors/beef"),  # short hex words stay
        ("/users/:id", "/users/:id"),  # already a template (Node)
        ("/users/{user_id}", "/users/{user_id}"),
        ("/files/report-2024.pdf", "/files/report-2024.pdf"),
        ("/users/abc123", "/users/abc123"),
        ("/users/123abc", "/users/123abc"),
        ("users/42", "users/{id}"),
        ("42/x//7/", "{id}/x//{id}/"),
    ],
)
def test_normalize_path(path: str, route: str) -> None:
    assert normalize_path(path) == route
