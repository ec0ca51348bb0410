"""Client input never gets a 5xx (issue 10, point 3): every input that once did, over REST, WebSocket and
gRPC, is refused with the seed's error body naming the field and the right status;
sizes are 413, never 429."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
from aiohttp import web

from inferno.adapters import websocket
from inferno.adapters.app import build_app
from inferno.core.struct_json import MAX_SCHEMA_DEPTH
from inferno.errors import error_from_rpc
from inferno.v1 import inference_service_pb2, inference_service_pb2_grpc
from tests.servers import RunningServer, free_port

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def _assert_error(response: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param", "details"}
    assert error["code"] == code, error
    assert error["message"]
    if param is not None:
        assert error["details"]["param"] == param, error
    return error


def _post_raw(http: httpx.Client, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return http.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


# Lone surrogates: JSON escapes can spell them, UTF-8 and protobuf cannot carry them.


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            CHAT,
            b'{"model": "M", "messages": [{"role": "user", "content": "\\ud800"}]}',
            "messages[0].content",
        ),
        (
            CHAT,
            b'{"model": "M", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\uDC00"]}',
            "stop[0]",
        ),
        ("/v1/completions", b'{"model": "\\ud800", "prompt": "a"}', "model"),
        ("/v1/embeddings", b'{"model": "M", "input": ["a", "b\\ud800c"]}', "input[1]"),
        ("/v1/tokenize", b'{"content": "a", "\\ud800": 1}', "body"),
        ("/v1/detokenize", b'{"tokens": [1], "model": "\\udfff"}', "model"),
        ("/v1/auth/keys", b'{"name": "\\ud800"}', "name"),
        ("/v1/convert", b'{"source_model": "\\ud800"}', "source_model"),
        ("/v1/batch", b'{"requests": [{"x": "\\ud800"}]}', "requests[0].x"),
    ],
)
def test_lone_surrogates_are_a_400_naming_the_field(
    http: httpx.Client, model_id: str, path: str, body: bytes, param: str
) -> None:
    raw = body.replace(b'"M"', json.dumps(model_id).encode())
    _assert_error(_post_raw(http, path, raw), 400, "invalid_parameters", param)


def test_a_logit_bias_key_that_is_a_digit_but_not_a_number_is_a_400(
    http: httpx.Client, model_id: str
) -> None:
    body = {"model": model_id, "messages": USER, "max_tokens": 1, "logit_bias": {"²": 1}}
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", "logit_bias")


def test_an_unhashable_response_format_type_is_a_400(http: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "messages": USER, "response_format": {"type": {}}}
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", "response_format.type")


def test_a_tool_schema_the_grammar_builder_cannot_take_is_a_400(http: httpx.Client, model_id: str) -> None:
    parameters = {"type": "object", "properties": {"a": {"type": "bogus"}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    body = {"model": model_id, "messages": USER, "max_tokens": 1, "tools": tools, "tool_choice": "required"}
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", "tools[0].function.parameters")


def test_a_tool_schema_nested_too_deep_is_a_400(http: httpx.Client, model_id: str) -> None:
    parameters = {"type": "object", "properties": {"a": _nested(900)}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    body = {"model": model_id, "messages": USER, "max_tokens": 1, "tools": tools, "tool_choice": "required"}
    error = _assert_error(
        _post_raw(http, CHAT, _dumps_deep(body)), 400, "invalid_parameters", "tools[0].function.parameters"
    )
    assert str(MAX_SCHEMA_DEPTH) in error["message"]


def test_a_response_schema_nested_too_deep_is_a_400(http: httpx.Client, model_id: str) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": _nested(900)}}
    body = {"model": model_id, "messages": USER, "max_tokens": 1, "response_format": response_format}
    _assert_error(
        _post_raw(http, CHAT, _dumps_deep(body)), 400, "invalid_parameters", "response_format.json_schema"
    )


def test_a_schema_at_the_depth_limit_is_served(http: httpx.Client, model_id: str) -> None:
    # The object itself is one level, so MAX_SCHEMA_DEPTH - 1 arrays inside it reach the limit exactly.
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": _nested(MAX_SCHEMA_DEPTH - 1)},
    }
    body = {"model": model_id, "messages": USER, "max_tokens": 1, "response_format": response_format}
    assert http.post(CHAT, json=body).status_code == 200


def test_a_deep_schema_over_grpc_is_invalid_argument_not_internal(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    params = inference_service_pb2.ChatCompletionParams(
        model=model_id, messages=[inference_service_pb2.ChatMessage(role="user", content="hi")]
    )
    params.response_format.type = inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    params.response_format.json_schema_text = json.dumps(_nested(900))
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateChatCompletion(
            inference_service_pb2.CreateChatCompletionRequest(params=params), timeout=60
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc(raised.value)
    assert (error.code, error.details["param"]) == ("invalid_parameters", "response_format.json_schema")


def test_a_number_too_large_for_a_double_is_invalid_json(http: httpx.Client, model_id: str) -> None:
    raw = b'{"model": "M", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}'
    _assert_error(
        _post_raw(http, CHAT, raw.replace(b'"M"', json.dumps(model_id).encode())), 400, "invalid_json"
    )


@pytest.mark.parametrize("bound", ["Infinity", "-Infinity", "NaN", "1e400", "1" + "0" * 400])
def test_an_unbounded_integer_range_in_a_schema_over_grpc_is_not_internal(
    grpc_channel: grpc.Channel, model_id: str, bound: str
) -> None:
    params = inference_service_pb2.ChatCompletionParams(
        model=model_id, messages=[inference_service_pb2.ChatMessage(role="user", content="hi")]
    )
    params.limits.max_tokens = 1
    params.response_format.type = inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    integer = '{"type": "integer", "minimum": ' + bound + ', "maximum": 5}'
    params.response_format.json_schema_text = '{"type": "object", "properties": {"n": ' + integer + "}}"
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    request = inference_service_pb2.CreateChatCompletionRequest(params=params)
    try:
        stub.CreateChatCompletion(request, timeout=120)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()


def _dumps_deep(body: dict[str, Any]) -> bytes:
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        return json.dumps(body).encode()
    finally:
        sys.setrecursionlimit(limit)


# Bodies, paths and sizes.


def test_a_gzip_body_that_is_not_compressed_is_a_400(http: httpx.Client) -> None:
    response = _post_raw(http, CHAT, b'{"model": "x"}', **{"Content-Encoding": "gzip"})
    _assert_error(response, 400, "invalid_parameters", "body")
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("suffix", ["", "/status", "/load", "/unload"])
def test_a_6000_character_model_id_in_the_path_is_a_400(http: httpx.Client, suffix: str) -> None:
    method = "GET" if suffix in ("", "/status") else "POST"
    response = http.request(method, "/v1/models/" + "a" * 6000 + suffix)
    _assert_error(response, 400, "invalid_parameters", "model_id")


@pytest.mark.parametrize(
    "request_",
    [
        {"url": "/v1/models?model=" + "a" * 20000},
        {"url": "/health", "headers": {"X-Big": "a" * 9000}},
    ],
    ids=["request line", "header"],
)
def test_a_request_line_or_header_over_aiohttps_limit_is_a_413_in_the_seed_body(
    http: httpx.Client, request_: dict
) -> None:
    error = _assert_error(http.get(**request_), 413, "request_too_large")
    assert "8190 bytes" in error["message"]
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("header", ["Authorization", "x-inferno-command"])
@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"Bearer \xed\xa0\x80", "Bearer é".encode()])
def test_a_forwarded_header_that_is_not_ascii_is_a_400(http: httpx.Client, header: str, value: bytes) -> None:
    _assert_error(http.get("/v1/models", headers={header: value}), 400, "invalid_parameters", header)


def test_a_nul_in_a_conversion_output_file_is_a_400(managed_http: httpx.Client) -> None:
    body = {"source_model": "second.gguf", "target_format": "gguf", "output_file": "out\u0000.gguf"}
    _assert_error(managed_http.post("/v1/convert", json=body), 400, "invalid_parameters", "output_file")


def test_a_body_over_the_cores_message_limit_is_a_413_not_a_429(http: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "a" * 5_000_000}], "max_tokens": 1}
    response = http.post(CHAT, json=body)
    _assert_error(response, 413, "request_too_large")
    assert "Retry-After" not in response.headers


def test_a_100_kb_model_name_is_a_400_not_a_429(http: httpx.Client) -> None:
    body = {"model": "m" * 100_000, "messages": USER, "max_tokens": 1}
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", "model")


def test_a_100_kb_model_name_over_grpc_is_invalid_argument(grpc_channel: grpc.Channel) -> None:
    params = inference_service_pb2.ChatCompletionParams(
        model="m" * 100_000, messages=[inference_service_pb2.ChatMessage(role="user", content="hi")]
    )
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateChatCompletion(
            inference_service_pb2.CreateChatCompletionRequest(params=params), timeout=30
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03\xff\xfe\xfd"])
def test_undecodable_protobuf_is_invalid_argument(grpc_channel: grpc.Channel, payload: bytes) -> None:
    for method in (
        "/inferno.v1.InferenceService/CreateChatCompletion",
        "/inferno.v1.InferenceService/StreamChatCompletion",
    ):
        if method.endswith("StreamChatCompletion"):
            call = grpc_channel.unary_stream(method)
            with pytest.raises(grpc.RpcError) as raised:
                list(call(payload, timeout=30))
        else:
            with pytest.raises(grpc.RpcError) as raised:
                grpc_channel.unary_unary(method)(payload, timeout=30)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert error_from_rpc(raised.value).code == "invalid_parameters"


# WebSocket frames.


async def _frames(url: str, frames: list[str], wanted: int) -> list[dict[str, Any]]:
    """Send the frames, then read until `wanted` terminal frames (chat_done, error, pong) arrived."""
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        for frame in frames:
            await socket.send_str(frame)
        while sum(f["type"] in ("chat_done", "error", "pong") for f in received) < wanted:
            message = await socket.receive(timeout=120)
            assert message.type is aiohttp.WSMsgType.TEXT, message
            received.append(json.loads(message.data))
        await socket.send_str('{"type": "ping", "id": "after"}')
        last = await socket.receive(timeout=30)
        assert json.loads(last.data) == {"type": "pong", "id": "after", "data": {}}
    return received


def _chat_frame(chat_id: Any, model_id: str, **data: Any) -> str:
    body = {"model": model_id, "messages": USER, "max_tokens": 4, **data}
    return json.dumps({"type": "chat", "id": chat_id, "data": body})


def test_bad_websocket_frames_get_errors_and_other_chats_go_on(server: RunningServer, model_id: str) -> None:
    frames = [
        _chat_frame("good", model_id),
        _chat_frame("\udc00", model_id),
        _chat_frame("format", model_id, response_format={"type": {}}),
        _chat_frame("text", model_id, messages=[{"role": "user", "content": "\ud800"}]),
        _chat_frame("bias", model_id, logit_bias={"²": 1}),
    ]
    received = asyncio.run(_frames(server.base_url.replace("http", "ws") + "/ws", frames, 5))
    ends = {f["id"]: f for f in received if f["type"] in ("chat_done", "error")}
    assert ends["good"]["type"] == "chat_done", ends["good"]
    expected = {
        "\udc00": ("invalid_parameters", "id"),
        "format": ("invalid_parameters", "response_format.type"),
        "text": ("invalid_parameters", "data.messages[0].content"),
        "bias": ("invalid_parameters", "logit_bias"),
    }
    for chat_id, (code, param) in expected.items():
        error = ends[chat_id]["data"]["error"]
        assert (error["code"], error["details"].get("param")) == (code, param), error


def test_a_websocket_token_that_is_not_ascii_is_a_400(server: RunningServer) -> None:
    frames = [json.dumps({"type": "auth", "id": "token", "data": {"api_key": "clé"}})]
    (reply,) = asyncio.run(_frames(server.base_url.replace("http", "ws") + "/ws", frames, 1))
    error = reply["data"]["error"]
    assert (reply["id"], error["code"], error["details"]["param"]) == (
        "token",
        "invalid_parameters",
        "data.api_key",
    )


def test_a_20_kb_websocket_token_is_a_413_not_a_429(server: RunningServer) -> None:
    frames = [json.dumps({"type": "auth", "id": "token", "data": {"api_key": "k" * 20_000}})]
    (reply,) = asyncio.run(_frames(server.base_url.replace("http", "ws") + "/ws", frames, 1))
    assert (reply["type"], reply["id"]) == ("error", "token")
    assert reply["data"]["error"]["code"] == "request_too_large"


# The gateway's last line of defence: a bug is a 500 (not a 400), and a WebSocket frame that hits one gets an
# error frame while the socket lives on. Both run the real gateway code in this process over the real core.


@pytest.fixture
def gateway(server: RunningServer) -> Iterator[tuple[web.Application, int]]:
    app = build_app(server.grpc_target)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug, not the client's fault")

    app.router.add_post("/broken", broken)
    yield app, free_port()


async def _serve(app: web.Application, port: int, client: Any) -> Any:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await client(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def test_an_unexpected_exception_is_a_500_internal_error(gateway: tuple[web.Application, int]) -> None:
    async def client(base: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(base + "/broken", json={}) as response:
            return response.status, await response.json()

    status, body = asyncio.run(_serve(*gateway, client))
    assert status == 500
    assert body["error"]["code"] == "internal_error"


def test_a_frame_that_hits_a_bug_gets_an_error_and_the_socket_lives(
    gateway: tuple[web.Application, int], model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = websocket.parse_chat_request

    def sometimes_broken(body: dict[str, Any]) -> Any:
        if body.get("user") == "boom":
            raise RuntimeError("a bug, not the client's fault")
        return real(body)

    monkeypatch.setattr(websocket, "parse_chat_request", sometimes_broken)
    frames = [_chat_frame("boom", model_id, user="boom"), _chat_frame("fine", model_id)]

    async def client(base: str) -> list[dict[str, Any]]:
        return await _frames(base.replace("http", "ws") + "/ws", frames, 2)

    received = asyncio.run(_serve(*gateway, client))
    ends = {f["id"]: f for f in received if f["type"] in ("chat_done", "error")}
    assert ends["boom"]["data"]["error"]["code"] == "internal_error"
    assert ends["fine"]["type"] == "chat_done"
