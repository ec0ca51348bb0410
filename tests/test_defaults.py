"""Defaults that do not bite (issue 10, point 7): health, metrics and status calls are never rate limited; no
per-address limit without authentication unless configured; failed authentications are limited per address;
metric labels take only real model ids; a conversion never replaces a served model; inferno.db is 0600;
no ContextVar error after REST loads and abandoned streams; a key's last_used is written in batches."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from inferno.adapters.errors import error_response
from inferno.core.convert.jobs import JobRunner, JobStore
from inferno.core.interceptors import ErrorStatusInterceptor
from inferno.core.security.authenticator import Authenticator
from inferno.core.security.interceptor import AuthInterceptor
from inferno.core.security.keystore import KeyStore
from inferno.core.security.principal import CURRENT_PRINCIPAL
from inferno.core.security.rate_limiter import RateLimiter
from inferno.errors import InfernoError
from inferno.security_config import load_security_config
from tests.servers import RunningServer

ADMIN_KEY = "admin-key-for-the-defaults-test"
_ADMIN = "inferno.v1.AdminService"
_MODELS = "inferno.v1.ModelService"


# --- an in-process core: the real interceptors over stand-in handlers -------------------------------------


def _echo(request: bytes, context: grpc.aio.ServicerContext) -> Any:
    async def unary() -> bytes:
        return request

    return unary()


async def _count_up(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    principal = CURRENT_PRINCIPAL.get()
    assert principal is not None
    for n in range(1000):
        yield str(n).encode()
        await asyncio.sleep(0.001)


def _bytes(handler: Any, streaming: bool = False) -> grpc.RpcMethodHandler[bytes, bytes]:
    make = grpc.unary_stream_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
    return make(handler, request_deserializer=None, response_serializer=None)


async def _start_core(
    limiter: RateLimiter, failures: RateLimiter | None = None, admin_key: str | None = None
) -> tuple[grpc.aio.Server, str]:
    auth = AuthInterceptor(Authenticator(None, None, admin_key), limiter, 16, failures)
    server = grpc.aio.server(interceptors=[ErrorStatusInterceptor(), auth])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                _ADMIN, {"GetMetrics": _bytes(_echo), "GetServerStatus": _bytes(_echo)}
            ),
            grpc.method_handlers_generic_handler(
                _MODELS, {"ListModels": _bytes(_echo), "WatchModels": _bytes(_count_up, streaming=True)}
            ),
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _call(
    channel: grpc.aio.Channel, service: str, method: str, key: str | None = None
) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {key}"),) if key is not None else None
    try:
        await channel.unary_unary(f"/{service}/{method}")(b"x", metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_health_metrics_and_status_are_never_limited_nor_counted() -> None:
    async def scenario() -> None:
        server, target = await _start_core(RateLimiter(3, 0))
        async with grpc.aio.insecure_channel(target) as channel:
            health_stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(20):  # none of these takes from the caller's 3 a minute
                assert (await health_stub.Check(health_pb2.HealthCheckRequest())).status
                assert await _call(channel, _ADMIN, "GetMetrics") == grpc.StatusCode.OK
                assert await _call(channel, _ADMIN, "GetServerStatus") == grpc.StatusCode.OK
            listed = [await _call(channel, _MODELS, "ListModels") for _ in range(4)]
            assert listed == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert await _call(channel, _ADMIN, "GetMetrics") == grpc.StatusCode.OK
            assert (await health_stub.Check(health_pb2.HealthCheckRequest())).status
        await server.stop(None)

    asyncio.run(scenario())


def test_failed_authentications_are_limited_per_address_but_valid_keys_still_pass() -> None:
    async def scenario() -> None:
        server, target = await _start_core(RateLimiter(0, 0), RateLimiter(5, 0), ADMIN_KEY)
        async with grpc.aio.insecure_channel(target) as channel:
            wrong = [await _call(channel, _MODELS, "ListModels", "sk-inf-wrong") for _ in range(7)]
            assert wrong == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
            assert await _call(channel, _MODELS, "ListModels", ADMIN_KEY) == grpc.StatusCode.OK
            # Missing credentials cost nothing to check and are not counted: still a plain 401.
            assert await _call(channel, _MODELS, "ListModels") == grpc.StatusCode.UNAUTHENTICATED
        await server.stop(None)

    asyncio.run(scenario())


def test_a_refused_failure_says_when_to_retry() -> None:
    async def scenario() -> None:
        server, target = await _start_core(RateLimiter(0, 0), RateLimiter(1, 0), ADMIN_KEY)
        async with grpc.aio.insecure_channel(target) as channel:
            await _call(channel, _MODELS, "ListModels", "wrong")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                call = channel.unary_unary(f"/{_MODELS}/ListModels")
                await call(b"x", metadata=(("authorization", "Bearer wrong"),), timeout=10)
            assert dict(refused.value.initial_metadata())["retry-after"] == "60"
        await server.stop(None)

    asyncio.run(scenario())
    response = error_response(
        InfernoError("rate_limit_exceeded", "too many", {"limit": "1", "retry_after_s": "60"})
    )
    assert response.status == 429


def test_an_abandoned_stream_leaves_no_context_error(caplog: pytest.LogCaptureFixture) -> None:
    """The client leaves a server stream after a few items; the core must log nothing about it."""
    loop_errors: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
        server, target = await _start_core(RateLimiter(100, 0))
        async with grpc.aio.insecure_channel(target) as channel:
            for _ in range(3):
                call = channel.unary_stream(f"/{_MODELS}/WatchModels")(b"x")
                for _ in range(3):
                    await call.read()
                call.cancel()
                await asyncio.sleep(0.1)
        await server.stop(None)

    asyncio.run(scenario())
    messages = [str(context.get("exception") or context.get("message")) for context in loop_errors]
    messages += [record.getMessage() + str(record.exc_info) for record in caplog.records]
    assert not [m for m in messages if "different Context" in m], messages


# --- the real server (the session's, with no [security]) --------------------------------------------------


def test_without_authentication_no_address_is_rate_limited(http: httpx.Client) -> None:
    replies = [http.get("/v1/models") for _ in range(150)]  # past the old default's burst of 100
    assert {r.status_code for r in replies} == {200}
    assert "X-RateLimit-Limit" not in replies[-1].headers
    assert http.get("/health").status_code == 200
    assert http.get("/metrics").status_code == 200


def test_a_made_up_model_id_adds_no_metric_label(http: httpx.Client) -> None:
    made_up = "made-up-model-7f3a9c"
    for route in (f"/v1/models/{made_up}/load", f"/v1/models/{made_up}/unload"):
        assert http.post(route).status_code == 404
    assert http.get(f"/v1/models/{made_up}/status").status_code == 404
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and made_up not in metrics.text


def test_rest_loads_and_abandoned_streams_log_no_context_error(
    server: RunningServer, http: httpx.Client, model_id: str
) -> None:
    """The sequence that logged `<Token var=<ContextVar name='inferno_principal'> was created in a different
    Context`: a streamed load left after its first event, plain loads, chat streams left after one event."""
    assert http.post(f"/v1/models/{model_id}/unload").status_code == 200
    with http.stream("POST", f"/v1/models/{model_id}/load?stream=true") as progress:
        next(progress.iter_lines())
    deadline = time.monotonic() + 60
    while http.post(f"/v1/models/{model_id}/load").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    body = {"model": model_id, "messages": [{"role": "user", "content": "Count to fifty."}], "stream": True}
    for _ in range(3):
        with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            next(stream.iter_lines())
    time.sleep(2.0)
    assert http.get("/health").status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert "different Context" not in log
    # The progress stream's pending queue read is cancelled with it, not left to fail later.
    assert "cannot reuse already awaited coroutine" not in log and "Task was destroyed" not in log


def test_the_database_file_is_private(server: RunningServer) -> None:
    database = server.log_path.parent / "data" / "inferno.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


# --- settings, the key store, conversions ------------------------------------------------------------------


def test_without_authentication_rate_limit_is_off_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERNO_RATE_LIMIT", raising=False)
    assert load_security_config(None).rate_limit == 0
    config = tmp_path / "inferno.toml"
    config.write_text("[security]\nrate_limit = 1000\n")
    assert load_security_config(config).rate_limit == 1000
    config.write_text("[security]\napi_keys = true\n")
    assert load_security_config(config).rate_limit == 1000
    monkeypatch.setenv("INFERNO_RATE_LIMIT", "50")
    assert load_security_config(None).rate_limit == 50


def test_auth_failures_per_minute_is_a_setting(tmp_path: Path) -> None:
    config = tmp_path / "inferno.toml"
    assert load_security_config(None).auth_failures_per_minute == 20
    config.write_text("[security]\nauth_failures_per_minute = 3\n")
    assert load_security_config(config).auth_failures_per_minute == 3


def test_database_files_are_created_and_narrowed_to_0600(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    keys.close()
    shared = tmp_path / "jobs" / "inferno.db"
    shared.parent.mkdir()
    sqlite3.connect(shared).close()
    os.chmod(shared, 0o644)
    JobStore(shared).close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600


def _stored_last_used(path: Path, key_id: str) -> float | None:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT last_used FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
    return None if row[0] is None else float(row[0])


def test_last_used_is_batched_and_creation_is_durable_at_once(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, flush_every_s=3600)
    key, secret = keys.create("ci", ("inference",), None)
    first = keys.authenticate(secret)
    second = keys.authenticate(secret)
    assert first is not None and first.last_used is None
    assert second is not None and second.last_used is not None  # the previous use, from memory
    assert _stored_last_used(keys.path, key.key_id) is None  # not written per request
    assert keys.list()[0].last_used is not None
    keys.flush()
    assert _stored_last_used(keys.path, key.key_id) == keys.list()[0].last_used
    keys.revoke(key.key_id)
    with sqlite3.connect(keys.path) as db:
        assert db.execute("SELECT revoked FROM api_keys").fetchone()[0] is not None
    keys.close()


def test_close_writes_pending_last_used(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, flush_every_s=3600)
    key, secret = keys.create("ci", ("inference",), None)
    assert keys.authenticate(secret) is not None
    keys.close()
    assert _stored_last_used(tmp_path / "inferno.db", key.key_id) is not None


def test_the_writer_thread_flushes_on_its_own(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path, flush_every_s=0.05)
    key, secret = keys.create("ci", ("inference",), None)
    assert keys.authenticate(secret) is not None
    deadline = time.monotonic() + 5
    while _stored_last_used(keys.path, key.key_id) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored_last_used(keys.path, key.key_id) is not None
    keys.close()


def test_a_conversion_never_overwrites_a_served_model(tmp_path: Path) -> None:
    served = tmp_path / "models" / "served.gguf"
    served.parent.mkdir()
    served.write_bytes(b"GGUF")
    source = tmp_path / "models" / "hf-model"
    runner = JobRunner(JobStore(tmp_path / "inferno.db"), lambda path: "x", served_paths=lambda: [served])
    with pytest.raises(InfernoError) as refused:
        runner.submit(source, "hf-model", served.parent / "." / "served.gguf", "served.gguf", "gguf", "f16")
    assert refused.value.code == "invalid_parameters"
    assert refused.value.details == {"param": "output_file"}
    assert "served.gguf" in refused.value.message
    assert served.read_bytes() == b"GGUF"
    runner.close()
