"""``peekapi.middleware`` imports no framework: it works in an app that has only its own."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_middleware_imports_no_framework() -> None:
    code = (
        "import sys, peekapi.middleware, peekapi.middleware.django; "
        "from peekapi import PeekApiASGI, PeekApiWSGI, PeekApiMiddleware; "
        "names = ('django', 'starlette', 'fastapi', 'litestar', 'flask', 'werkzeug', 'bottle', 'asgiref'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_wsgi_application_does_not_load_asyncio_for_the_middleware() -> None:
    # asyncio and what it imports are about 1 MB of memory in every worker of a WSGI server.
    code = (
        "import sys, peekapi.middleware, peekapi.middleware.django; "
        "from peekapi.middleware import PeekApiWSGI; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
