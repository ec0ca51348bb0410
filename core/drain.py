"""The core's shutdown drain: from SIGTERM the health service answers NOT_SERVING (so a load balancer's
health checks take the core out of rotation) while new calls are refused with UNAVAILABLE (which Envoy
retries on another core) and calls in flight run on, up to the grace period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health

from inferno.errors import InfernoError

from .interceptors import Behavior, Continuation, rewrap_handler

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_POLL_S = 0.05
# Calls that keep answering while the core drains: the health checks that report it, and reflection.
_ALWAYS_SERVED = (f"/{health.SERVICE_NAME}/", "/grpc.reflection.")


def shutting_down_error() -> InfernoError:
    return InfernoError("core_unavailable", "the inference core is shutting down; retry on another core")


class CoreDrain(grpc.aio.ServerInterceptor):
    """Counts the calls in flight; once drain() starts, refuses new ones (health checks excepted)."""

    def __init__(self) -> None:
        self.draining = False
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, grace_s: float) -> int:
        """Refuse new calls and wait up to grace_s for those in flight; returns how many are still running."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        return self._in_flight

    async def intercept_service(
        self,
        continuation: Continuation[_Request, _Response],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_ALWAYS_SERVED):
            return handler
        return rewrap_handler(handler, self._counted_unary, self._counted_stream)

    def _admit(self) -> None:
        if self.draining:
            raise shutting_down_error()
        self._in_flight += 1

    def _counted_unary(self, behavior: Behavior) -> Behavior:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._admit()
            try:
                return await behavior(request, context)
            finally:
                self._in_flight -= 1

        return counted

    def _counted_stream(self, behavior: Behavior) -> Callable[..., AsyncIterator[Any]]:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self._admit()
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                self._in_flight -= 1

        return counted
