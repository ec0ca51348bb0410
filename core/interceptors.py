"""Turns exceptions from any servicer into gRPC statuses once, so handlers just raise InfernoError; times the
calls made for an `inferno` command."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from inferno.core_channel import COMMAND_METADATA
from inferno.errors import InfernoError

log = logging.getLogger(__name__)
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
# What a grpc.aio server interceptor is handed: the next handler lookup in the chain.
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[_Request, _Response] | None"]
]


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
Deserializer = Callable[[bytes], Any] | None


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """record(code, method) is told of every error a call ends with (for the errors-by-code metric)."""

    def __init__(self, record: ErrorRecorder | None = None) -> None:
        self._record = record or (lambda code, method: None)

    async def intercept_service(
        self,
        continuation: Continuation[_Request, _Response],
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
            wrap_deserializer=_tolerant,
        )


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes are not the method's message. grpc answers a deserializer that
    raises with UNKNOWN; handing this on instead lets the call end with INVALID_ARGUMENT."""

    reason: str


def _tolerant(deserializer: Deserializer) -> Deserializer:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(str(exc) or "the message could not be parsed")

    return deserialize


def _undecodable_error(request: _Undecodable) -> InfernoError:
    message = f"the request is not a valid protobuf message for this method: {request.reason}"
    return InfernoError("invalid_parameters", message, {"param": "request"})


Behavior = Callable[..., Any]


def rewrap_handler(
    handler: grpc.RpcMethodHandler[_Request, _Response],
    wrap_unary: Callable[[Behavior], Behavior],
    wrap_stream: Callable[[Behavior], Behavior],
    wrap_deserializer: Callable[[Deserializer], Deserializer] = lambda deserializer: deserializer,
) -> grpc.RpcMethodHandler[_Request, _Response]:
    """The handler with its unary-unary or unary-stream behaviour (and, if asked, its request deserializer)
    wrapped; other kinds (the reflection service's stream-stream) as they are. Every interceptor of ours
    wraps calls this way."""
    deserializer = wrap_deserializer(handler.request_deserializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _wrap_unary(behavior: Callable[..., Any], method: str, record: ErrorRecorder) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, _Undecodable):
                raise _undecodable_error(request)
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
            if isinstance(request, _Undecodable):
                raise _undecodable_error(request)
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, _as_inferno_error(exc, method), method, record)

    return wrapped


CommandRecorder = Callable[[str, float], None]


class CommandInterceptor(grpc.aio.ServerInterceptor):
    """record(command, milliseconds) is told of every call whose metadata names the `inferno` command it is
    made for (COMMAND_METADATA), once the call is over, however it ended. Calls naming none pass untouched."""

    def __init__(self, record: CommandRecorder) -> None:
        self._record = record

    async def intercept_service(
        self,
        continuation: Continuation[_Request, _Response],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        command = _named_command(handler_call_details)
        if handler is None or command is None:
            return handler
        return rewrap_handler(
            handler,
            lambda behavior: _timed_unary(behavior, command, self._record),
            lambda behavior: _timed_stream(behavior, command, self._record),
        )


def _named_command(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key.lower() == COMMAND_METADATA and isinstance(value, str):
            return value
    return None


def _timed_unary(behavior: Callable[..., Any], command: str, record: CommandRecorder) -> Callable[..., Any]:
    async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            return await behavior(request, context)
        finally:
            record(command, 1000 * (time.perf_counter() - started))

    return timed


def _timed_stream(
    behavior: Callable[..., Any], command: str, record: CommandRecorder
) -> Callable[..., AsyncIterator[Any]]:
    async def timed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for item in behavior(request, context):
                yield item
        finally:
            record(command, 1000 * (time.perf_counter() - started))

    return timed
