"""The SQL database behind API keys and conversion jobs: SQLite on one node, PostgreSQL for a fleet of cores.

The stores write one SQL text for both engines: `?` placeholders, column types both know (TEXT, INTEGER,
DOUBLE PRECISION) and upserts as INSERT ... ON CONFLICT ... DO UPDATE. Each statement outside transaction()
commits on its own, so a call that returns has written what it wrote.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]


class Statements(Protocol):
    """Runs statements: the database itself (each commits alone) or one open transaction."""

    def execute(self, sql: str, params: Params = ()) -> int:
        """Runs one statement; the number of rows it changed."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Row]: ...


class Database(ABC):
    # The database file for SQLite; None for a server.
    path: Path | None = None

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int: ...

    @abstractmethod
    def query(self, sql: str, params: Params = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    def transaction(self, exclusive: bool = False) -> contextlib.AbstractContextManager[Statements]:
        """All of the block's statements or none. exclusive: one such transaction at a time across every
        process on the database (schema migrations)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs (no password)."""
