"""Who is calling: the identity the auth interceptor establishes for each call."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from inferno.permissions import ALL_PERMISSIONS, Permission


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    permissions: frozenset[str]
    # api_key, jwt, admin_key or none.
    method: str
    # The bucket rate limits and stream counts use.
    rate_key: str
    # A key's own requests per minute.
    rate_limit: int | None = None
    # Unix seconds of the previous use of these credentials, when known.
    last_login: float | None = None

    @property
    def role(self) -> str:
        return "admin" if {ALL_PERMISSIONS, Permission.ADMIN.value} & self.permissions else "user"


def anonymous(client_address: str) -> Principal:
    """Authentication off: everything is allowed; limits go by client address."""
    return Principal("anonymous", "anonymous", frozenset({ALL_PERMISSIONS}), "none", f"addr:{client_address}")


CURRENT_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "inferno_principal", default=None
)
