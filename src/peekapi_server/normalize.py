"""Route normalisation: group raw paths full of ids by turning id-like segments into ``{id}``.

Applied only when an event came without a ``route``. A segment is id-like when it is an integer, a UUID, or a
hexadecimal string of 16 or more characters (object ids, hashes); the query string is dropped.
"""

from __future__ import annotations

import re

ID_PLACEHOLDER = "{id}"

_ID_SEGMENT = re.compile(
    r"""^(?:
        [0-9]+                                                            # integers
      | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUIDs
      | [0-9a-fA-F]{16,}                                                  # long hex
    )$""",
    re.VERBOSE,
)


def normalize_path(path: str) -> str:
    """Returns ``path`` without its query string, id-like segments replaced by ``{id}``.

    ``/users/42/orders/7f3e...`` becomes ``/users/{id}/orders/{id}``; an empty path becomes ``/``.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path:
        return "/"
    segments = path.split("/")
    changed = False
    for i, segment in enumerate(segments):
        if segment and _ID_SEGMENT.match(segment):
            segments[i] = ID_PLACEHOLDER
            changed = True
    return "/".join(segments) if changed else path
