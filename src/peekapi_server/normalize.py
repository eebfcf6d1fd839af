"""Route normalisation: group raw paths full of ids by turning id-like segments into ``{id}``.

Applied only when an event came without a ``route``. A segment is id-like when it is an integer, a UUID, or a
hexadecimal string of 16 or more characters (object ids, hashes); the query string is dropped.
"""

from __future__ import annotations

import re

ID_PLACEHOLDER = "{id}"

# A whole segment (preceded by "/" or the start, followed by "/" or the end) that looks like an id.
_ID_SEGMENT = re.compile(
    r"(?<![^/])(?:[0-9]+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})(?=/|$)"
)


def normalize_path(path: str) -> str:
    """Returns ``path`` without its query string, id-like segments replaced by ``{id}``.

    ``/users/42/orders/7f3e...`` becomes ``/users/{id}/orders/{id}``; an empty path becomes ``/``.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path:
        return "/"
    return _ID_SEGMENT.sub(ID_PLACEHOLDER, path)
