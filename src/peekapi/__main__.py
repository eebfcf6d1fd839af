"""``python -m peekapi``: the ``peekapi`` command (see ``peekapi.cli``)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
