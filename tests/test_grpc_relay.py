"""The gateway's gRPC relay (adapters/grpc_relay.py): a real `inferno gateway --grpc-port` in front of the
suite's real core gives the same answers, errors and cancellation as the core asked directly; an in-process
upstream shows which metadata the relay passes on and adds. Through Envoy with a core killed mid-stream:
tests/test_fleet.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.call_metadata import (
    CLIENT_ADDRESS_MAC_METADATA,
    CLIENT_ADDRESS_METADATA,
    trusted_client_address,
)
from inferno.envoy_config import GATEWAY_HOP_HEADER, MODEL_HEADER, ROUTE_KEY_HEADER
from inferno.errors import error_from_rpc
from inferno.security_config import SecurityConfig
from inferno.trusted_proxies import TrustedProxies
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc, model_service_pb2, model_service_pb2_grpc
from tests.fleet_helpers import InfernoProcess
from tests.grpc_helpers import chat_params, engine_stats
from tests.servers import RunningServer, free_port

_STREAM = "/inferno.v1.InferenceService/StreamChatCompletion"


def _wait_serving(channel: grpc.Channel, timeout_s: float = 60) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (
                stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError("the relay did not report SERVING")


@pytest.fixture(scope="module")
def relay(server: RunningServer) -> Iterator[grpc.Channel]:
    relay_port = free_port()
    http_port = free_port()
    gateway = InfernoProcess(
        ["gateway", "--core", server.grpc_target, "--port", str(http_port), "--grpc-port", str(relay_port)],
        relay_port,
        {},
    )
    gateway.start()
    try:
        with gateway.channel() as channel:
            _wait_serving(channel)
            yield channel
    finally:
        gateway.stop()


def _stream_text(channel: grpc.Channel, request: pb.StreamChatCompletionRequest) -> tuple[str, int]:
    stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
    text, completion_tokens = "", 0
    for chunk in stub.StreamChatCompletion(request, timeout=120):
        text += chunk.delta.content
        if chunk.HasField("usage"):
            completion_tokens = chunk.usage.completion_tokens
    return text, completion_tokens


def test_a_chat_stream_through_the_relay_matches_the_core(
    relay: grpc.Channel, grpc_channel: grpc.Channel, model_id: str
) -> None:
    request = pb.StreamChatCompletionRequest(
        params=chat_params(model_id, "Name three colours.", max_tokens=24)
    )
    relayed = _stream_text(relay, request)
    assert relayed == _stream_text(grpc_channel, request)
    assert relayed[0] and relayed[1] > 0


def test_a_unary_call_through_the_relay_matches_the_core(
    relay: grpc.Channel, grpc_channel: grpc.Channel
) -> None:
    request = model_service_pb2.ListModelsRequest()
    relayed = model_service_pb2_grpc.ModelServiceStub(relay).ListModels(request, timeout=30)
    direct = model_service_pb2_grpc.ModelServiceStub(grpc_channel).ListModels(request, timeout=30)
    assert [model.id for model in relayed.models] == [model.id for model in direct.models]


@pytest.mark.parametrize("stream", [False, True])
def test_the_cores_error_reaches_the_client_with_its_code_and_details(
    relay: grpc.Channel, model_id: str, stream: bool
) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(relay)
    params = chat_params("no-such-model", "hi")
    with pytest.raises(grpc.RpcError) as caught:
        if stream:
            list(stub.StreamChatCompletion(pb.StreamChatCompletionRequest(params=params), timeout=30))
        else:
            stub.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params), timeout=30)
    error = caught.value
    assert error.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    converted = error_from_rpc(error)
    assert converted.code == "model_not_found", converted
    assert model_id in converted.details["available_models"], converted.details


def test_a_malformed_request_gets_the_cores_answer(relay: grpc.Channel) -> None:
    call = relay.unary_unary(
        "/inferno.v1.InferenceService/CreateChatCompletion",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\xff\xff\xff", timeout=30)
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)  # type: ignore[attr-defined]


def test_an_unknown_method_is_unimplemented(relay: grpc.Channel) -> None:
    call = relay.unary_unary("/inferno.v1.NoSuchService/Nothing")
    with pytest.raises(grpc.RpcError) as caught:
        call(b"", timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_a_client_that_cancels_through_the_relay_frees_the_sequence_in_the_core(
    relay: grpc.Channel, grpc_channel: grpc.Channel, model_id: str
) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(relay)
    request = pb.StreamChatCompletionRequest(
        params=chat_params(model_id, "Tell a long story.", max_tokens=400)
    )
    stream = stub.StreamChatCompletion(request, timeout=120)
    next(stream)
    assert engine_stats(grpc_channel, model_id).running_sequences >= 1
    generated_before = engine_stats(grpc_channel, model_id).generated_tokens_total
    stream.cancel()
    deadline = time.monotonic() + 10
    while engine_stats(grpc_channel, model_id).running_sequences and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine_stats(grpc_channel, model_id)
    assert stats.running_sequences == 0
    assert stats.generated_tokens_total - generated_before < 300, "the sequence ran on after the cancel"


# --- which metadata the relay passes on, against an upstream that records it --------------------------


class _RecordingUpstream(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.metadata: dict[str, str] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> None:
            self.metadata = {key: value for key, value in context.invocation_metadata() or ()}
            await context.write(b"")

        return grpc.unary_stream_rpc_method_handler(answer)


def _relayed_metadata(
    model_id: str, security: SecurityConfig, metadata: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """The metadata an upstream receives for one call through the relay that carries metadata."""
    from inferno.adapters.grpc_relay import start_relay

    async def scenario() -> dict[str, str]:
        upstream = grpc.aio.server()
        recorder = _RecordingUpstream()
        upstream.add_generic_rpc_handlers((recorder,))
        upstream_port = upstream.add_insecure_port("127.0.0.1:0")
        await upstream.start()
        relay_port = free_port()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}") as to_upstream:
            relay = await start_relay(to_upstream, "127.0.0.1", relay_port, security)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}") as client:
                call = client.unary_stream(
                    _STREAM,
                    request_serializer=pb.StreamChatCompletionRequest.SerializeToString,
                    response_deserializer=None,
                )
                request = pb.StreamChatCompletionRequest(params=chat_params(model_id, "hello"))
                async for _ in call(request, metadata=metadata, timeout=10):
                    pass
            await relay.drain(0)
        await upstream.stop(0)
        return recorder.metadata

    return asyncio.run(scenario())


def test_the_relay_adds_routing_its_hop_and_its_callers_signed_address_and_drops_envoys_headers(
    model_id: str,
) -> None:
    metadata = (
        ("authorization", "Bearer k"),
        ("x-envoy-attempt-count", "1"),
        (CLIENT_ADDRESS_METADATA, "10.9.8.7"),  # a claim, which the relay drops
        (CLIENT_ADDRESS_MAC_METADATA, "0" * 64),
        ("x-forwarded-for", "10.9.8.6"),  # believed only from a trusted proxy
    )
    seen = _relayed_metadata(model_id, SecurityConfig(hop_secret="the-secret"), metadata)
    assert seen["authorization"] == "Bearer k"
    assert seen[MODEL_HEADER] == model_id
    assert len(seen[ROUTE_KEY_HEADER]) == 16
    assert seen[GATEWAY_HOP_HEADER] == "relay"
    assert "x-envoy-attempt-count" not in seen
    assert trusted_client_address(seen, "the-secret") == "127.0.0.1", "the relay's caller, signed"


def test_behind_a_trusted_proxy_the_relay_signs_the_address_the_proxy_forwards(model_id: str) -> None:
    """Envoy appends the address its caller connected from to X-Forwarded-For; from a trusted proxy the
    relay signs the right-most entry that is not a proxy's, whatever the client wrote further left."""
    security = SecurityConfig(
        hop_secret="the-secret", trusted_proxies=TrustedProxies.parse(["127.0.0.1", "10.1.0.0/16"])
    )
    metadata = (("x-forwarded-for", "10.9.8.7, 198.51.100.7, 10.1.2.3"),)
    seen = _relayed_metadata(model_id, security, metadata)
    assert trusted_client_address(seen, "the-secret") == "198.51.100.7"
