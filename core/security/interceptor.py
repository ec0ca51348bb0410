"""Authentication, permissions, rate limits and stream limits for every RPC, in one gRPC interceptor.

The gateway forwards the HTTP Authorization header and the client's address as metadata, so REST, WebSocket
and direct gRPC callers meet the same policy. Rate-limit figures go back as initial metadata (the gateway
turns them into X-RateLimit-* headers), on refusals too. The limits are counted in this core's memory, or in
Redis for a fleet of cores (redis_limits.SharedLimits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from inferno.call_metadata import peer_address, trusted_client_address
from inferno.core.interceptors import Continuation, rewrap_handler
from inferno.core.security.authenticator import Authenticator
from inferno.core.security.principal import CURRENT_PRINCIPAL, Principal, anonymous
from inferno.core.security.rate_limiter import RateDecision, RateLimiter, RequestRateLimiter
from inferno.core.security.stream_slots import LocalStreamSlots, StreamSlots
from inferno.errors import InfernoError
from inferno.permissions import UNLIMITED_RPCS, Access, grants, requirement_of
from inferno.security_config import SecurityConfig

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RequestRateLimiter,
        max_concurrent_streams: int,
        failure_limiter: RequestRateLimiter | None = None,
        streams: StreamSlots | None = None,
        hop_secret: str | None = None,
    ) -> None:
        """failure_limiter counts failed authentications per client address (default: [security]
        auth_failures_per_minute's default); streams counts open streams (default: in memory); a client
        address a gateway forwards counts only when signed with hop_secret (else the caller's own)."""
        self._authenticator = authenticator
        self._limiter = limiter
        self._max_streams = max_concurrent_streams
        self._failures = failure_limiter or auth_failure_limiter(SecurityConfig())
        self._streams = streams or LocalStreamSlots()
        self._hop_secret = hop_secret

    @property
    def enabled(self) -> bool:
        return self._authenticator.enabled

    async def intercept_service(
        self,
        continuation: Continuation[_Request, _Response],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        is_unary_request = handler.unary_unary is not None or handler.unary_stream is not None
        if not is_unary_request and requirement_of(method) is not Access.PUBLIC:
            # Streaming requests (reflection only): none of ours need auth.
            raise InfernoError("permission_denied", f"{method} is not open to callers")
        return rewrap_handler(
            handler,
            lambda behavior: self._wrap_unary(behavior, method),
            lambda behavior: self._wrap_stream(behavior, method),
        )

    def _wrap_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            principal = await self._admit(method, context)
            token = CURRENT_PRINCIPAL.set(principal)
            try:
                return await behavior(request, context)
            finally:
                CURRENT_PRINCIPAL.reset(token)

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal = await self._admit(method, context)
            # Not reset: a stream the client abandons is closed by the event loop's async generator
            # finalizer, in another Context, where reset() raises. gRPC runs each call in a task of its own,
            # so the value ends with the call's Context anyway.
            CURRENT_PRINCIPAL.set(principal)
            if method in UNLIMITED_RPCS or not self._max_streams:
                async for item in behavior(request, context):
                    yield item
                return
            slot = await self._streams.acquire(principal.rate_key, self._max_streams)
            if slot is None:
                raise InfernoError(
                    "rate_limit_exceeded",
                    f"at most {self._max_streams} streams may be open at once per caller",
                    {"max_concurrent_streams": str(self._max_streams)},
                )
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                self._streams.release(slot)

        return wrapped

    async def _admit(self, method: str, context: grpc.aio.ServicerContext) -> Principal:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        address = trusted_client_address(metadata, self._hop_secret) or peer_address(context.peer())
        needed = requirement_of(method)
        if not self._authenticator.enabled:
            principal = anonymous(address)
        else:
            credentials = metadata.get("authorization")
            # A thread: the key store may be a database across the network.
            identified = await asyncio.to_thread(self._authenticator.identify, credentials)
            if identified is None and needed is not Access.PUBLIC:
                raise await self._failed_authentication(address, bool(credentials), context)
            principal = identified or anonymous(address)
            if not grants(principal.permissions, needed):
                raise InfernoError(
                    "permission_denied",
                    f"this call needs the '{needed.value}' permission",
                    {"required_permission": str(needed.value)},
                )
        if method not in UNLIMITED_RPCS:
            decision = await self._limiter.take(principal.rate_key, principal.rate_limit)
            if decision.limit:
                await context.send_initial_metadata(decision.headers())
            if not decision.allowed:
                raise _rate_limited(decision)
        return principal

    async def _failed_authentication(
        self, address: str, sent_credentials: bool, context: grpc.aio.ServicerContext
    ) -> InfernoError:
        """401, or 429 with Retry-After once the address has failed too often: credentials that prove nothing
        count, missing ones do not (they cost nothing to check). Valid credentials are never refused by this
        limit."""
        if sent_credentials:
            decision = await self._failures.take(f"addr:{address}")
            if not decision.allowed:
                await context.send_initial_metadata((("retry-after", str(decision.retry_after)),))
                return InfernoError(
                    "rate_limit_exceeded",
                    f"More than {decision.limit} failed authentications a minute from this address; "
                    f"retry in {decision.retry_after} s",
                    {"limit": str(decision.limit), "retry_after_s": str(decision.retry_after)},
                )
        return InfernoError(
            "authentication_failed",
            "Invalid or missing credentials: send 'Authorization: Bearer <API key or JWT>'",
        )


def auth_failure_limiter(security: SecurityConfig) -> RateLimiter:
    """Failed authentications per client address: auth_failures_per_minute, all at once if need be."""
    return RateLimiter(security.auth_failures_per_minute, 0)


def _rate_limited(decision: RateDecision) -> InfernoError:
    # Detail values are strings for ErrorInfo; the HTTP body shows these keys as numbers (NUMERIC_DETAILS).
    details: dict[str, str | list[str]] = {
        "limit": str(decision.limit),
        "retry_after_s": str(decision.retry_after),
    }
    if decision.burst_limit:
        return InfernoError(
            "rate_limit_exceeded",
            f"More than {decision.burst_limit} requests in a burst; retry in {decision.retry_after} s",
            {**details, "burst_limit": str(decision.burst_limit)},
        )
    return InfernoError(
        "rate_limit_exceeded",
        f"Rate limit of {decision.limit} requests per minute exceeded; retry in {decision.retry_after} s",
        details,
    )
