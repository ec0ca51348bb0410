"""The fleet database: PostgreSQL through a psycopg 3 connection pool, shared by every core.

Each statement outside a transaction commits on its own (autocommit), so a key that create() returned is on
the server's disk before its secret reaches the client.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from inferno.core.database.base import Database, Params, Row, Statements
from inferno.errors import InfernoError
from inferno.lifecycle import StartupError

log = logging.getLogger(__name__)

# How long a call waits for a free connection (or a new one) before its client gets a 503.
_CONNECTION_WAIT_S = 5.0
_CONNECT_TIMEOUT_S = 5
_MAX_CONNECTIONS = 8
# pg_advisory_xact_lock key of exclusive transactions (schema migrations): two cores starting together
# migrate one after the other.
_EXCLUSIVE_LOCK = 0x1AFE7A0
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class PostgresDatabase(Database):
    def __init__(self, url: str) -> None:
        self._where = _PASSWORD.sub(r"\1***@", url)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=_MAX_CONNECTIONS,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT_S},
            # A connection the server dropped (a restart, a failover) is replaced, not handed to a caller.
            check=ConnectionPool.check_connection,
            timeout=_CONNECTION_WAIT_S,
            open=False,
            name="inferno",
        )
        try:
            self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S * 2)
        except PoolTimeout:
            self._pool.close()
            raise StartupError(f"cannot connect to the database at {self._where} (database_url)") from None

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._connection() as connection:
            return connection.execute(_placeholders(sql), params).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        with self._connection() as connection:
            return connection.execute(_placeholders(sql), params).fetchall()

    @contextlib.contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Statements]:
        with self._connection() as connection, connection.transaction():
            if exclusive:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_EXCLUSIVE_LOCK,))
            yield _Connection(connection)

    def close(self) -> None:
        self._pool.close()

    def describe(self) -> str:
        return self._where

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; an unreachable server becomes a 503 for the client."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.error("database %s: %s", self._where, exc)
            raise InfernoError(
                "core_unavailable", "the shared database is unreachable; retry in a moment"
            ) from None


class _Connection:
    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._connection.execute(_placeholders(sql), params).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._connection.execute(_placeholders(sql), params).fetchall()


def _placeholders(sql: str) -> str:
    """The stores' `?` placeholders as psycopg's %s (their SQL holds no other ? or %)."""
    return sql.replace("?", "%s")
