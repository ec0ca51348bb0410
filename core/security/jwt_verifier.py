"""JWT verification: HS256 with a shared secret, RS256/ES256 with a PEM public key or a JWKS file.

exp is required; nbf, iss and aud are checked (iss and aud when configured). Every failure is the same
authentication_failed to the caller; the reason goes to the log only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from inferno.config_file import ConfigError
from inferno.permissions import PERMISSION_NAMES

log = logging.getLogger(__name__)

_ASYMMETRIC = ["RS256", "ES256"]


@dataclass(frozen=True)
class JwtIdentity:
    subject: str
    name: str
    permissions: frozenset[str]
    issued_at: float | None


class JwtVerifier:
    def __init__(
        self,
        secret: str | None,
        public_key: Path | None,
        jwks: Path | None,
        issuer: str | None,
        audience: str | None,
        permissions_claim: str,
    ) -> None:
        self._keys: list[tuple[Any, list[str]]] = []
        if secret:
            self._keys.append((secret, ["HS256"]))
        if public_key is not None:
            self._keys.append((_read(public_key), _ASYMMETRIC))
        if jwks is not None:
            try:
                keyset = jwt.PyJWKSet.from_dict(json.loads(_read(jwks)))
            except (ValueError, jwt.PyJWTError) as exc:
                raise ConfigError(f"[security] jwt_jwks: {exc}") from None
            self._jwks = {k.key_id: k for k in keyset.keys}
        else:
            self._jwks = {}
        self._issuer = issuer
        self._audience = audience
        self._claim = permissions_claim

    def looks_like_jwt(self, token: str) -> bool:
        return token.count(".") == 2

    def verify(self, token: str) -> JwtIdentity | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            log.info("JWT refused: %s", exc)
            return None
        candidates = list(self._keys)
        kid = header.get("kid")
        if kid in self._jwks:
            key = self._jwks[kid]
            candidates.insert(0, (key.key, [key.algorithm_name]))
        for key, algorithms in candidates:
            if header.get("alg") not in algorithms:
                continue
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=algorithms,
                    issuer=self._issuer,
                    audience=self._audience,
                    options={"require": ["exp"], "verify_aud": self._audience is not None},
                )
            except jwt.PyJWTError as exc:
                log.info("JWT refused: %s", exc)
                return None
            return self._identity(claims)
        log.info("JWT refused: algorithm %r has no configured key", header.get("alg"))
        return None

    def _identity(self, claims: dict[str, Any]) -> JwtIdentity | None:
        raw = claims.get(self._claim, [])
        permissions = raw.split() if isinstance(raw, str) else raw
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            log.info("JWT refused: claim %r is not a list of permissions", self._claim)
            return None
        subject = str(claims.get("sub", ""))
        issued = claims.get("iat")
        return JwtIdentity(
            subject=subject,
            name=str(claims.get("name") or claims.get("preferred_username") or subject),
            permissions=frozenset(p for p in permissions if p in PERMISSION_NAMES),
            issued_at=float(issued) if isinstance(issued, int | float) else None,
        )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"[security]: {exc}") from None
