"""Every failure leaves the gateway as the seed's error body with the status from inferno.errors."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from inferno.errors import InfernoError

logger = logging.getLogger(__name__)


def error_response(error: InfernoError) -> web.Response:
    """{"error": {"type", "code", "message", "details"}} with the code's HTTP status; a model still loading
    also says when to retry (Retry-After, from the load's progress)."""
    response = web.json_response(error.to_body(), status=error.kind.http_status)
    retry_after = error.details.get("retry_after_s") if isinstance(error.details, dict) else None
    if error.code == "model_not_ready":
        response.headers["Retry-After"] = str(retry_after or 5)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render InfernoError, unknown routes, wrong methods, oversized bodies and unexpected exceptions.

    Unexpected exceptions are logged with their traceback here; the client gets only internal_error.
    """
    try:
        return await handler(request)
    except InfernoError as error:
        return error_response(error)
    except web.HTTPMethodNotAllowed as refusal:
        allowed = sorted(refusal.allowed_methods)
        message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
        response = error_response(InfernoError("method_not_allowed", message, {"allowed_methods": allowed}))
        response.headers["Allow"] = ", ".join(allowed)
        return response
    except web.HTTPNotFound:
        return error_response(InfernoError("not_found", f"no route for {request.method} {request.path}"))
    except web.HTTPRequestEntityTooLarge as refusal:
        return error_response(InfernoError("request_too_large", refusal.text or "request body is too large"))
    except (web.HTTPException, ConnectionResetError):
        raise
    except Exception:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(InfernoError("internal_error", "internal server error"))
