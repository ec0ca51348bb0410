"""/v1/auth/keys (create, list), /v1/auth/keys/{key_id} (revoke) and /v1/auth/user, in the seed's shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inferno.errors import invalid_param
from inferno.v1 import auth_service_pb2

from .core_client import CORE
from .humanize import iso_utc
from .openai.requests import optional_str, parse_json_object, required_str


async def create_key(request: web.Request) -> web.Response:
    """{"name", "permissions", "expires_in"?, "rate_limit"?} -> the seed's {"key_id", "api_key", "expires",
    "permissions"}, plus name and created. The secret is in this response only."""
    body = parse_json_object(await request.read())
    permissions = body.get("permissions", ["inference"])
    rate_limit = body.get("rate_limit")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise invalid_param("permissions", "'permissions' must be an array of strings")
    message = auth_service_pb2.CreateApiKeyRequest(
        name=required_str(body.get("name"), "name"),
        permissions=permissions,
        expires_in=optional_str(body.get("expires_in"), "expires_in") or "",
    )
    if rate_limit is not None:
        if not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or not 0 < rate_limit < 2**32:
            raise invalid_param(
                "rate_limit", "'rate_limit' must be a positive whole number of requests per minute"
            )
        message.rate_limit = rate_limit
    core = request.app[CORE]
    reply = await core.unary(request, core.auth.CreateApiKey, message)
    return web.json_response({**key_json(reply.key), "api_key": reply.api_key}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    core = request.app[CORE]
    reply = await core.unary(request, core.auth.ListApiKeys, auth_service_pb2.ListApiKeysRequest())
    return web.json_response({"object": "list", "data": [key_json(k) for k in reply.keys]})


async def revoke_key(request: web.Request) -> web.Response:
    core = request.app[CORE]
    message = auth_service_pb2.RevokeApiKeyRequest(key_id=request.match_info["key_id"])
    reply = await core.unary(request, core.auth.RevokeApiKey, message)
    return web.json_response(key_json(reply.key))


async def current_user(request: web.Request) -> web.Response:
    core = request.app[CORE]
    reply = await core.unary(request, core.auth.GetCurrentUser, auth_service_pb2.GetCurrentUserRequest())
    return web.json_response(
        {
            "user_id": reply.user_id,
            "username": reply.username,
            "role": reply.role,
            "permissions": list(reply.permissions),
            "api_keys": reply.api_keys,
            "last_login": iso_utc(reply.last_login),
            "auth_method": reply.method,
        }
    )


def key_json(key: auth_service_pb2.ApiKey) -> dict[str, Any]:
    """A key without its secret: id, name, prefix, permissions, created, expires, last used, revoked."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "permissions": list(key.permissions),
        "created": iso_utc(key.created),
        "expires": iso_utc(key.expires),
        "last_used": iso_utc(key.last_used),
        "revoked": iso_utc(key.revoked),
        "rate_limit": key.rate_limit if key.HasField("rate_limit") else None,
    }
