"""The seed API documents' examples, walked against live servers: every request they show (curl commands, JSON
bodies, HTTP request lines, client code, WebSocket messages) is sent with the model ids swapped for ours, and
each response's status, field names and types are checked against the shape the seed shows (not its values).

The seed documents are kept in tests/seed_api/ (copies of ../shared/seed-api/, the project's requirements).
Examples are parsed out of the fenced blocks where they are machine-readable; WALKED maps every fenced block
of both files to the test that walks it, so a block added to the seed fails test_every_seed_block_is_walked
until a test covers it.

Adaptations, the same for every example: model ids (SEED_MODEL_IDS); max_tokens capped at MAX_TOKENS so the
suite stays fast; placeholder bearer keys are sent as they are to the server without authentication, and real
keys or JWTs replace them on the secured server for the examples about authentication.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import httpx
import pytest
from openai import OpenAI

from inferno.core.embedded import EMBEDDED_MODEL_ID, EMBEDDING_MODEL_ID
from inferno.errors import ERROR_KINDS, InfernoError
from inferno.security_config import load_security_config
from tests.security_fixtures import SecuredServer
from tests.servers import RunningServer
from tests.tiny_llama import write_tiny_llama

SEED_DIR = Path(__file__).parent / "seed_api"
SHARED_SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed-api"
REFERENCE = "000_ad682d6e6c479562.txt"  # the Inferno API reference
DEPLOYMENT = "004_5fbdd002c8b42997.txt"  # a second deployment's API page

SEED_MODEL_IDS = {
    "gpt2": EMBEDDED_MODEL_ID,
    "llama-2-7b": EMBEDDED_MODEL_ID,
    "deepseek-v3.2": EMBEDDED_MODEL_ID,
    "text-embedding-ada-002": EMBEDDING_MODEL_ID,
}
MAX_TOKENS = 8
PLACEHOLDER_KEYS = ("your-api-key", "jwt-token", "sk-local")


# --- the seed, parsed ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedBlock:
    file: str
    # The line of the opening fence, counted from 1.
    line: int
    lang: str
    text: str


@functools.cache
def seed_blocks(file: str) -> tuple[SeedBlock, ...]:
    blocks: list[SeedBlock] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate((SEED_DIR / file).read_text().splitlines(), start=1):
        if not line.startswith("```"):
            body.append(line)
        elif opened is None:
            opened, body = (number, line[3:].strip()), []
        else:
            blocks.append(SeedBlock(file, opened[0], opened[1], "\n".join(body)))
            opened = None
    return tuple(blocks)


def block(file: str, line: int) -> SeedBlock:
    for candidate in seed_blocks(file):
        if candidate.line == line:
            return candidate
    raise AssertionError(f"{file} has no fenced block at line {line}: the seed changed, update WALKED")


def seed_json(text: str) -> Any:
    """A JSON block of the seed: `/* ... */` placeholders and `, ...` elisions removed."""
    text = re.sub(r"/\*.*?\*/", "", text)
    text = re.sub(r",\s*\.\.\.", "", text)
    return json.loads(text)


def json_at(file: str, line: int) -> Any:
    return seed_json(block(file, line).text)


def adapt(value: Any) -> Any:
    """A seed request with our model ids and max_tokens capped."""
    if isinstance(value, dict):
        adapted = {key: adapt(item) for key, item in value.items()}
        if isinstance(adapted.get("model"), str):
            adapted["model"] = SEED_MODEL_IDS.get(adapted["model"], adapted["model"])
        if "max_tokens" in adapted:
            adapted["max_tokens"] = min(adapted["max_tokens"], MAX_TOKENS)
        elif "messages" in adapted or "prompt" in adapted:
            adapted["max_tokens"] = MAX_TOKENS
        return adapted
    if isinstance(value, list):
        return [adapt(item) for item in value]
    return value


def adapt_path(path: str) -> str:
    return "/".join(SEED_MODEL_IDS.get(part, part) for part in path.split("/"))


@dataclass(frozen=True)
class SeedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def curl_requests(text: str) -> list[SeedRequest]:
    """The curl commands of a bash block, in order."""
    tokens = shlex.split(re.sub(r"\\{1,2}\n", " ", text), comments=True)
    commands: list[list[str]] = []
    for token in tokens:
        if token == "curl":
            commands.append([])
        elif commands:
            commands[-1].append(token)
    requests = []
    for args in commands:
        method, headers, body, url = "", {}, None, ""
        words = iter(args)
        for word in words:
            if word == "-X":
                method = next(words)
            elif word == "-H":
                name, _, value = next(words).partition(":")
                headers[name.strip()] = value.strip()
            elif word == "-d":
                body = json.loads(next(words))
            elif word.startswith("http"):
                url = word
        method = method or ("POST" if body is not None else "GET")
        requests.append(SeedRequest(method, adapt_path(urlparse(url).path), headers, adapt(body)))
    return requests


def http_request(file: str, line: int, body_line: int | None = None) -> SeedRequest:
    """An ```http block (request line and headers), with the JSON body block that follows it."""
    first, *header_lines = block(file, line).text.strip().splitlines()
    method, path = first.split()
    headers = dict(
        (name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in header_lines)
    )
    body = adapt(json_at(file, body_line)) if body_line else None
    return SeedRequest(method, adapt_path(path), headers, body)


def sse_lines(file: str, line: int) -> list[Any]:
    """The seed's stream example: each `data:` payload, parsed; [DONE] stays a string."""
    payloads = [
        line[len("data: ") :] for line in block(file, line).text.splitlines() if line.startswith("data: ")
    ]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def seed_status_codes() -> set[int]:
    """The status codes of the reference's "HTTP Status Codes" table."""
    text = (SEED_DIR / REFERENCE).read_text()
    table = text.split("### HTTP Status Codes", 1)[1].split("###", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d{3}) \|", table, re.MULTILINE)}


def seed_error_codes() -> list[str]:
    text = (SEED_DIR / REFERENCE).read_text()
    table = text.split("### Common Error Codes", 1)[1].split("##", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)


# --- shapes -------------------------------------------------------------------------------------------------


def assert_shape(actual: Any, expected: Any, nullable: frozenset[str] = frozenset(), path: str = "$") -> None:
    """actual has every field of expected, each of the same JSON type, recursively; arrays are checked item by
    item against the seed's first item. `object` values (discriminators) must be equal. A seed null takes
    any value; paths in nullable may be null (a measurement this machine does not have)."""
    if expected is None or (actual is None and path in nullable):
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        missing = sorted(set(expected) - set(actual))
        assert not missing, f"{path}: missing {missing} in {actual!r}"
        for key, value in expected.items():
            if key == "object":
                assert actual[key] == value, f"{path}.object: {actual[key]!r}, the seed says {value!r}"
            assert_shape(actual[key], value, nullable, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {actual!r}"
        if expected:
            assert actual, f"{path}: empty, the seed shows items"
            for item in actual:
                assert_shape(item, expected[0], nullable, f"{path}[]")
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), f"{path}: expected a boolean, got {actual!r}"
    elif isinstance(expected, int | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), (
            f"{path}: expected a number, got {actual!r}"
        )
    else:
        assert isinstance(actual, str), f"{path}: expected a string, got {actual!r}"


def assert_status(reply: httpx.Response, expected: int) -> None:
    assert reply.status_code in seed_status_codes(), f"{reply.status_code} is not in the seed's table"
    assert reply.status_code == expected, reply.text


def send(client: httpx.Client, request: SeedRequest, **headers: str) -> httpx.Response:
    return client.request(
        request.method, request.path, json=request.body, headers={**request.headers, **headers}
    )


def streamed(client: httpx.Client, request: SeedRequest) -> tuple[httpx.Response, list[Any]]:
    """The SSE payloads of a streaming request, parsed like the seed's (a [DONE] string at the end)."""
    payloads: list[Any] = []
    with client.stream(request.method, request.path, json=request.body, headers=request.headers) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return reply, payloads


def assert_stream_like_the_seed(payloads: list[Any], seed: list[Any]) -> None:
    assert seed[-1] == "[DONE]" and payloads[-1] == "[DONE]" and "[DONE]" not in payloads[:-1]
    chunks = payloads[:-1]
    assert chunks
    for chunk in chunks:
        # A delta carries a role, content or nothing (the last chunk): compare the envelope, then the content.
        assert_shape(chunk, {**seed[0], "choices": [{**seed[0]["choices"][0], "delta": {}}]})
    assert any(isinstance(c["choices"][0]["delta"].get("content"), str) for c in chunks)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_key(secured: SecuredServer) -> str:
    """A real API key standing in for the seed's `your-api-key`."""
    return secured.create_key(["inference", "model_management"])[1]


# --- every block is walked ----------------------------------------------------------------------------------

# (file, fence line) -> the test that walks that block.
WALKED: dict[tuple[str, int], str] = {
    (REFERENCE, 9): "test_authentication_examples",
    (REFERENCE, 18): "test_quick_start",
    (REFERENCE, 37): "test_chat_completion_request",
    (REFERENCE, 66): "test_chat_completion_request",
    (REFERENCE, 91): "test_chat_completion_streaming",
    (REFERENCE, 100): "test_text_completion_request",
    (REFERENCE, 134): "test_text_completion_request",
    (REFERENCE, 159): "test_embeddings_request",
    (REFERENCE, 171): "test_embeddings_request",
    (REFERENCE, 197): "test_models_list",
    (REFERENCE, 225): "test_model_by_id",
    (REFERENCE, 242): "test_load_and_unload",
    (REFERENCE, 246): "test_load_and_unload",
    (REFERENCE, 258): "test_load_and_unload",
    (REFERENCE, 264): "test_model_status",
    (REFERENCE, 282): "test_batch",
    (REFERENCE, 299): "test_batch",
    (REFERENCE, 320): "test_health",
    (REFERENCE, 336): "test_metrics",
    (REFERENCE, 357): "test_conversion",
    (REFERENCE, 366): "test_conversion",
    (REFERENCE, 375): "test_conversion",
    (REFERENCE, 387): "test_generate_api_key",
    (REFERENCE, 395): "test_generate_api_key",
    (REFERENCE, 405): "test_user_information",
    (REFERENCE, 421): "test_websocket_message_format",
    (REFERENCE, 431): "test_websocket_chat_streaming",
    (REFERENCE, 445): "test_websocket_chat_streaming",
    (REFERENCE, 454): "test_websocket_live_metrics",
    (REFERENCE, 465): "test_websocket_live_metrics",
    (REFERENCE, 481): "test_websocket_model_status",
    (REFERENCE, 488): "test_websocket_model_status",
    (REFERENCE, 512): "test_error_response_format",
    (REFERENCE, 535): "test_python_openai_example",
    (REFERENCE, 567): "test_javascript_fetch_examples",
    (REFERENCE, 624): "test_curl_examples",
    (REFERENCE, 661): "test_rust_reqwest_example",
    (REFERENCE, 689): "test_rate_limit_headers",
    (REFERENCE, 696): "test_rate_limit_configuration",
    (DEPLOYMENT, 7): "test_deployment_python_example",  # the base URL: every client example uses it
    (DEPLOYMENT, 15): "test_deployment_chat_completion",  # the placeholder bearer key
    (DEPLOYMENT, 23): "test_deployment_health",
    (DEPLOYMENT, 28): "test_deployment_health",
    (DEPLOYMENT, 39): "test_deployment_models",
    (DEPLOYMENT, 44): "test_deployment_models",
    (DEPLOYMENT, 60): "test_deployment_chat_completion",
    (DEPLOYMENT, 67): "test_deployment_chat_completion",
    (DEPLOYMENT, 81): "test_deployment_chat_completion",
    (DEPLOYMENT, 109): "test_deployment_streaming",
    (DEPLOYMENT, 121): "test_deployment_streaming",
    (DEPLOYMENT, 157): "test_deployment_model_not_ready",
    (DEPLOYMENT, 171): "test_deployment_gpu_out_of_memory_shape",
    (DEPLOYMENT, 185): "test_deployment_python_example",
    (DEPLOYMENT, 203): "test_deployment_curl_example",
    (DEPLOYMENT, 215): "test_deployment_javascript_example",
}


def test_every_seed_block_is_walked() -> None:
    found = {(b.file, b.line) for file in (REFERENCE, DEPLOYMENT) for b in seed_blocks(file)}
    assert sorted(found - WALKED.keys()) == [], "seed blocks no test walks: add them to WALKED"
    assert sorted(WALKED.keys() - found) == [], "WALKED names blocks the seed no longer has"
    assert set(WALKED.values()) <= set(globals()), "WALKED names a test that does not exist"


def test_the_seed_copies_match_the_shared_seed() -> None:
    """Where the shared requirements folder is present (a checkout beside ../shared), the copies equal it."""
    assert sorted(p.name for p in SEED_DIR.iterdir()) == sorted([REFERENCE, DEPLOYMENT])
    if SHARED_SEED_DIR.is_dir():
        for name in (REFERENCE, DEPLOYMENT):
            assert (SEED_DIR / name).read_text() == (SHARED_SEED_DIR / name).read_text(), name


# --- OpenAI-compatible endpoints (reference) ----------------------------------------------------------------


def test_authentication_examples(http: httpx.Client, secured: SecuredServer, secured_key: str) -> None:
    """000:9: no authentication, an API key, a JWT: each lists the models."""
    requests = curl_requests(block(REFERENCE, 9).text)
    assert [(r.method, r.path) for r in requests] == [("GET", "/v1/models")] * 3
    shape = json_at(REFERENCE, 197)
    for request in requests:  # placeholders go to the server without authentication, which ignores them
        reply = send(http, request)
        assert_status(reply, 200)
        assert_shape(reply.json(), shape)
    real = {"your-api-key": secured_key, "jwt-token": secured.token()}
    with secured.client() as client:
        for request in requests:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            headers = {"Authorization": f"Bearer {real[sent]}"} if sent else {}
            reply = send(client, request, **headers)
            if sent:
                assert_status(reply, 200)
                assert_shape(reply.json(), shape)
            else:  # the secured server asks for credentials, with a Bearer challenge
                assert_status(reply, 401)
                assert reply.headers["WWW-Authenticate"].startswith("Bearer")
                assert_shape(reply.json(), {"error": {**json_at(REFERENCE, 512)["error"], "details": {}}})


def test_quick_start(http: httpx.Client) -> None:
    """000:18: list the models, then a chat completion."""
    listing, chat = curl_requests(block(REFERENCE, 18).text)
    reply = send(http, listing)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 197))
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    reply = send(http, chat)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 66))


def test_chat_completion_request(http: httpx.Client) -> None:
    """000:37 -> 000:66."""
    reply = http.post("/v1/chat/completions", json=adapt(json_at(REFERENCE, 37)))
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 66))


def test_chat_completion_streaming(http: httpx.Client) -> None:
    """000:37 with stream true -> the stream of 000:91."""
    body = {**adapt(json_at(REFERENCE, 37)), "stream": True}
    reply, payloads = streamed(http, SeedRequest("POST", "/v1/chat/completions", {}, body))
    assert_status(reply, 200)
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert_stream_like_the_seed(payloads, sse_lines(REFERENCE, 91))
    for chunk in payloads[:-1]:
        assert chunk["object"] == "chat.completion.chunk"


def test_text_completion_request(http: httpx.Client) -> None:
    """000:100 -> 000:134."""
    reply = http.post("/v1/completions", json=adapt(json_at(REFERENCE, 100)))
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 134))


def test_embeddings_request(http: httpx.Client) -> None:
    """000:159 -> 000:171, one embedding per input."""
    request = adapt(json_at(REFERENCE, 159))
    reply = http.post("/v1/embeddings", json=request)
    assert_status(reply, 200)
    body = reply.json()
    assert_shape(body, json_at(REFERENCE, 171))
    assert [item["index"] for item in body["data"]] == list(range(len(request["input"])))


def test_models_list(http: httpx.Client) -> None:
    """GET /v1/models -> 000:197, every model listed with a real creation time."""
    reply = http.get("/v1/models")
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 197))
    assert all(model["created"] > 0 for model in reply.json()["data"])


def test_model_by_id(http: httpx.Client) -> None:
    """GET /v1/models/{model_id} -> 000:225."""
    reply = http.get(f"/v1/models/{EMBEDDED_MODEL_ID}")
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 225))


def test_load_and_unload(http: httpx.Client) -> None:
    """000:242 (load) -> 000:246; 000:258 (unload), which shows no response: 200, and the model's status
    says unloaded until the load that follows."""
    (load,) = curl_requests(block(REFERENCE, 242).text)
    (unload,) = curl_requests(block(REFERENCE, 258).text)
    try:
        reply = send(http, unload)
        assert_status(reply, 200)
        assert http.get(f"/v1/models/{EMBEDDED_MODEL_ID}/status").json()["status"] != "loaded"
    finally:
        reply = send(http, load)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 246))


def test_model_status(http: httpx.Client) -> None:
    """GET /v1/models/{model_id}/status -> 000:264, after a request so that it has been used."""
    http.post(
        "/v1/chat/completions",
        json=adapt({"model": "gpt2", "messages": [{"role": "user", "content": "Hello!"}]}),
    )
    reply = http.get(f"/v1/models/{EMBEDDED_MODEL_ID}/status")
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 264))


def test_batch(http: httpx.Client) -> None:
    """000:282 -> 000:299, one response per request, in order."""
    request = adapt(json_at(REFERENCE, 282))
    reply = http.post("/v1/batch", json=request)
    assert_status(reply, 200)
    body = reply.json()
    assert_shape(body, json_at(REFERENCE, 299))
    assert [r["id"] for r in body["responses"]] == [r["id"] for r in request["requests"]]


def test_health(http: httpx.Client) -> None:
    """GET /health -> 000:320 (GPU usage is null on a machine without one)."""
    reply = http.get("/health")
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 320), frozenset({"$.system.gpu_usage"}))


def _metric_families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, re.MULTILINE))


def _samples(text: str) -> list[tuple[str, set[str]]]:
    """(name, label names) of each sample line."""
    samples = []
    for name, labels in re.findall(r"^(\w+)(?:\{([^}]*)\})? \S+$", text, re.MULTILINE):
        samples.append((name, set(re.findall(r"(\w+)=\"", labels))))
    return samples


def test_metrics(server: RunningServer, http: httpx.Client) -> None:
    """GET /metrics -> 000:336: each family of the seed with its type, each sample with the seed's labels,
    after a chat request and a CLI command against the server (`inferno models list`) have been counted."""
    http.post(
        "/v1/chat/completions",
        json=adapt({"model": "gpt2", "messages": [{"role": "user", "content": "Hello!"}]}),
    )
    command = [sys.executable, "-m", "inferno.cli", "models", "list", "--core", server.grpc_target]
    assert subprocess.run(command, capture_output=True, timeout=60, check=False).returncode == 0
    reply = http.get("/metrics")
    assert_status(reply, 200)
    seed = block(REFERENCE, 336).text
    live_families, live_samples = _metric_families(reply.text), _samples(reply.text)
    for name, kind in _metric_families(seed).items():
        assert live_families.get(name) == kind, f"{name}: {live_families.get(name)}, the seed says {kind}"
    for name, labels in _samples(seed):
        assert any(n == name and labels <= live for n, live in live_samples), f"no {name} with {labels}"


def test_conversion(managed_http: httpx.Client, managed_root: Path) -> None:
    """000:357 -> 000:366, then GET /v1/convert/{job_id} -> 000:375 once completed. The source is a small
    Hugging Face folder in the models directory instead of the seed's `model.pt`. estimated_duration may be
    null before the converter has measured its pace."""
    write_tiny_llama(managed_root / "models" / "seed-example")
    request = {**json_at(REFERENCE, 357), "source_model": "seed-example"}
    reply = managed_http.post("/v1/convert", json=request)
    assert reply.status_code in (200, 201) and reply.status_code in seed_status_codes(), reply.text
    created = reply.json()
    assert_shape(created, json_at(REFERENCE, 366), frozenset({"$.estimated_duration"}))
    deadline = time.monotonic() + 120
    while True:
        reply = managed_http.get(f"/v1/convert/{created['job_id']}")
        assert_status(reply, 200)
        if reply.json()["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reply.json()["status"] == "completed", reply.json()
    assert_shape(reply.json(), json_at(REFERENCE, 375))


# --- keys and users (reference), on the secured server ------------------------------------------------------


def test_generate_api_key(secured: SecuredServer) -> None:
    """000:387 -> 000:395, with the admin key; the new key then works."""
    with secured.client(secured.admin_key) as admin:
        reply = admin.post("/v1/auth/keys", json=json_at(REFERENCE, 387))
    assert_status(reply, 201)
    assert_shape(reply.json(), json_at(REFERENCE, 395))
    with secured.client(reply.json()["api_key"]) as user:
        assert user.get("/v1/models").status_code == 200


def test_user_information(secured: SecuredServer, secured_key: str) -> None:
    """GET /v1/auth/user -> 000:405, for a key that has been used (so it has a last login)."""
    with secured.client(secured_key) as user:
        assert user.get("/v1/models").status_code == 200
        reply = user.get("/v1/auth/user")
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 405))


# --- WebSocket (reference) ----------------------------------------------------------------------------------


def _ws_url(server: RunningServer) -> str:
    return server.base_url.replace("http", "ws", 1) + "/ws"


async def _receive(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 30) -> dict[str, Any]:
    """The next message of type kind (others, such as updates of another subscription, are passed over)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if message.get("type") == kind or message.get("type") == "error":
            return dict(message)


def test_websocket_message_format(server: RunningServer) -> None:
    """000:421: every message the server sends has type, id and an object for data."""
    envelope = json_at(REFERENCE, 421)
    request = adapt(json_at(REFERENCE, 431))
    request["data"] = adapt(request["data"])

    async def walk() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(_ws_url(server)) as ws:
            await ws.send_json(request)
            received = [await _receive(ws, "chat_chunk")]
            while received[-1]["type"] == "chat_chunk":
                received.append(await ws.receive_json(timeout=30))
            return received

    for message in asyncio.run(walk()):
        assert_shape(message, {**envelope, "data": {}})
        assert message["id"] == request["id"]


def test_websocket_chat_streaming(server: RunningServer) -> None:
    """000:431 -> the chunks and the done message of 000:445."""
    request = adapt(json_at(REFERENCE, 431))
    request["data"] = adapt(request["data"])
    seed = [json.loads(line) for line in block(REFERENCE, 445).text.splitlines()]

    async def walk() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(_ws_url(server)) as ws:
            await ws.send_json(request)
            received = [await _receive(ws, "chat_chunk")]
            while received[-1]["type"] == "chat_chunk":
                received.append(await ws.receive_json(timeout=30))
            return received

    *chunks, done = asyncio.run(walk())
    assert chunks and all(c["type"] == seed[0]["type"] for c in chunks)
    for chunk in chunks:
        assert_shape(chunk, {**seed[0], "data": {"delta": {}}})
        assert chunk["id"] == request["id"]
    assert any(isinstance(c["data"]["delta"].get("content"), str) for c in chunks)
    assert done["type"] == seed[-1]["type"] and done["id"] == request["id"]
    assert_shape(done, seed[-1])


def test_websocket_live_metrics(server: RunningServer) -> None:
    """000:454 -> 000:465 (GPU null on a machine without one)."""
    request = json_at(REFERENCE, 454)
    seed = json_at(REFERENCE, 465)

    async def walk() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.ws_connect(_ws_url(server)) as ws:
            await ws.send_json(request)
            return await _receive(ws, seed["type"], timeout=10)

    update = asyncio.run(walk())
    assert update["type"] == seed["type"] and update["id"] == request["id"]
    assert_shape(update, seed, frozenset({"$.data.gpu"}))


def test_websocket_model_status(server: RunningServer, http: httpx.Client) -> None:
    """000:481 -> 000:488 while the embedding model is unloaded and loaded again: updates with the seed's
    fields, "loading" ones with a progress and (once it can be estimated) an eta, the last one "loaded"."""
    request = json_at(REFERENCE, 481)
    seed = json_at(REFERENCE, 488)
    path = f"/v1/models/{EMBEDDING_MODEL_ID}"

    async def walk() -> list[dict[str, Any]]:
        updates: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(_ws_url(server)) as ws:
            await ws.send_json(request)
            assert http.post(f"{path}/unload").status_code == 200
            loading = asyncio.create_task(asyncio.to_thread(http.post, f"{path}/load"))
            # Until the load's last update: "loaded", after at least one "loading".
            while not (
                updates
                and updates[-1]["data"]["status"] == "loaded"
                and any(u["data"]["status"] == "loading" for u in updates)
            ):
                update = await _receive(ws, seed["type"])
                assert update["type"] == seed["type"], update
                if update["data"]["model_id"] == EMBEDDING_MODEL_ID:
                    updates.append(update)
            assert (await loading).status_code == 200
        return updates

    updates = asyncio.run(walk())
    for update in updates:
        assert update["id"] == request["id"]
        assert_shape(update, seed, frozenset({"$.data.progress", "$.data.eta"}))
    loading = [u["data"] for u in updates if u["data"]["status"] == "loading"]
    assert loading, [u["data"] for u in updates]
    assert all(isinstance(u["progress"], int | float) for u in loading)
    assert any(isinstance(u["eta"], str) for u in loading), loading


# --- errors, code examples, rate limits (reference) ---------------------------------------------------------


def test_error_response_format(http: httpx.Client) -> None:
    """000:512: a chat request for a model that does not exist ('gpt-5', kept) -> 404 in that shape."""
    body = adapt({"model": "gpt-5", "messages": [{"role": "user", "content": "Hello!"}]})
    reply = http.post("/v1/chat/completions", json=body)
    assert_status(reply, 404)
    assert_shape(reply.json(), json_at(REFERENCE, 512))
    assert reply.json()["error"]["code"] == "model_not_found"


def test_every_documented_error_code_answers_a_status_of_the_seeds_table() -> None:
    """The reference's error-code table: each code exists and its HTTP status is in the status table."""
    codes = seed_error_codes()
    assert len(codes) == 7
    statuses = seed_status_codes()
    for code in codes:
        assert ERROR_KINDS[code].http_status in statuses, (code, ERROR_KINDS[code].http_status)


def _python_calls(code: str) -> list[tuple[str, dict[str, Any]]]:
    """The calls of a seed Python example (its indentation is lost in the seed, so it is not run as a whole):
    each `OpenAI(...)` and `client.<resource>.create(...)` call, parsed with its keyword arguments."""
    calls = []
    for match in re.finditer(r"\b(OpenAI|client\.[\w.]+\.create)\(", code):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            if depth == 0:
                break
        call = ast.parse(code[match.start() : end + 1], mode="eval").body
        assert isinstance(call, ast.Call)
        name = match.group(1).removeprefix("client.").removesuffix(".create")
        calls.append((name, {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}))
    return calls


def _walk_python_example(code: str, server: RunningServer) -> list[str]:
    """Makes the example's calls with the official client, pointed at our server; returns what was called."""
    (constructor, arguments), *calls = _python_calls(code)
    assert constructor == "OpenAI" and set(arguments) == {"base_url", "api_key"}
    client = OpenAI(base_url=server.base_url + "/v1", api_key=arguments["api_key"], max_retries=0)
    for name, kwargs in calls:
        kwargs = adapt(kwargs)
        if name == "chat.completions" and kwargs.get("stream"):
            chunks = list(client.chat.completions.create(**kwargs))
            assert any(c.choices and c.choices[0].delta.content for c in chunks)
        elif name == "chat.completions":
            completion = client.chat.completions.create(**kwargs)
            assert isinstance(completion.choices[0].message.content, str)
        else:
            assert name == "embeddings", name
            embeddings = client.embeddings.create(**kwargs)
            assert len(embeddings.data) == len(kwargs["input"])
            assert all(isinstance(x, float) for x in embeddings.data[0].embedding)
    return [name for name, _ in calls]


def test_python_openai_example(server: RunningServer) -> None:
    """000:535: a chat completion, a streamed one and embeddings, with the official client."""
    walked = _walk_python_example(block(REFERENCE, 535).text, server)
    assert walked == ["chat.completions", "chat.completions", "embeddings"]


def _js_fetch_requests(text: str) -> list[SeedRequest]:
    """The fetch() calls of the JavaScript examples: URL, method, headers and the body's object literal."""
    requests = []
    for match in re.finditer(
        r"fetch\('([^']+)', \{\s*method: '(\w+)',\s*headers: \{(.*?)\},"
        r"\s*body: JSON\.stringify\((\{.*?\})\)\s*\}\)",
        text,
        re.DOTALL,
    ):
        url, method, header_text, body_text = match.groups()
        headers = dict(re.findall(r"'([\w-]+)': '([^']*)'", header_text))
        # The object literal as JSON: quote its keys and strings.
        body = json.loads(re.sub(r"(\w+):", r'"\1":', body_text).replace("'", '"'))
        requests.append(SeedRequest(method, adapt_path(urlparse(url).path), headers, adapt(body)))
    return requests


def test_javascript_fetch_examples(http: httpx.Client) -> None:
    """000:567: the two fetch() calls (a chat completion, then a streamed one read line by line)."""
    plain, streaming = _js_fetch_requests(block(REFERENCE, 567).text)
    reply = send(http, plain)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(REFERENCE, 66))
    assert streaming.body["stream"] is True
    reply, payloads = streamed(http, streaming)
    assert_status(reply, 200)
    assert_stream_like_the_seed(payloads, sse_lines(REFERENCE, 91))


def test_curl_examples(http: httpx.Client) -> None:
    """000:624: chat, completion, embeddings, models, load, health and metrics, each in its seed shape."""
    shapes = {
        "/v1/chat/completions": json_at(REFERENCE, 66),
        "/v1/completions": json_at(REFERENCE, 134),
        "/v1/embeddings": json_at(REFERENCE, 171),
        "/v1/models": json_at(REFERENCE, 197),
        f"/v1/models/{EMBEDDED_MODEL_ID}/load": json_at(REFERENCE, 246),
        "/health": json_at(REFERENCE, 320),
    }
    requests = curl_requests(block(REFERENCE, 624).text)
    assert [r.path for r in requests] == [*shapes, "/metrics"]
    for request in requests:
        reply = send(http, request)
        assert_status(reply, 200)
        if request.path == "/metrics":
            assert "# TYPE inferno_requests_total counter" in reply.text
        else:
            assert_shape(reply.json(), shapes[request.path], frozenset({"$.system.gpu_usage"}))


def test_rust_reqwest_example(http: httpx.Client) -> None:
    """000:661: the json! body posted with reqwest, read as result["choices"][0]["message"]["content"]."""
    text = block(REFERENCE, 661).text
    url = re.search(r'\.post\("([^"]+)"\)', text)
    body = re.search(r"json!\((\{.*?\})\)\)", text, re.DOTALL)
    assert url and body
    headers = dict(re.findall(r'\.header\("([^"]+)", "([^"]+)"\)', text))
    request = SeedRequest("POST", urlparse(url.group(1)).path, headers, adapt(json.loads(body.group(1))))
    reply = send(http, request)
    assert_status(reply, 200)
    assert isinstance(reply.json()["choices"][0]["message"]["content"], str)
    assert_shape(reply.json(), json_at(REFERENCE, 66))


def _rate_limit_headers(reply: httpx.Response) -> dict[str, int]:
    names = [line.split(":")[0] for line in block(REFERENCE, 689).text.strip().splitlines()]
    assert names == ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
    return {name: int(reply.headers[name]) for name in names}


def test_rate_limit_headers(secured: SecuredServer) -> None:
    """000:689 on a fresh key's requests: whole numbers, Remaining counting down from Limit, Reset a Unix
    time in the next minute."""
    _, secret = secured.create_key(["inference"])
    with secured.client(secret) as user:
        first = _rate_limit_headers(user.get("/v1/models"))
        second = _rate_limit_headers(user.get("/v1/models"))
    now = time.time()
    assert first["X-RateLimit-Remaining"] == first["X-RateLimit-Limit"] - 1, first
    assert second["X-RateLimit-Remaining"] == first["X-RateLimit-Remaining"] - 1, second
    assert now - 1 <= first["X-RateLimit-Reset"] <= now + 61, first


def test_rate_limit_configuration(tmp_path: Path) -> None:
    """000:696: the [security] example is a valid inferno.toml with the values it states."""
    (tmp_path / "inferno.toml").write_text(block(REFERENCE, 696).text)
    security = load_security_config(tmp_path / "inferno.toml")
    assert (security.rate_limit, security.burst_limit) == (1000, 100)


# --- the second deployment's page ---------------------------------------------------------------------------


def test_deployment_health(http: httpx.Client) -> None:
    """004:23 -> 004:28 (GPU memory null on a machine without one)."""
    reply = send(http, http_request(DEPLOYMENT, 23))
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(DEPLOYMENT, 28), frozenset({"$.gpu_memory_used"}))


def test_deployment_models(http: httpx.Client) -> None:
    """004:39 -> 004:44."""
    reply = send(http, http_request(DEPLOYMENT, 39))
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(DEPLOYMENT, 44))


def test_deployment_chat_completion(http: httpx.Client) -> None:
    """004:60 with the body 004:67 and the placeholder key of 004:15 -> 004:81."""
    request = http_request(DEPLOYMENT, 60, body_line=67)
    assert request.headers["Authorization"] == block(DEPLOYMENT, 15).text.split(": ", 1)[1]
    reply = send(http, request)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(DEPLOYMENT, 81))


def test_deployment_streaming(http: httpx.Client) -> None:
    """004:109 (curl -N) -> the stream of 004:121."""
    (request,) = curl_requests(block(DEPLOYMENT, 109).text)
    reply, payloads = streamed(http, request)
    assert_status(reply, 200)
    assert_stream_like_the_seed(payloads, sse_lines(DEPLOYMENT, 121))


def test_deployment_model_not_ready(http: httpx.Client) -> None:
    """004:157: a model still loading answers 503 with type service_unavailable and a message (the code is
    our string code, as the reference's error format has it, with the status carrying the number). Met by
    unloading a model while it loads."""
    seed = json_at(DEPLOYMENT, 157)
    path = f"/v1/models/{EMBEDDING_MODEL_ID}"
    assert http.post(f"{path}/unload").status_code == 200
    loaded: list[httpx.Response] = []
    loader = threading.Thread(target=lambda: loaded.append(http.post(f"{path}/load")))
    loader.start()
    try:
        deadline = time.monotonic() + 30
        while http.get(f"{path}/status").json()["status"] != "loading":
            assert time.monotonic() < deadline and not loaded, "the load finished before it was seen"
            time.sleep(0.01)
        reply = http.post(f"{path}/unload")
    finally:
        loader.join(timeout=120)
    assert_status(reply, 503)
    error = reply.json()["error"]
    assert_shape(error, {**seed["error"], "code": "model_not_ready"})
    assert error["type"] == seed["error"]["type"]
    assert loaded and loaded[0].status_code == 200


def test_deployment_gpu_out_of_memory_shape() -> None:
    """004:171 (CUDA out of memory) needs a GPU to happen; the body an internal error gets has its shape,
    type and status."""
    seed = json_at(DEPLOYMENT, 171)
    body = InfernoError("internal_error", "CUDA out of memory").to_body()
    assert_shape(body, {"error": {**seed["error"], "code": "internal_error"}})
    assert body["error"]["type"] == seed["error"]["type"]  # type: ignore[index]
    assert ERROR_KINDS["internal_error"].http_status == seed["error"]["code"]


def test_deployment_python_example(server: RunningServer) -> None:
    """004:185 against the base URL of 004:7 (ours instead), with the placeholder key."""
    code = block(DEPLOYMENT, 185).text
    assert block(DEPLOYMENT, 7).text.strip() + "/v1" in code
    assert _walk_python_example(code, server) == ["chat.completions"]


def test_deployment_curl_example(http: httpx.Client) -> None:
    """004:203 -> 004:81."""
    (request,) = curl_requests(block(DEPLOYMENT, 203).text)
    reply = send(http, request)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(DEPLOYMENT, 81))


def test_deployment_javascript_example(http: httpx.Client) -> None:
    """004:215 -> 004:81."""
    (request,) = _js_fetch_requests(block(DEPLOYMENT, 215).text)
    reply = send(http, request)
    assert_status(reply, 200)
    assert_shape(reply.json(), json_at(DEPLOYMENT, 81))
