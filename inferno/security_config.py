"""[security] of inferno.toml, then INFERNO_* environment variables, then flags (DESIGN §4).

[security]
api_keys = true                    # accept API keys from the key store
jwt_secret = "..."                 # HS256; or jwt_public_key = "key.pem" / jwt_jwks = "jwks.json"
jwt_issuer = "https://issuer"      # checked when set
jwt_audience = "inferno"           # checked when set
jwt_permissions_claim = "permissions"
admin_key_file = "admin.key"       # or INFERNO_ADMIN_KEY
allow_unauthenticated = false      # needed to bind a non-loopback address with no auth
rate_limit = 1000                  # requests per minute per key; without auth 0 (off) unless set here
burst_limit = 100
auth_failures_per_minute = 20      # failed authentications per client address; then 429; 0: no limit
max_concurrent_streams = 16        # per key
max_body_bytes = 8388608
max_messages = 1024
max_prompt_tokens = 0              # 0: the model's context
max_tokens_cap = 0                 # 0: the model's context
max_batch_items = 256              # items in one batch request; 0: no cap
max_sequences_per_request = 64     # prompts x n (or best_of) in one request; 0: no cap
ws_messages_per_second = 20
cors_origins = []                  # e.g. ["https://dash.example"], or ["*"]
tls_cert = "cert.pem"
tls_key = "key.pem"
tls_ca = "ca.pem"                  # what the gateway trusts for the core; default tls_cert
data_dir = "data"                  # the SQLite key store lives here
database_url = "postgresql://..."  # or INFERNO_DATABASE_URL: keys and jobs in PostgreSQL, shared by a fleet
redis_url = "redis://..."          # or INFERNO_REDIS_URL: rate limits and stream counts shared by a fleet
hop_secret = "..."                 # or INFERNO_HOP_SECRET: shared by gateways and cores (serve makes one)
trusted_proxies = []               # or INFERNO_TRUSTED_PROXIES (comma-separated): e.g. ["10.0.0.0/8"], the
                                   # proxies (Envoy) whose X-Forwarded-For the gateway believes
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inferno.config_file import ConfigError
from inferno.trusted_proxies import TrustedProxies

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "inferno"
DEFAULT_RATE_LIMIT = 1000
HOP_SECRET_ENV = "INFERNO_HOP_SECRET"
TRUSTED_PROXIES_ENV = "INFERNO_TRUSTED_PROXIES"


@dataclass(frozen=True)
class SecurityConfig:
    api_keys: bool = False
    jwt_secret: str | None = None
    jwt_public_key: Path | None = None
    jwt_jwks: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_permissions_claim: str = "permissions"
    admin_key: str | None = None
    allow_unauthenticated: bool = False
    # With no authentication every caller is anonymous and every local client shares 127.0.0.1, so
    # load_security_config turns this off (0) unless the setting is given.
    rate_limit: int = DEFAULT_RATE_LIMIT
    burst_limit: int = 100
    auth_failures_per_minute: int = 20
    max_concurrent_streams: int = 16
    max_body_bytes: int = 8 << 20
    max_messages: int = 1024
    max_prompt_tokens: int = 0
    max_tokens_cap: int = 0
    max_batch_items: int = 256
    max_sequences_per_request: int = 64
    ws_messages_per_second: int = 20
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    # A fleet of cores shares API keys and conversion jobs through PostgreSQL, and rate limits and stream
    # counts through Redis; unset, each core keeps its own (SQLite in data_dir, counts in memory).
    database_url: str | None = None
    redis_url: str | None = None
    # The core believes the client address a gateway forwards only when signed with this (call_metadata.py);
    # unset, it rate-limits unauthenticated callers by the address they connect from.
    hop_secret: str | None = None
    # Behind a proxy every caller connects from the proxy's address: the gateway takes the client's from
    # X-Forwarded-For when the caller is one of these (trusted_proxies.py).
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key or self.jwt_jwks)

    @property
    def auth_enabled(self) -> bool:
        return self.api_keys or self.jwt_enabled or self.admin_key is not None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def check_bind(self, host: str) -> None:
        """With no authentication only loopback addresses may be bound, unless explicitly allowed."""
        if self.auth_enabled or self.allow_unauthenticated or _is_loopback(host):
            return
        raise ConfigError(
            f"refusing to listen on {host} with no authentication: configure api_keys or JWT in [security], "
            "or set allow_unauthenticated = true"
        )


_PATHS = {"jwt_public_key", "jwt_jwks", "tls_cert", "tls_key", "tls_ca", "data_dir"}
_ENV = {
    "INFERNO_API_KEYS": "api_keys",
    "INFERNO_JWT_SECRET": "jwt_secret",
    "INFERNO_ADMIN_KEY": "admin_key",
    "INFERNO_RATE_LIMIT": "rate_limit",
    "INFERNO_BURST_LIMIT": "burst_limit",
    "INFERNO_AUTH_FAILURES_PER_MINUTE": "auth_failures_per_minute",
    "INFERNO_MAX_BATCH_ITEMS": "max_batch_items",
    "INFERNO_DATA_DIR": "data_dir",
    "INFERNO_ALLOW_UNAUTHENTICATED": "allow_unauthenticated",
    "INFERNO_DATABASE_URL": "database_url",
    "INFERNO_REDIS_URL": "redis_url",
    HOP_SECRET_ENV: "hop_secret",
    TRUSTED_PROXIES_ENV: "trusted_proxies",
}
_URL_SCHEMES = {
    "database_url": ("postgresql://", "postgres://"),
    "redis_url": ("redis://", "rediss://", "unix://"),
}


def load_security_config(config_path: Path | None, overrides: dict[str, Any] | None = None) -> SecurityConfig:
    """The [security] table (paths relative to the file), then the environment, then overrides (flags)."""
    values: dict[str, Any] = {}
    base = Path.cwd()
    if config_path is not None:
        try:
            table = tomllib.loads(config_path.read_text()).get("security", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        base = config_path.resolve().parent
        values.update(table)
    for variable, name in _ENV.items():
        if variable in os.environ:
            values[name] = os.environ[variable]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    admin_key_file = values.pop("admin_key_file", None)
    if admin_key_file is not None and "admin_key" not in values:
        values["admin_key"] = _read_secret((base / admin_key_file).resolve())
    return _build(values, base)


def _build(values: dict[str, Any], base: Path) -> SecurityConfig:
    known = {f.name: f for f in fields(SecurityConfig)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"[security]: unknown keys {', '.join(sorted(unknown))}")
    config = SecurityConfig()
    for name, raw in values.items():
        config = replace(config, **{name: _convert(name, raw, getattr(config, name), base)})
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("[security]: tls_cert and tls_key go together")
    if config.admin_key is not None and len(config.admin_key) < 16:
        raise ConfigError("[security]: the admin key must be at least 16 characters")
    for name, schemes in _URL_SCHEMES.items():
        url = getattr(config, name)
        if url is not None and not url.startswith(schemes):
            raise ConfigError(f"[security] {name}: must start with {' or '.join(schemes)}")
    if not config.auth_enabled and "rate_limit" not in values:
        config = replace(config, rate_limit=0)
    return config


def _convert(name: str, raw: Any, default: Any, base: Path) -> Any:
    where = f"[security] {name}"
    if name in _PATHS:
        return (base / str(raw)).resolve()
    if isinstance(default, bool):
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "0", "false", "no"):
            return raw.lower() in ("1", "true", "yes")
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: must be true or false")
        return raw
    if isinstance(default, int):
        try:
            number = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: must be a whole number") from None
        if number < 0:
            raise ConfigError(f"{where}: must not be negative")
        return number
    if name == "trusted_proxies":
        entries = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(f"{where}: must be a list of addresses or networks")
        try:
            return TrustedProxies.parse(e for e in entries if e.strip())
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if name == "cors_origins":
        if not isinstance(raw, list) or not all(isinstance(o, str) for o in raw):
            raise ConfigError(f"{where}: must be a list of origins")
        return tuple(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: must be a string")
    return raw


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"[security] admin_key_file: {exc}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
