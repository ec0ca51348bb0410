"""The single-node database: inferno.db in the data directory, private to its owner."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from inferno.core.database.base import Database, Params, Row, Statements

DATABASE_MODE = 0o600


def connect_private(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode (autocommit) to path, created mode 0600 (and narrowed to it if it exists).

    SQLite gives its -wal and -shm files the database file's mode, so they are private too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, DATABASE_MODE))
    os.chmod(path, DATABASE_MODE)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class SqliteDatabase(Database):
    """One connection, one lock: calls are short, and come from the event loop and a few threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect_private(path)
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Statements]:
        # IMMEDIATE takes the write lock at once, so two processes never both read then fail to upgrade.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Connection(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def describe(self) -> str:
        return str(self.path)


class _Connection:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()
