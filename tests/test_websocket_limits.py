"""The WebSocket message rate is the core's policy: AdminService serves [security] ws_messages_per_second and
the gateway counts a socket's frames with those numbers, whatever its own configuration says."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from inferno.adapters.app import build_app
from inferno.core.security.rate_limiter import WebSocketMessageRate
from inferno.core.services.admin import AdminServicer
from inferno.security_config import SecurityConfig
from inferno.v1 import admin_service_pb2, admin_service_pb2_grpc


class _NoModels:
    """The slice of ModelManager that GetServerStatus reads, with nothing loaded."""

    default_model_id = ""

    def models(self) -> list[Any]:
        return []

    def loaded_engines(self) -> list[Any]:
        return []


def _admin(rate: WebSocketMessageRate) -> AdminServicer:
    return AdminServicer(_NoModels(), CollectorRegistry(), rate)  # type: ignore[arg-type]


def test_server_status_serves_the_configured_websocket_rate() -> None:
    rate = WebSocketMessageRate.from_security(SecurityConfig(ws_messages_per_second=7))
    status = asyncio.run(_admin(rate).GetServerStatus(admin_service_pb2.GetServerStatusRequest(), None))  # type: ignore[arg-type]
    assert (status.websocket_limits.messages_per_second, status.websocket_limits.message_burst) == (7, 14)


@asynccontextmanager
async def _gateway_over_core(core_rate: int, gateway_rate: int) -> AsyncIterator[TestClient[Any, Any]]:
    """A real AdminService on a loopback port and the gateway app in front of it."""
    core = grpc.aio.server()
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(_admin(WebSocketMessageRate(core_rate)), core)
    port = core.add_insecure_port("127.0.0.1:0")
    await core.start()
    app = build_app(f"127.0.0.1:{port}", SecurityConfig(ws_messages_per_second=gateway_rate))
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        await core.stop(None)


async def _ping_replies(core_rate: int, gateway_rate: int, pings: int) -> list[dict[str, Any]]:
    async with _gateway_over_core(core_rate, gateway_rate) as client:
        ws = await client.ws_connect("/ws")
        for i in range(pings):
            await ws.send_json({"type": "ping", "id": i})
        replies = [await ws.receive_json(timeout=10) for _ in range(pings)]
        await ws.close()
        return replies


def test_gateway_limits_socket_messages_at_the_cores_rate_not_its_own() -> None:
    replies = asyncio.run(_ping_replies(core_rate=2, gateway_rate=1000, pings=8))
    kinds = [r["type"] for r in replies]
    # A burst of twice the core's rate, then refusals (8 pings take far less than the 1/2 s that refills one).
    assert kinds[:4] == ["pong"] * 4 and kinds[4:] == ["error"] * 4
    error = replies[4]["data"]["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["details"]["ws_messages_per_second"] == 2


def test_a_core_rate_of_0_leaves_socket_messages_unlimited() -> None:
    replies = asyncio.run(_ping_replies(core_rate=0, gateway_rate=1, pings=30))
    assert [r["type"] for r in replies] == ["pong"] * 30


def test_without_a_core_the_upgrade_is_refused_with_503() -> None:
    async def scenario() -> int:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        async with TestClient(TestServer(build_app(f"127.0.0.1:{port}"))) as client:
            with pytest.raises(WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            return refused.value.status

    assert asyncio.run(scenario()) == 503
