"""The transaction seam both engines implement: three calls, ``?`` placeholders everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[object]


class Tx(Protocol):
    """One open transaction. SQL uses ``?`` placeholders; the engine translates them if it must."""

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        """Runs a statement and returns its rows (empty when it returns none)."""

    def run(self, sql: str, params: Params = ()) -> int:
        """Runs a statement and returns the number of rows it changed."""

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        """Runs one statement for each parameter tuple."""
