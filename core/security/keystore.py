"""API keys in SQLite (WAL mode) under the data directory: secrets are stored only as SHA-256 hashes.

A secret is "sk-inf-" plus 32 random bytes (256 bits) in URL-safe base64, so a plain hash is as good as a slow
one: there is nothing to guess. Lookups go by hash; the stored hash is compared in constant time anyway.

Creation and revocation are written at once. last_used changes on every request, so it is kept in memory and
written every few seconds (and at close): a crash loses at most that much of it, never a key or a revocation.

The keys live in the core's Database: SQLite in the data directory, or PostgreSQL shared by a fleet of
cores. Nothing about a key is cached, so a key revoked through one core is refused by every core from its
next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from inferno.core.database.base import Database
from inferno.core.database.open import DATABASE_FILE, open_database
from inferno.errors import InfernoError, invalid_param
from inferno.permissions import PERMISSION_NAMES

SECRET_PREFIX = "sk-inf-"
_SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 6
# How long a key's last_used may wait in memory before it is written.
LAST_USED_FLUSH_S = 5.0
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    name: str
    prefix: str
    permissions: tuple[str, ...]
    created: float
    expires: float | None
    last_used: float | None
    revoked: float | None
    rate_limit: int | None

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or self.expires > now)


def parse_expires_in(text: str) -> float | None:
    """Seconds from "30d", "12h", "90m", "3600s", "2w"; empty: never."""
    if not text:
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise invalid_param("expires_in", "'expires_in' must be a duration such as 30d, 12h or 90m")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def check_permissions(permissions: list[str]) -> tuple[str, ...]:
    if not permissions:
        raise invalid_param("permissions", "'permissions' must name at least one permission")
    unknown = [p for p in permissions if p not in PERMISSION_NAMES]
    if unknown:
        raise invalid_param(
            "permissions", f"unknown permissions {unknown}; use {', '.join(sorted(PERMISSION_NAMES))}"
        )
    return tuple(dict.fromkeys(permissions))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Thread-safe: the database serialises its calls; a lock guards the uses not yet written."""

    def __init__(self, database: Database | Path, flush_every_s: float = LAST_USED_FLUSH_S) -> None:
        """database: an open Database (the caller closes it), or a data directory whose SQLite inferno.db
        this store opens and closes."""
        self._owns_database = isinstance(database, Path)
        self._db = open_database(None, database) if isinstance(database, Path) else database
        self.path = database / DATABASE_FILE if isinstance(database, Path) else database.path
        self._lock = threading.Lock()
        # key_id -> last use not yet written; the writer thread starts with the first use.
        self._unwritten_uses: dict[str, float] = {}
        self._flush_every_s = flush_every_s
        self._closing = threading.Event()
        self._writer: threading.Thread | None = None

    def close(self) -> None:
        """Writes the pending last_used times (and closes the database if this store opened it)."""
        self._closing.set()
        if self._writer is not None:
            self._writer.join()
        try:
            self.flush()
        except InfernoError as error:
            log.warning("last_used times lost at close: %s", error.message)
        if self._owns_database:
            self._db.close()

    def flush(self) -> None:
        """Writes the pending last_used times now (one transaction)."""
        with self._lock:
            uses = [(used, key_id) for key_id, used in self._unwritten_uses.items()]
            self._unwritten_uses.clear()
        if not uses:
            return
        try:
            with self._db.transaction() as sql:
                for used, key_id in uses:
                    # Another core of a fleet may have written a later use.
                    sql.execute(
                        "UPDATE api_keys SET last_used = ? "
                        "WHERE key_id = ? AND (last_used IS NULL OR last_used < ?)",
                        (used, key_id, used),
                    )
        except InfernoError:
            # The database is unreachable: keep the uses for the next flush (newer ones win).
            with self._lock:
                for used, key_id in uses:
                    self._unwritten_uses[key_id] = max(used, self._unwritten_uses.get(key_id, used))
            raise

    def create(
        self,
        name: str,
        permissions: tuple[str, ...],
        expires_in_s: float | None,
        rate_limit: int | None = None,
    ) -> tuple[StoredKey, str]:
        """The new key and its secret (returned here only)."""
        if not name or len(name) > 100:
            raise invalid_param("name", "'name' must be 1 to 100 characters")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        key = StoredKey(
            key_id="key_" + secrets.token_hex(8),
            name=name,
            prefix=secret[:_SHOWN_PREFIX_LENGTH],
            permissions=permissions,
            created=now,
            expires=now + expires_in_s if expires_in_s else None,
            last_used=None,
            revoked=None,
            rate_limit=rate_limit,
        )
        self._db.execute(
            f"INSERT INTO api_keys ({_COLUMNS}, secret_sha256) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
            (
                key.key_id,
                name,
                key.prefix,
                json.dumps(permissions),
                now,
                key.expires,
                rate_limit,
                _hash(secret),
            ),
        )
        return key, secret

    def list(self) -> list[StoredKey]:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created")
        with self._lock:
            uses = dict(self._unwritten_uses)
        keys = [_key(row) for row in rows]
        return [replace(k, last_used=uses[k.key_id]) if k.key_id in uses else k for k in keys]

    def revoke(self, key_id: str) -> StoredKey:
        self._db.execute(
            "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL", (time.time(), key_id)
        )
        row = self._db.query_one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        if row is None:
            raise InfernoError("not_found", f"no API key with id {key_id!r}", {"param": "key_id"})
        return _key(row)

    def authenticate(self, secret: str) -> StoredKey | None:
        """The usable key this secret belongs to, with last_used updated; None for anything else."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        digest = _hash(secret)
        now = time.time()
        row = self._db.query_one(
            f"SELECT {_COLUMNS}, secret_sha256 FROM api_keys WHERE secret_sha256 = ?", (digest,)
        )
        if row is None or not hmac.compare_digest(row[-1], digest):
            return None
        key = _key(row[:-1])
        if not key.usable(now):
            return None
        with self._lock:
            previous = self._unwritten_uses.get(key.key_id)
            if previous is not None:
                key = replace(key, last_used=previous)
            self._unwritten_uses[key.key_id] = now
            if self._writer is None and not self._closing.is_set():
                self._writer = threading.Thread(target=self._write_periodically, name="keystore", daemon=True)
                self._writer.start()
        return key

    def active_count(self) -> int:
        now = time.time()
        return sum(1 for key in self.list() if key.usable(now))

    def _write_periodically(self) -> None:
        while not self._closing.wait(self._flush_every_s):
            try:
                self.flush()
            except InfernoError as error:
                log.warning("last_used times not written yet: %s", error.message)


_COLUMNS = "key_id, name, prefix, permissions, created, expires, last_used, revoked, rate_limit"


def _key(row: tuple[object, ...]) -> StoredKey:
    key_id, name, prefix, permissions, created, expires, last_used, revoked, rate_limit = row
    return StoredKey(
        key_id=str(key_id),
        name=str(name),
        prefix=str(prefix),
        permissions=tuple(json.loads(str(permissions))),
        created=float(created),  # type: ignore[arg-type]
        expires=None if expires is None else float(expires),  # type: ignore[arg-type]
        last_used=None if last_used is None else float(last_used),  # type: ignore[arg-type]
        revoked=None if revoked is None else float(revoked),  # type: ignore[arg-type]
        rate_limit=None if rate_limit is None else int(rate_limit),  # type: ignore[call-overload]
    )
