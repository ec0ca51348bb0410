"""Anthropic's `x-api-key` header as a credential: the gateway forwards it to the core as a bearer token."""

from __future__ import annotations

from collections.abc import Mapping

API_KEY_HEADER = "x-api-key"


def authorization_from_api_key(headers: Mapping[str, str]) -> str | None:
    """`Bearer <key>` for a request that sent x-api-key and no Authorization (which wins when both are sent);
    None otherwise."""
    key = headers.get(API_KEY_HEADER, "").strip()
    if not key or "Authorization" in headers:
        return None
    return f"Bearer {key}"
