"""The gateway's gRPC relay: Inferno's gRPC API, served by the gateway and passed on to the cores through
Envoy, message by message, so a gRPC client keeps a status it can act on when a core dies.

Envoy alone cannot give one: once a core has started answering, Envoy can only reset the client's stream
when the core goes away, and gRPC reports a reset stream as INTERNAL. The relay sees that reset as the
end of the core and ends the client's call with UNAVAILABLE and the seed's `core_unavailable` body, as the
gateway's SSE streams do. Everything else (messages, metadata, statuses, deadlines, cancellation) passes
through unchanged; calls without routing metadata get the model and route key the gateway would send.

Envoy sends the relay only calls that do not carry x-inferno-hop (inferno/envoy_config.py), and every call
the gateway makes carries it, so the relay's own calls go straight to the cores.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from inferno.call_metadata import (
    CLIENT_ADDRESS_MAC_METADATA,
    CLIENT_ADDRESS_METADATA,
    peer_address,
    signed_client_address,
)
from inferno.envoy_config import GATEWAY_HOP_HEADER, MODEL_HEADER
from inferno.errors import InfernoError
from inferno.grpc_binding import bind_grpc_port
from inferno.grpc_services import SERVICES
from inferno.security_config import SecurityConfig

from .core_client import CHANNEL_OPTIONS, reset_by_proxy
from .routing_key import routing_metadata

logger = logging.getLogger(__name__)

# Metadata that belongs to one hop (HTTP/2 and gRPC framing, Envoy's own headers), never passed on; the
# core's error details (grpc-status-details-bin) are the one grpc- key that is.
_HOP_PREFIXES = (":", "grpc-", "x-envoy-", "x-forwarded-")
# A client address comes from the relay itself, signed (inferno/call_metadata.py), never from the client.
_HOP_NAMES = frozenset(
    {"te", "content-type", "user-agent", "host", GATEWAY_HOP_HEADER, CLIENT_ADDRESS_METADATA,
     CLIENT_ADDRESS_MAC_METADATA}
)  # fmt: skip
_STATUS_DETAILS = "grpc-status-details-bin"

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class RelayedMethod:
    path: str
    server_streaming: bool
    request_type: type[Message]


def relayed_methods() -> dict[str, RelayedMethod]:
    """Every method of Inferno's services, by the path gRPC calls it on."""
    methods = {}
    for service in SERVICES:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            request_type = message_factory.GetMessageClass(method.input_type)
            methods[path] = RelayedMethod(path, method.server_streaming, request_type)
    return methods


def _passed_on(metadata: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if key == _STATUS_DETAILS or (key not in _HOP_NAMES and not key.startswith(_HOP_PREFIXES))
    )


class GrpcRelay(grpc.GenericRpcHandler):
    """The handler of every relayed method; other methods are UNIMPLEMENTED."""

    def __init__(self, channel: grpc.aio.Channel, security: SecurityConfig) -> None:
        self._channel = channel
        self._methods = relayed_methods()
        self._security = security

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = self._methods.get(details.method)
        if method is None:
            return None
        # No (de)serializers: requests and replies travel as the bytes the client and the core sent.
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(partial(self._stream, method))
        return grpc.unary_unary_rpc_method_handler(partial(self._unary, method))

    async def _unary(self, method: RelayedMethod, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        relayed: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method.path)
        metadata = _metadata(method, request, context, self._security)
        call = relayed(request, metadata=metadata, timeout=context.time_remaining())
        try:
            reply: bytes = await call
        except grpc.aio.AioRpcError as error:
            await _fail(context, error)
            raise  # not reached: _fail aborts the call
        await context.send_initial_metadata(_passed_on(await call.initial_metadata()))
        context.set_trailing_metadata(_passed_on(await call.trailing_metadata()))
        return reply

    async def _stream(
        self, method: RelayedMethod, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        relayed: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self._channel.unary_stream(method.path)
        metadata = _metadata(method, request, context, self._security)
        call = relayed(request, metadata=metadata, timeout=context.time_remaining())
        try:
            started = False
            async for reply in call:
                if not started:
                    started = True
                    await context.send_initial_metadata(_passed_on(await call.initial_metadata()))
                yield reply
            context.set_trailing_metadata(_passed_on(await call.trailing_metadata()))
        except grpc.aio.AioRpcError as error:
            await _fail(context, error)
        finally:
            # The client went away, or the call ended: the core frees the sequence at once.
            call.cancel()


def _metadata(
    method: RelayedMethod, request: bytes, context: grpc.aio.ServicerContext, security: SecurityConfig
) -> Metadata:
    received = context.invocation_metadata() or ()
    metadata = _passed_on(received)
    if all(key != MODEL_HEADER for key, _ in metadata):
        # A malformed request goes on without routing metadata: the core answers it with its own error.
        with contextlib.suppress(DecodeError):
            metadata += routing_metadata(method.request_type.FromString(request))
    # The relay's caller (Envoy in a fleet), or the client it forwards for when trusted_proxies has it: the
    # address the core can vouch for.
    forwarded_for = [str(value) for key, value in received if key == "x-forwarded-for"]
    client = security.trusted_proxies.client_address(peer_address(context.peer()), forwarded_for)
    caller = signed_client_address(client, security.hop_secret)
    return (*metadata, *caller, (GATEWAY_HOP_HEADER, "relay"))


async def _fail(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError) -> None:
    """End the client's call as the core's call ended; a reset by Envoy (the core died) as UNAVAILABLE."""
    if reset_by_proxy(error):
        unavailable = InfernoError("core_unavailable", "the inference core stopped mid-call; retry")
        await context.abort_with_status(rpc_status.to_status(unavailable.to_grpc_status()))
    await context.abort(error.code(), error.details() or "", _passed_on(error.trailing_metadata()))


class RelayServer:
    """The relay's gRPC server, with the grpc.health.v1 service Envoy checks: SERVING until the gateway
    drains."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer) -> None:
        self._server = server
        self._health = health_servicer

    async def drain(self, grace_s: float) -> None:
        """NOT_SERVING, no new calls, and calls in flight get grace_s to finish."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)


async def start_relay(
    channel: grpc.aio.Channel, host: str, port: int, security: SecurityConfig
) -> RelayServer:
    """Serve the relay on host:port (TLS when [security] has a certificate)."""
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers((GrpcRelay(channel, security),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind_grpc_port(server, host, port, security, "gRPC relay")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    logger.info("gateway relaying gRPC on %s:%d", host, port)
    return RelayServer(server, health_servicer)
