"""Turns exceptions from any servicer into gRPC statuses once, so handlers just raise InfernoError."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status

from inferno.errors import InfernoError

log = logging.getLogger(__name__)
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


async def _abort(
    context: grpc.aio.ServicerContext, error: InfernoError, method: str, record: ErrorRecorder
) -> None:
    record(error.code, method)
    await context.abort_with_status(rpc_status.to_status(error.to_grpc_status()))


def _as_inferno_error(exc: Exception, method: str) -> InfernoError:
    if isinstance(exc, InfernoError):
        return exc
    log.exception("unhandled error in %s", method)
    return InfernoError("internal_error", "internal server error")


ErrorRecorder = Callable[[str, str], None]


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """record(code, method) is told of every error a call ends with (for the errors-by-code metric)."""

    def __init__(self, record: ErrorRecorder | None = None) -> None:
        self._record = record or (lambda code, method: None)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return rewrap_handler(
            handler,
            lambda behavior: _wrap_unary(behavior, method, self._record),
            lambda behavior: _wrap_stream(behavior, method, self._record),
        )


Behavior = Callable[..., Any]


def rewrap_handler(
    handler: grpc.RpcMethodHandler[_Request, _Response],
    wrap_unary: Callable[[Behavior], Behavior],
    wrap_stream: Callable[[Behavior], Behavior],
) -> grpc.RpcMethodHandler[_Request, _Response]:
    """The handler with its unary-unary or unary-stream behaviour wrapped; other kinds (the reflection
    service's stream-stream) as they are. Every interceptor of ours wraps calls this way."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _wrap_unary(behavior: Callable[..., Any], method: str, record: ErrorRecorder) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, _as_inferno_error(exc, method), method, record)

    return wrapped


def _wrap_stream(
    behavior: Callable[..., Any], method: str, record: ErrorRecorder
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, _as_inferno_error(exc, method), method, record)

    return wrapped
