"""The tables of API keys, conversion jobs and stored responses, as numbered migrations, and the one function
that applies them.

schema_version holds the number of migrations a database has; a core applies the rest at start, in one
exclusive transaction, so cores of a fleet that start together migrate once. Append migrations, never edit
one: a database that ran it will not run it again.
"""

from __future__ import annotations

import logging

from inferno.core.database.base import Database

log = logging.getLogger(__name__)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables single-node releases made before schema_version (IF NOT EXISTS: such a database is at 1).
    (
        """
        CREATE TABLE IF NOT EXISTS api_keys (
            key_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL UNIQUE,
            permissions TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION,
            last_used DOUBLE PRECISION,
            revoked DOUBLE PRECISION,
            rate_limit INTEGER
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS conversion_jobs (
            job_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            target_format TEXT NOT NULL,
            quantization TEXT NOT NULL,
            status TEXT NOT NULL,
            progress DOUBLE PRECISION NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            started DOUBLE PRECISION,
            finished DOUBLE PRECISION,
            output_file TEXT NOT NULL,
            source_bytes BIGINT NOT NULL DEFAULT 0,
            output_bytes BIGINT NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            model_id TEXT NOT NULL DEFAULT ''
        )
        """,
    ),
    # 2: the core that runs a job, so a core's restart fails only its own interrupted jobs.
    ("ALTER TABLE conversion_jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",),
    # 3: stored Responses (OpenAI's /v1/responses), each owned by the credentials that made it. The
    # response is its serialized inferno.v1.Response (base64); history holds the conversation before its
    # input, one item per row, so a response stays continuable when an earlier one is deleted.
    (
        """
        CREATE TABLE responses (
            response_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL,
            response TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE response_history (
            response_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            item TEXT NOT NULL,
            PRIMARY KEY (response_id, position)
        )
        """,
    ),
    # 4: the core that runs a stored response, so a core's restart fails only its own interrupted ones.
    ("ALTER TABLE responses ADD COLUMN runner TEXT NOT NULL DEFAULT ''",),
    # 5: when each runner last said it was alive, so the others can fail the responses of one that is gone.
    ("CREATE TABLE runners (runner TEXT PRIMARY KEY, seen DOUBLE PRECISION NOT NULL)",),
)


def migrate(database: Database) -> int:
    """Applies the migrations the database lacks; the schema version it is at now."""
    with database.transaction(exclusive=True) as sql:
        sql.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = sql.query("SELECT version FROM schema_version")
        current = int(rows[0][0]) if rows else 0
        if current > len(MIGRATIONS):
            log.warning(
                "the database's schema is at version %d, newer than this release's %d",
                current,
                len(MIGRATIONS),
            )
            return current
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                sql.execute(statement)
        if not rows:
            sql.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))
        elif current < len(MIGRATIONS):
            sql.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
    return max(current, len(MIGRATIONS))
