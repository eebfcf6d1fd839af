"""The public surface is fixed: these names, importable from these places."""

from __future__ import annotations

import subprocess
import sys

import peekapi


def test_exported_names() -> None:
    assert sorted(peekapi.__all__) == sorted(
        [
            "Options",
            "PeekApiClient",
            "RequestEvent",
            "__version__",
            "default_identify_consumer",
            "hash_consumer_id",
        ]
    )
    for name in peekapi.__all__:
        assert getattr(peekapi, name) is not None


def test_client_methods() -> None:
    for method in ("track", "flush", "shutdown", "stats"):
        assert callable(getattr(peekapi.PeekApiClient, method))


def test_sdk_imports_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import peekapi, peekapi.client, peekapi.worker, peekapi.transport, peekapi.spool\n"
        "std = set(sys.stdlib_module_names)\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] not in std and m.split('.')[0] != 'peekapi'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
