"""Every failure leaves the gateway as the seed's error body with the status from inferno.errors."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from inferno.errors import InfernoError

from .core_client import AUTHORIZATION

logger = logging.getLogger(__name__)

# The protection space named in WWW-Authenticate challenges (RFC 6750 section 3).
REALM = "inferno"
_INVALID_TOKEN = "the credentials are invalid, expired or revoked"


def error_response(error: InfernoError, request: web.BaseRequest | None = None) -> web.Response:
    """{"error": {"type", "code", "message", "details"}} with the code's HTTP status; a model still loading
    also says when to retry (Retry-After, from the load's progress); a refusal of credentials carries a
    Bearer challenge (WWW-Authenticate)."""
    response = web.json_response(error.to_body(), status=error.kind.http_status)
    retry_after = error.details.get("retry_after_s") if isinstance(error.details, dict) else None
    if error.code == "model_not_ready":
        response.headers["Retry-After"] = str(retry_after or 5)
    challenge = bearer_challenge(error, _sent_bearer_token(request))
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


def bearer_challenge(error: InfernoError, sent_token: bool) -> str | None:
    """The RFC 6750 challenge for a 401 (error="invalid_token" only when a bearer token was sent: a request
    without one gets no error code) or for a 403 naming the permission it lacked; None for other errors."""
    if error.code == "authentication_failed":
        if not sent_token:
            return f'Bearer realm="{REALM}"'
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{_INVALID_TOKEN}"'
    if error.code == "permission_denied":
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
        needed = error.details.get("required_permission")
        return f'{challenge}, scope="{needed}"' if isinstance(needed, str) and needed else challenge
    return None


def _sent_bearer_token(request: web.BaseRequest | None) -> bool:
    if request is None:
        return False
    authorization = request.get(AUTHORIZATION) or request.headers.get("Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render InfernoError, unknown routes, wrong methods, oversized bodies and unexpected exceptions.

    A body the client sent that cannot be decoded (a Content-Encoding it does not use, a truncated chunk)
    is a 400. Any other unexpected exception is a bug, not the client's fault: it is logged with its
    traceback here and the client gets only a 500 internal_error.
    """
    try:
        return await handler(request)
    except InfernoError as error:
        return error_response(error, request)
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
    except RequestPayloadError as refusal:
        # Raised only by reading the request body, so it is always about what the client sent.
        message = f"the request body could not be read: {refusal}"
        response = error_response(InfernoError("invalid_parameters", message, {"param": "body"}))
        # What is left of the body cannot be told from the next request: say the connection ends here.
        response.force_close()
        return response
    except (web.HTTPException, ConnectionResetError):
        raise
    except Exception:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(InfernoError("internal_error", "internal server error"))
