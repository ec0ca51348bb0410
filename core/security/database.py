"""The data directory's SQLite database (inferno.db: API keys and conversion jobs), private to its owner."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

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
