"""The database a core (or `inferno keys`) uses: PostgreSQL when database_url is set, else SQLite in the
data directory; migrated to this release's schema."""

from __future__ import annotations

from pathlib import Path

from inferno.core.database.base import Database
from inferno.core.database.schema import migrate
from inferno.core.database.sqlite import SqliteDatabase

DATABASE_FILE = "inferno.db"


def open_database(database_url: str | None, data_dir: Path) -> Database:
    if database_url:
        from inferno.core.database.postgres import PostgresDatabase  # psycopg only where it is used

        return _migrated(PostgresDatabase(database_url))
    return open_sqlite(data_dir / DATABASE_FILE)


def open_sqlite(path: Path) -> Database:
    return _migrated(SqliteDatabase(path))


def _migrated(database: Database) -> Database:
    try:
        migrate(database)
    except BaseException:
        database.close()
        raise
    return database
