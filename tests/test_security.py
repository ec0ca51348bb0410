"""Security end to end over TLS: API keys, the permission table walked route by route, JWTs, rate limits,
input limits, CORS and the WebSocket, against a real `inferno serve` with every feature on."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

import aiohttp
import grpc
import pytest

from inferno.adapters.app import build_app
from inferno.core.embedded import EMBEDDED_MODEL_ID
from inferno.permissions import RPC_REQUIREMENTS, Access, grants
from inferno.v1 import auth_service_pb2, auth_service_pb2_grpc, model_service_pb2, model_service_pb2_grpc
from tests.security_fixtures import SecuredServer

CHAT = {"model": EMBEDDED_MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
_I, _M, _A = "/inferno.v1.InferenceService/", "/inferno.v1.ModelService/", "/inferno.v1.AdminService/"
# Every gateway route (by route name), a request that exercises it, and the RPC whose permission it needs.
# Requests that pass the check may still fail for other reasons (a 404 for a model that does not exist):
# the walk only tells allowed (anything but 401/403) from refused.
_AUTH = "/inferno.v1.AuthService/"
_CONV = "/inferno.v1.ConversionService/"
_RESP = "/inferno.v1.ResponseService/"
COMPLETION = {"model": EMBEDDED_MODEL_ID, "prompt": "Hi", "max_tokens": 1}
BATCH = {"model": EMBEDDED_MODEL_ID, "requests": [{"id": "a", "messages": CHAT["messages"]}], "max_tokens": 1}
NEW_KEY = {"name": "walk", "permissions": ["inference"]}
ROUTE_CALLS: dict[str, tuple[str, str, dict[str, Any] | None, str]] = {
    "chat": ("POST", "/v1/chat/completions", CHAT, _I + "CreateChatCompletion"),
    "completions": ("POST", "/v1/completions", COMPLETION, _I + "CreateCompletion"),
    "batch": ("POST", "/v1/batch", BATCH, _I + "CreateBatch"),
    "embeddings": (
        "POST",
        "/v1/embeddings",
        {"model": EMBEDDED_MODEL_ID, "input": "Hi"},
        _I + "CreateEmbeddings",
    ),
    "tokenize": ("POST", "/v1/tokenize", {"content": "Hi"}, _I + "Tokenize"),
    "detokenize": ("POST", "/v1/detokenize", {"tokens": [1]}, _I + "Detokenize"),
    "tokenize_root": ("POST", "/tokenize", {"prompt": "Hi"}, _I + "Tokenize"),
    "detokenize_root": ("POST", "/detokenize", {"tokens": [1]}, _I + "Detokenize"),
    "tokenizer_info": ("GET", "/tokenizer_info", None, _I + "GetTokenizerInfo"),
    "models": ("GET", "/v1/models", None, _M + "ListModels"),
    "model": ("GET", f"/v1/models/{EMBEDDED_MODEL_ID}", None, _M + "GetModel"),
    "model_status": ("GET", f"/v1/models/{EMBEDDED_MODEL_ID}/status", None, _M + "GetModelStatus"),
    "model_load": ("POST", "/v1/models/no-such-model/load", None, _M + "LoadModel"),
    "model_unload": ("POST", "/v1/models/no-such-model/unload", None, _M + "UnloadModel"),
    "auth_keys_create": ("POST", "/v1/auth/keys", NEW_KEY, _AUTH + "CreateApiKey"),
    "auth_keys_list": ("GET", "/v1/auth/keys", None, _AUTH + "ListApiKeys"),
    "auth_keys_revoke": ("DELETE", "/v1/auth/keys/key_none", None, _AUTH + "RevokeApiKey"),
    "auth_user": ("GET", "/v1/auth/user", None, _AUTH + "GetCurrentUser"),
    "convert_create": ("POST", "/v1/convert", {"source_model": "nope"}, _CONV + "CreateConversionJob"),
    "convert_list": ("GET", "/v1/convert", None, _CONV + "ListConversionJobs"),
    "convert_get": ("GET", "/v1/convert/conv_none", None, _CONV + "GetConversionJob"),
    "convert_cancel": ("POST", "/v1/convert/conv_none/cancel", None, _CONV + "CancelConversionJob"),
    "health": ("GET", "/health", None, _A + "GetServerStatus"),
    "metrics": ("GET", "/metrics", None, _A + "GetMetrics"),
    "messages": ("POST", "/v1/messages", CHAT, _I + "CreateChatCompletion"),
    "responses_create": (
        "POST",
        "/v1/responses",
        {"model": EMBEDDED_MODEL_ID, "input": "Hi", "max_output_tokens": 1},
        _RESP + "CreateResponse",
    ),
    "responses_get": ("GET", "/v1/responses/resp_none", None, _RESP + "GetResponse"),
    "responses_delete": ("DELETE", "/v1/responses/resp_none", None, _RESP + "DeleteResponse"),
    "responses_input_items": (
        "GET",
        "/v1/responses/resp_none/input_items",
        None,
        _RESP + "ListResponseInputItems",
    ),
    "responses_cancel": ("POST", "/v1/responses/resp_none/cancel", None, _RESP + "CancelResponse"),
    "messages_count_tokens": (
        "POST",
        "/v1/messages/count_tokens",
        {"model": EMBEDDED_MODEL_ID, "messages": CHAT["messages"]},
        _I + "Tokenize",
    ),
}
# Routes that are not a single request/response: /ws is covered by its own tests below. The static files of
# the dashboard and the API docs page make no core call (tests/test_dashboard.py shows the page asking for a
# key).
_NOT_WALKED = {"ws", "openapi", "dashboard", "dashboard_asset", "docs", "docs_asset"}
HOLDERS = [["inference"], ["model_management"], ["admin"], ["*"], None]


def test_the_walk_covers_every_route_and_every_unary_rpc() -> None:
    names = {r.name for r in build_app("127.0.0.1:1").router.routes() if r.name}
    assert names - _NOT_WALKED == set(ROUTE_CALLS)
    covered = {rpc for *_, rpc in ROUTE_CALLS.values()}
    # Streaming RPCs share their unary twin's permission; health and reflection are public.
    streaming = {
        _I + "StreamChatCompletion",
        _I + "StreamCompletion",
        _M + "WatchModels",
        _RESP + "StreamResponse",
    }
    public = {m for m, need in RPC_REQUIREMENTS.items() if need is Access.PUBLIC}
    assert set(RPC_REQUIREMENTS) - streaming - public == covered - public


@pytest.mark.parametrize("held", HOLDERS, ids=lambda h: ",".join(h) if h else "no-key")
def test_every_route_allows_exactly_the_permissions_the_table_gives(
    secured: SecuredServer, held: list[str] | None
) -> None:
    secret = secured.create_key(held)[1] if held else None
    with secured.client(secret) as client:
        for name, (method, path, body, rpc) in ROUTE_CALLS.items():
            needed = RPC_REQUIREMENTS[rpc]
            reply = client.request(method, path, json=body)
            if held is None and needed is not Access.PUBLIC:
                assert reply.status_code == 401, (name, reply.text)
                assert reply.json()["error"]["code"] == "authentication_failed"
            elif held is not None and not grants(frozenset(held), needed):
                assert reply.status_code == 403, (name, reply.text)
                assert reply.json()["error"]["code"] == "permission_denied"
            else:
                assert reply.status_code not in (401, 403), (name, reply.status_code, reply.text)


def test_a_key_is_shown_once_listed_without_secrets_and_revoked_at_once(secured: SecuredServer) -> None:
    key_id, secret = secured.create_key(["inference"], expires_in="30d")
    assert secret.startswith("sk-inf-") and len(secret) >= 7 + 43  # 256 random bits
    with secured.client(secret) as user:
        assert user.post("/v1/chat/completions", json=CHAT).status_code == 200
        me = user.get("/v1/auth/user").json()
        assert me["user_id"] == key_id and me["permissions"] == ["inference"] and me["role"] == "user"
    with secured.client(secured.admin_key) as admin:
        listing = admin.get("/v1/auth/keys").json()["data"]
        entry = next(k for k in listing if k["key_id"] == key_id)
        assert secret not in json.dumps(listing)
        assert (
            entry["prefix"] == secret[:13] and entry["last_used"] is not None and entry["expires"] is not None
        )
        assert admin.delete(f"/v1/auth/keys/{key_id}").json()["revoked"] is not None
    with secured.client(secret) as user:
        assert user.post("/v1/chat/completions", json=CHAT).status_code == 401
    stored = (secured.root / "data" / "inferno.db").read_bytes()
    assert secret.encode() not in stored


def test_an_expired_key_is_refused(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"], expires_in="1s")
    time.sleep(1.5)
    with secured.client(secret) as user:
        reply = user.get("/v1/models")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
def test_jwts_of_each_algorithm_are_accepted(secured: SecuredServer, algorithm: str) -> None:
    with secured.client(secured.token(algorithm, permissions=["inference", "model_management"])) as user:
        me = user.get("/v1/auth/user").json()
        assert me["user_id"] == "user-1" and me["username"] == "alice" and me["auth_method"] == "jwt"
        assert user.get("/v1/models").status_code == 200
        assert user.get("/v1/auth/keys").status_code == 403


def _unsigned(claims: dict[str, Any]) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_bad_jwts_are_refused_without_saying_why(secured: SecuredServer) -> None:
    now = int(time.time())
    forged = secured.token("HS256")[:-4] + "AAAA"
    bad = {
        "expired": secured.token(exp=now - 10),
        "no exp": secured.token(exp=None),
        "not yet valid": secured.token(nbf=now + 600),
        "wrong audience": secured.token(aud="someone-else"),
        "wrong issuer": secured.token(iss="https://evil.test"),
        "wrong signature": forged,
        "alg none": _unsigned({"sub": "x", "exp": now + 300, "aud": "inferno-tests", "iss": "https://issuer.test"}),
    }  # fmt: skip
    for why, token in bad.items():
        with secured.client(token) as user:
            reply = user.get("/v1/models")
        assert reply.status_code == 401, why
        error = reply.json()["error"]
        assert error["code"] == "authentication_failed", why
        assert error["details"] == {} and token not in reply.text, why


def test_rate_limit_headers_count_down_and_429_arrives_on_time(secured: SecuredServer) -> None:
    """A key of 12 requests per minute makes 12 at once, then one every 5 s (docs/security.md)."""
    _, secret = secured.create_key(["inference"], rate_limit=12)
    with secured.client(secret) as user:
        replies = [user.get("/v1/models") for _ in range(13)]
        remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in replies]
        assert [r.status_code for r in replies[:12]] == [200] * 12
        assert remaining == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
        assert all(r.headers["X-RateLimit-Limit"] == "12" for r in replies)
        assert int(replies[0].headers["X-RateLimit-Reset"]) >= int(time.time())
        refused = replies[12]
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 5
        time.sleep(retry_after)
        assert user.get("/v1/models").status_code == 200


def test_refusals_of_credentials_carry_a_bearer_challenge(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"])
    with secured.client() as anonymous:
        missing = anonymous.get("/v1/models")
    with secured.client("sk-inf-" + "B" * 43) as forged:
        invalid = forged.post("/v1/chat/completions", json=CHAT)
    with secured.client(secret) as user:
        short = user.get("/v1/auth/keys")
        allowed = user.get("/v1/models")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="inferno"'
    assert invalid.status_code == 401
    assert invalid.headers["WWW-Authenticate"].startswith('Bearer realm="inferno", error="invalid_token"')
    assert short.status_code == 403
    assert short.headers["WWW-Authenticate"] == (
        'Bearer realm="inferno", error="insufficient_scope", scope="admin"'
    )
    for refused in (missing, invalid, short):
        assert set(refused.json()["error"]) == {"type", "code", "message", "param", "details"}
    assert "WWW-Authenticate" not in allowed.headers


def test_grpc_callers_meet_the_same_policy(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"], rate_limit=5)
    credentials = grpc.ssl_channel_credentials((secured.root / "cert.pem").read_bytes())
    with grpc.secure_channel(secured.server.grpc_target, credentials) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            models.ListModels(model_service_pb2.ListModelsRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {secret}"),)
        assert models.ListModels(model_service_pb2.ListModelsRequest(), metadata=metadata).models
        with pytest.raises(grpc.RpcError) as caught:
            models.UnloadModel(model_service_pb2.UnloadModelRequest(model_id="x"), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for _ in range(10):
            try:
                models.ListModels(model_service_pb2.ListModelsRequest(), metadata=metadata)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert ("x-ratelimit-remaining", "0") in error.initial_metadata()
                break
        else:
            pytest.fail("no RESOURCE_EXHAUSTED after the key's 5 requests")
        user = auth_service_pb2_grpc.AuthServiceStub(channel)
        admin = (("authorization", f"Bearer {secured.admin_key}"),)
        assert user.GetCurrentUser(auth_service_pb2.GetCurrentUserRequest(), metadata=admin).role == "admin"


def test_input_limits(secured: SecuredServer) -> None:
    with secured.client(secured.admin_key) as admin:
        too_big = admin.post("/v1/chat/completions", content=b"{" + b" " * 70000 + b"}")
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
        many = {**CHAT, "messages": [{"role": "user", "content": "x"}] * 51}
        reply = admin.post("/v1/chat/completions", json=many)
        assert reply.status_code == 400 and reply.json()["error"]["details"]["param"] == "messages"
        reply = admin.post("/v1/chat/completions", json={**CHAT, "max_tokens": 65})
        assert reply.status_code == 400 and reply.json()["error"]["details"]["param"] == "max_tokens"
        capped = admin.post("/v1/chat/completions", json={**CHAT, "max_tokens": None, "ignore_eos": True})
        assert capped.json()["usage"]["completion_tokens"] == 64


def test_errors_never_echo_secrets(secured: SecuredServer) -> None:
    secret = "sk-inf-" + "A" * 43
    with secured.client(secret) as user:
        reply = user.get("/v1/models")
    assert reply.status_code == 401 and secret not in reply.text
    log = secured.server.log_path.read_text(errors="replace")
    assert secured.admin_key not in log and secret not in log


def test_cors_is_answered_for_configured_origins_only(secured: SecuredServer) -> None:
    with secured.client() as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers


def _ssl(secured: SecuredServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(secured.root / "cert.pem"))


def test_websocket_authenticates_by_header_or_first_message(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"])
    url = secured.server.base_url.replace("https", "wss") + "/ws"

    async def scenario() -> list[dict[str, Any]]:
        frames = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, ssl=_ssl(secured)) as anonymous:
                await anonymous.send_json({"type": "chat", "id": 1, "data": CHAT})
                frames.append(json.loads((await anonymous.receive(timeout=30)).data))
                await anonymous.send_json({"type": "auth", "data": {"api_key": secret}})
                frames.append(json.loads((await anonymous.receive(timeout=30)).data))
                await anonymous.send_json({"type": "chat", "id": 2, "data": CHAT})
                while (frame := json.loads((await anonymous.receive(timeout=60)).data))[
                    "type"
                ] != "chat_done":
                    pass
                frames.append(frame)
            headers = {"Authorization": f"Bearer {secret}"}
            async with session.ws_connect(url, ssl=_ssl(secured), headers=headers) as keyed:
                await keyed.send_json({"type": "subscribe_models", "id": "m"})
                frames.append(json.loads((await keyed.receive(timeout=30)).data))
        return frames

    refused, accepted, done, forbidden = asyncio.run(scenario())
    assert refused["type"] == "error" and refused["data"]["error"]["code"] == "authentication_failed"
    assert accepted["type"] == "auth_ok"
    assert done["data"]["finish_reason"] in ("stop", "length")
    # subscribe_models needs model_management, which an inference key does not hold.
    assert forbidden["type"] == "error" and forbidden["data"]["error"]["code"] == "permission_denied"


def test_websocket_message_rate_is_limited(secured: SecuredServer) -> None:
    url = secured.server.base_url.replace("https", "wss") + "/ws"

    async def scenario() -> list[str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, ssl=_ssl(secured)) as socket:
            for i in range(14):
                await socket.send_json({"type": "ping", "id": i})
            return [json.loads((await socket.receive(timeout=10)).data)["type"] for _ in range(14)]

    kinds = asyncio.run(scenario())
    assert kinds[:10] == ["pong"] * 10 and "error" in kinds[10:]


def test_concurrent_streams_per_key_are_limited(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"])
    body = {**CHAT, "max_tokens": 40, "ignore_eos": True, "stream": True}

    async def scenario() -> list[int]:
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            url = secured.server.base_url + "/v1/chat/completions"
            opened = [await session.post(url, json=body, ssl=_ssl(secured)) for _ in range(2)]
            for response in opened:  # both streams are running: their first event has arrived
                await response.content.readline()
            third = await session.post(url, json=body, ssl=_ssl(secured))
            statuses = [third.status]
            for response in opened:
                await response.read()
                statuses.append(response.status)
            return statuses

    third, *first_two = asyncio.run(scenario())
    assert third == 429 and first_two == [200, 200]
