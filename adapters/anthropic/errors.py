"""Anthropic's error shape for the Messages routes: {"type": "error", "error": {"type", "message", ...}}.

The body also keeps the seed's "code" and "details" next to Anthropic's fields, so a client of either API
finds what it reads; the status and headers (Retry-After, WWW-Authenticate) are the seed's.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from inferno.errors import InfernoError

from ..errors import error_response

# Each of inferno.errors' codes as the Anthropic error type a client of that API branches on.
ANTHROPIC_ERROR_TYPES: dict[str, str] = {
    "invalid_json": "invalid_request_error",
    "invalid_parameters": "invalid_request_error",
    "request_too_large": "request_too_large",
    "context_length_exceeded": "invalid_request_error",
    "model_not_found": "not_found_error",
    "not_found": "not_found_error",
    "method_not_allowed": "invalid_request_error",
    "model_not_loaded": "invalid_request_error",
    "authentication_failed": "authentication_error",
    "permission_denied": "permission_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_memory": "overloaded_error",
    "gpu_unavailable": "api_error",
    "model_not_ready": "overloaded_error",
    "server_overloaded": "overloaded_error",
    "core_unavailable": "api_error",
    "model_load_failed": "api_error",
    "internal_error": "api_error",
}

_HEADERS_KEPT = ("Retry-After", "WWW-Authenticate")


def anthropic_error_body(error: InfernoError) -> dict[str, Any]:
    """{"type": "error", "error": {"type", "message", "code", "details"}}."""
    seed = error.to_body()["error"]
    assert isinstance(seed, dict)
    return {"type": "error", "error": {**seed, "type": ANTHROPIC_ERROR_TYPES[error.code]}}


def anthropic_error_response(error: InfernoError, request: web.BaseRequest | None = None) -> web.Response:
    """The error in Anthropic's shape with the status and headers the seed's rendering gives it."""
    seed = error_response(error, request)
    headers = {name: seed.headers[name] for name in _HEADERS_KEPT if name in seed.headers}
    return web.json_response(anthropic_error_body(error), status=seed.status, headers=headers)


def with_anthropic_errors(handler: Handler) -> Handler:
    """Render what the handler raises (a refused request, a failed core call, a body over the size limit)
    in Anthropic's shape. Anything else reaches the gateway's error middleware as usual."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InfernoError as error:
            return anthropic_error_response(error, request)
        except web.HTTPRequestEntityTooLarge as refusal:
            message = refusal.text or "request body is too large"
            return anthropic_error_response(InfernoError("request_too_large", message), request)

    return handle
