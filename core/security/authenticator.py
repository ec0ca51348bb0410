"""Credentials to a Principal: the bootstrap admin key, API keys from the key store, or JWTs."""

from __future__ import annotations

import hmac

from inferno.core.security.jwt_verifier import JwtVerifier
from inferno.core.security.keystore import KeyStore
from inferno.core.security.principal import Principal
from inferno.permissions import ALL_PERMISSIONS


class Authenticator:
    def __init__(self, keys: KeyStore | None, jwt: JwtVerifier | None, admin_key: str | None) -> None:
        self._keys = keys
        self._jwt = jwt
        self._admin_key = admin_key

    @property
    def enabled(self) -> bool:
        return self._keys is not None or self._jwt is not None or self._admin_key is not None

    def identify(self, authorization: str | None) -> Principal | None:
        """The caller behind an Authorization value ("Bearer <token>"); None when it proves nothing."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self._admin_key is not None and hmac.compare_digest(token.encode(), self._admin_key.encode()):
            return Principal("admin", "admin", frozenset({ALL_PERMISSIONS}), "admin_key", "admin")
        if self._keys is not None:
            key = self._keys.authenticate(token)
            if key is not None:
                return Principal(
                    key.key_id,
                    key.name,
                    frozenset(key.permissions),
                    "api_key",
                    f"key:{key.key_id}",
                    key.rate_limit,
                    key.last_used,
                )
        if self._jwt is not None and self._jwt.looks_like_jwt(token):
            identity = self._jwt.verify(token)
            if identity is not None:
                return Principal(
                    identity.subject,
                    identity.name,
                    identity.permissions,
                    "jwt",
                    f"jwt:{identity.subject}",
                    None,
                    identity.issued_at,
                )
        return None
