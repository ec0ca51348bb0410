"""API keys in SQLite (WAL mode) under the data directory: secrets are stored only as SHA-256 hashes.

A secret is "sk-inf-" plus 32 random bytes (256 bits) in URL-safe base64, so a plain hash is as good as a slow
one: there is nothing to guess. Lookups go by hash; the stored hash is compared in constant time anyway.

Creation and revocation are written at once. last_used changes on every request, so it is kept in memory and
written every few seconds (and at close): a crash loses at most that much of it, never a key or a revocation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from inferno.core.security.database import connect_private
from inferno.errors import InfernoError, invalid_param
from inferno.permissions import PERMISSION_NAMES

SECRET_PREFIX = "sk-inf-"
_SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 6
# How long a key's last_used may wait in memory before it is written.
LAST_USED_FLUSH_S = 5.0
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    last_used REAL,
    revoked REAL,
    rate_limit INTEGER
)
"""


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
    """Thread-safe: one connection, one lock (calls are short; gRPC handlers call it from the event loop)."""

    def __init__(self, data_dir: Path, flush_every_s: float = LAST_USED_FLUSH_S) -> None:
        self.path = data_dir / "inferno.db"
        self._db = connect_private(self.path)
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        # key_id -> last use not yet written; the writer thread starts with the first use.
        self._unwritten_uses: dict[str, float] = {}
        self._flush_every_s = flush_every_s
        self._closing = threading.Event()
        self._writer: threading.Thread | None = None

    def close(self) -> None:
        """Writes the pending last_used times and closes the database."""
        self._closing.set()
        if self._writer is not None:
            self._writer.join()
        with self._lock:
            self._write_uses()
            self._db.close()

    def flush(self) -> None:
        """Writes the pending last_used times now (one transaction)."""
        with self._lock:
            self._write_uses()

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
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                (
                    key.key_id,
                    name,
                    key.prefix,
                    _hash(secret),
                    json.dumps(permissions),
                    now,
                    key.expires,
                    rate_limit,
                ),
            )
        return key, secret

    def list(self) -> list[StoredKey]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created").fetchall()
            uses = dict(self._unwritten_uses)
        keys = [_key(row) for row in rows]
        return [replace(k, last_used=uses[k.key_id]) if k.key_id in uses else k for k in keys]

    def revoke(self, key_id: str) -> StoredKey:
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL", (time.time(), key_id)
            )
            row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            raise InfernoError("not_found", f"no API key with id {key_id!r}", {"param": "key_id"})
        return _key(row)

    def authenticate(self, secret: str) -> StoredKey | None:
        """The usable key this secret belongs to, with last_used updated; None for anything else."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        digest = _hash(secret)
        now = time.time()
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS}, secret_sha256 FROM api_keys WHERE secret_sha256 = ?", (digest,)
            ).fetchone()
            if row is None or not hmac.compare_digest(row[-1], digest):
                return None
            key = _key(row[:-1])
            if not key.usable(now):
                return None
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
            self.flush()

    def _write_uses(self) -> None:
        """Under the lock."""
        if not self._unwritten_uses:
            return
        uses = [(used, key_id) for key_id, used in self._unwritten_uses.items()]
        self._unwritten_uses.clear()
        self._db.execute("BEGIN")
        self._db.executemany("UPDATE api_keys SET last_used = ? WHERE key_id = ?", uses)
        self._db.execute("COMMIT")


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
