"""The gateway's one gRPC channel to the core, and the one place a failed call becomes an InfernoError.

Every call forwards the HTTP request's Authorization header as metadata (the core authenticates) and keeps
the core's rate-limit metadata so the response can carry it as X-RateLimit-* headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2_grpc

from inferno.call_metadata import signed_client_address
from inferno.core_channel import COMMAND_METADATA, aio_channel
from inferno.envoy_config import GATEWAY_HOP_HEADER
from inferno.errors import InfernoError, error_from_rpc
from inferno.security_config import SecurityConfig
from inferno.trusted_proxies import TrustedProxies
from inferno.v1 import (
    admin_service_pb2_grpc,
    auth_service_pb2_grpc,
    conversion_service_pb2_grpc,
    inference_service_pb2_grpc,
    model_service_pb2_grpc,
    response_service_pb2_grpc,
)

from .routing_key import routing_metadata

_Request = TypeVar("_Request")
_Reply = TypeVar("_Reply")

CHANNEL_OPTIONS = [
    # Replies such as a long non-streamed completion may pass gRPC's 4 MiB default.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # A core that restarts is back within seconds; don't let reconnect backoff grow toward 2 minutes.
    ("grpc.max_reconnect_backoff_ms", 2000),
    # The core's limit is the gateway's body limit; gRPC's own 4 MiB default would cut it short.
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

# gRPC metadata the core may send about rate limits, and the HTTP header each becomes.
_RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit": "X-RateLimit-Limit",
    "x-ratelimit-remaining": "X-RateLimit-Remaining",
    "x-ratelimit-reset": "X-RateLimit-Reset",
    "retry-after": "Retry-After",
}

CORE_HEADERS = web.RequestKey("core_headers", dict[str, str])
# Set once a request's x-inferno-command went to the core: an HTTP request counts as one command.
_COMMAND_SENT = web.RequestKey("command_sent", bool)


class CoreClient:
    """The channel and service stubs; opened on app startup, closed on cleanup."""

    def __init__(self, address: str, security: SecurityConfig) -> None:
        self.address = address
        self._channel = aio_channel(address, security, CHANNEL_OPTIONS)
        self._hop_secret = security.hop_secret
        self._proxies = security.trusted_proxies
        self.inference = inference_service_pb2_grpc.InferenceServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self.auth = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self.conversion = conversion_service_pb2_grpc.ConversionServiceStub(self._channel)
        self.responses = response_service_pb2_grpc.ResponseServiceStub(self._channel)
        self.health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def close(self) -> None:
        await self._channel.close()

    async def unary(
        self,
        request: web.Request,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Reply],
        message: _Request,
        *,
        timeout: float | None = None,
    ) -> _Reply:
        """Call a unary RPC on behalf of request; a failure raises the InfernoError the core meant."""
        metadata = _forwarded_metadata(request, self._hop_secret, self._proxies) + routing_metadata(message)
        call = method(message, metadata=metadata, timeout=timeout)
        try:
            reply = await call
        except grpc.aio.AioRpcError as error:
            raise _core_error(self.address, request, error) from None
        _keep_rate_limit_headers(request, await call.initial_metadata())
        return reply

    def stream(
        self,
        request: web.Request,
        method: grpc.aio.UnaryStreamMultiCallable[_Request, _Reply],
        message: _Request,
    ) -> CoreStream[_Reply]:
        """Start a server-streaming RPC; use as `async with` so leaving the block cancels the call."""
        metadata = _forwarded_metadata(request, self._hop_secret, self._proxies) + routing_metadata(message)
        call = method(message, metadata=metadata)
        return CoreStream(self.address, request, call)


CORE = web.AppKey("core", CoreClient)
SECURITY = web.AppKey("security", SecurityConfig)
# Set by the WebSocket for the calls it makes: the credentials the socket authenticated with.
AUTHORIZATION = web.RequestKey("authorization", str)


class CoreStream(Generic[_Reply]):
    """The messages of one streaming call, read as they arrive.

    Iterating raises InfernoError if the core fails. Exiting the `async with` block for any reason
    (finished, error, client gone, task cancelled) cancels the call, so the core frees the sequence at once.
    """

    def __init__(
        self, address: str, request: web.Request, call: grpc.aio.UnaryStreamCall[Any, _Reply]
    ) -> None:
        self._address = address
        self._request = request
        self._call = call
        self._received_any = False

    async def __aenter__(self) -> CoreStream[_Reply]:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._call.cancel()

    def __aiter__(self) -> CoreStream[_Reply]:
        return self

    async def __anext__(self) -> _Reply:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise _core_error(self._address, self._request, error) from None
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        if not self._received_any:
            self._received_any = True
            _keep_rate_limit_headers(self._request, await self._call.initial_metadata())
        # grpc-stubs type read() as `object | reply` (EOF's alias is object); EOF is ruled out above.
        return cast(_Reply, message)


async def copy_core_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: put the core's rate-limit figures on the HTTP response."""
    response.headers.update(request.get(CORE_HEADERS, {}))


def _core_error(address: str, request: web.Request, error: grpc.aio.AioRpcError) -> InfernoError:
    _keep_rate_limit_headers(request, error.initial_metadata(), error.trailing_metadata())
    if reset_by_proxy(error):
        message = f"the inference core behind {address} stopped mid-stream; retry"
        return InfernoError("core_unavailable", message)
    converted = error_from_rpc(error)
    if converted.code == "core_unavailable":
        message = f"the inference core at {address} is unavailable: {converted.message}"
        return InfernoError("core_unavailable", message, converted.details)
    return converted


def reset_by_proxy(error: grpc.aio.AioRpcError) -> bool:
    """A stream reset without a status: what a proxy (Envoy) sends when the core behind it dies after
    answering, and gRPC reports as INTERNAL. A core never resets its own streams."""
    return error.code() is grpc.StatusCode.INTERNAL and "RST_STREAM" in (error.details() or "")


def _forwarded_metadata(
    request: web.Request, hop_secret: str | None, proxies: TrustedProxies
) -> tuple[tuple[str, str], ...]:
    """The caller's credentials and (signed) address, for the core's auth interceptor; and the hop header
    that sends the call past the gateways' gRPC relay (adapters/grpc_relay.py) straight to a core."""
    client = proxies.client_address(request.remote or "", request.headers.getall("X-Forwarded-For", []))
    metadata = [*signed_client_address(client, hop_secret), (GATEWAY_HOP_HEADER, "gateway")]
    authorization = request.get(AUTHORIZATION) or request.headers.get("Authorization")
    if authorization:
        metadata.append(("authorization", authorization))
    command = request.headers.get(COMMAND_METADATA)
    if command and not request.get(_COMMAND_SENT):
        request[_COMMAND_SENT] = True
        metadata.append((COMMAND_METADATA, command))
    return tuple(metadata)


def _keep_rate_limit_headers(
    request: web.Request, *metadata: Iterable[tuple[str, str | bytes]] | None
) -> None:
    for entries in metadata:
        for key, value in entries or ():
            header = _RATE_LIMIT_HEADERS.get(key.lower())
            if header is not None and isinstance(value, str):
                request.setdefault(CORE_HEADERS, {})[header] = value
