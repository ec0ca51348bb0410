"""Start-up, shutdown and supervision of real `inferno serve`, `inferno core` and `inferno gateway` processes:
a refused start is one line and a non-zero exit, children die with the supervisor, SIGTERM drains and ends
every stream with its protocol's final event, and a killed child is restarted with its recovery time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import psutil
import pytest

from inferno.gateway_grpc import GATEWAY_GRPC_EXPERIMENTS, GRPC_EXPERIMENTS_ENV, gateway_environment
from inferno.lifecycle import EXIT_STARTUP_REFUSED, SHUTDOWN_GRACE_ENV
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc
from tests.grpc_helpers import chat_params
from tests.servers import RunningServer, free_port, inferno_process

_REFUSAL_TIMEOUT_S = 60.0
# Long enough to still be generating when the signal or the kill arrives.
_LONG = {"max_tokens": 1500, "ignore_eos": True}


def _inferno(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    data_dir = tempfile.mkdtemp(prefix="inferno-lifecycle-")
    return subprocess.run(
        [sys.executable, "-m", "inferno.cli", *args],
        capture_output=True,
        text=True,
        timeout=_REFUSAL_TIMEOUT_S,
        cwd=data_dir,
        env={**os.environ, "INFERNO_DATA_DIR": data_dir, **(env or {})},
    )


def _assert_refused(result: subprocess.CompletedProcess[str], *named: str) -> None:
    """Non-zero exit, no traceback, and exactly one `inferno:` line, which names each of `named`."""
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_STARTUP_REFUSED, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("inferno:")]
    assert len(lines) == 1, output
    for text in named:
        assert text in lines[0], output
    assert "restarting" not in output and "serving" not in result.stdout, output


@contextlib.contextmanager
def _listening_socket() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "port_flag"),
    [
        ("serve", "--port"),
        ("serve", "--grpc-port"),
        ("core", "--grpc-port"),
        ("gateway", "--port"),
    ],
)
def test_a_taken_port_is_one_line_naming_it(command: str, port_flag: str) -> None:
    with _listening_socket() as port:
        others = ["--port", str(free_port()), "--grpc-port", str(free_port())] if command == "serve" else []
        if command == "serve":
            others[others.index(port_flag) + 1] = str(port)
            args = others
        else:
            args = [port_flag, str(port)]
        started = time.monotonic()
        result = _inferno(command, *args)
    _assert_refused(result, f"port {port}", "already in use")
    assert time.monotonic() - started < 30


def test_a_core_refuses_a_grpc_port_another_server_shares_with_so_reuseport() -> None:
    # grpcio's default (SO_REUSEPORT on) is what let a second core share port 50051.
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        result = _inferno("core", "--grpc-port", str(port))
    finally:
        other.stop(None)
    _assert_refused(result, f"gRPC port {port}", "already in use")


def test_a_bad_config_value_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "inferno.toml"
    config.write_text('[server]\nmemory_budget = "lots"\n')
    result = _inferno("core", "--grpc-port", str(free_port()), "--config", str(config))
    _assert_refused(result, "memory_budget", "'lots'")


def test_a_bad_model_file_is_one_line_naming_it(tmp_path: Path) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"not a model at all")
    result = _inferno("core", "--grpc-port", str(free_port()), "--model", str(model))
    _assert_refused(result, "broken.gguf", "--model")


def test_a_memory_budget_too_small_for_the_model_is_one_line_naming_the_setting() -> None:
    result = _inferno(
        "serve", "--port", str(free_port()), "--grpc-port", str(free_port()), "--memory-budget", "1MiB"
    )
    _assert_refused(result, "memory budget", "--memory-budget")


def test_a_bad_shutdown_grace_is_one_line_naming_the_variable() -> None:
    result = _inferno("gateway", "--port", str(free_port()), env={SHUTDOWN_GRACE_ENV: "soon"})
    _assert_refused(result, SHUTDOWN_GRACE_ENV, "'soon'")


# --- a running `inferno serve` ----------------------------------------------------------------------------


@dataclass
class _Serve:
    server: RunningServer
    process: subprocess.Popen[bytes]
    model: str = ""

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def children(self) -> dict[str, psutil.Process]:
        found: dict[str, psutil.Process] = {}
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.Error):
                command = child.cmdline()
                found["core" if "core" in command else "gateway"] = child
        return found


@contextlib.contextmanager
def _serving(grace_s: float | None = None) -> Iterator[_Serve]:
    env = {SHUTDOWN_GRACE_ENV: str(grace_s)} if grace_s is not None else None
    with inferno_process(env=env) as (server, process):
        model = httpx.get(server.base_url + "/v1/models", timeout=10).json()["data"][0]["id"]
        yield _Serve(server, process, model)


def test_the_banner_prints_once_both_processes_answer() -> None:
    with _serving() as serving:
        deadline = time.monotonic() + 10
        while "inferno: serving" not in serving.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = serving.log()
        assert log.count("inferno: serving") == 1, log
        # The gateway's "listening" log line comes before the banner.
        assert log.index("gateway listening") < log.index("inferno: serving"), log


def test_the_gateway_child_runs_with_its_grpc_experiments_and_the_core_as_it_was_started() -> None:
    with _serving() as serving:
        children = serving.children()
        assert children["gateway"].environ().get(GRPC_EXPERIMENTS_ENV) == GATEWAY_GRPC_EXPERIMENTS
        assert children["core"].environ().get(GRPC_EXPERIMENTS_ENV) == os.environ.get(GRPC_EXPERIMENTS_ENV)


def test_a_grpc_experiments_setting_of_the_operator_wins() -> None:
    assert gateway_environment({"PATH": "/bin"}) == {
        "PATH": "/bin",
        GRPC_EXPERIMENTS_ENV: GATEWAY_GRPC_EXPERIMENTS,
    }
    assert gateway_environment({GRPC_EXPERIMENTS_ENV: "-foo"})[GRPC_EXPERIMENTS_ENV] == "-foo"


@pytest.mark.parametrize("operator_value", [None, ""])
def test_a_gateway_started_by_hand_runs_with_its_grpc_experiments(operator_value: str | None) -> None:
    """Without GRPC_EXPERIMENTS the gateway starts again (the same process) with the gateway's; an
    operator's, even empty, is kept."""
    env = {k: v for k, v in os.environ.items() if k != GRPC_EXPERIMENTS_ENV}
    if operator_value is not None:
        env[GRPC_EXPERIMENTS_ENV] = operator_value
    port, core_port = free_port(), free_port()
    command = [sys.executable, "-m", "inferno.cli", "gateway", "--core", f"127.0.0.1:{core_port}"]
    with subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as gateway:
        try:
            deadline = time.monotonic() + 60
            while gateway.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                time.sleep(0.2)
            assert gateway.poll() is None, gateway.stderr.read() if gateway.stderr else ""
            expected = GATEWAY_GRPC_EXPERIMENTS if operator_value is None else operator_value
            assert psutil.Process(gateway.pid).environ().get(GRPC_EXPERIMENTS_ENV) == expected
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)


def test_children_die_with_the_supervisor_after_kill_9() -> None:
    with _serving() as serving:
        children = list(serving.children().values())
        assert len(children) == 2
        serving.process.kill()
        serving.process.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"orphans still running: {[c.cmdline() for c in alive]}\n{serving.log()}"


# --- streams of the three protocols, watched until their final event ---------------------------------------


@dataclass
class _Endings:
    """The final event each client saw."""

    sse: list[dict[str, Any] | str] = field(default_factory=list)
    ws: list[dict[str, Any]] = field(default_factory=list)
    ws_close_code: int | None = None
    grpc_code: grpc.StatusCode | None = None
    grpc_chunks: int = 0


def _grpc_stream(
    target: str, model: str, max_tokens: int, started: threading.Event, endings: _Endings
) -> None:
    params = chat_params(model, "Count slowly from one to one thousand.", max_tokens=max_tokens)
    params.limits.ignore_eos = True
    with grpc.insecure_channel(target) as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        try:
            for _ in stub.StreamChatCompletion(pb.StreamChatCompletionRequest(params=params), timeout=120):
                endings.grpc_chunks += 1
                started.set()
            endings.grpc_code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            endings.grpc_code = error.code()
        finally:
            started.set()


async def _sse_events(response: aiohttp.ClientResponse, started: asyncio.Event, endings: _Endings) -> None:
    """Every event; stops at [DONE] or when the connection ends."""
    try:
        async for line in response.content:
            text = line.decode().strip()
            if not text.startswith("data: "):
                continue
            payload = text.removeprefix("data: ")
            endings.sse.append(payload if payload == "[DONE]" else json.loads(payload))
            started.set()
            if payload == "[DONE]":
                return
    except aiohttp.ClientError:
        endings.sse.append("connection lost")
    finally:
        started.set()


async def _ws_frames(
    socket: aiohttp.ClientWebSocketResponse, started: asyncio.Event, endings: _Endings, until_close: bool
) -> None:
    """Frames until chat c1 ends (and, with until_close, until the server closes the socket)."""
    try:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                endings.ws.append(frame)
                started.set()
                if frame.get("id") == "c1" and frame["type"] in ("chat_done", "error") and not until_close:
                    return
    finally:
        endings.ws_close_code = socket.close_code
        started.set()


async def _streams_through(
    serving: _Serve, fault: Any, grpc_max_tokens: int = 1500, ws_until_close: bool = True
) -> _Endings:
    """An SSE chat, a WebSocket chat and a gRPC stream, all generating when `fault` runs; then each to its
    end."""
    endings = _Endings()
    body = {"model": serving.model, "messages": [{"role": "user", "content": "Count to 1000."}], **_LONG}
    grpc_started = threading.Event()
    grpc_thread = threading.Thread(
        target=_grpc_stream,
        args=(serving.server.grpc_target, serving.model, grpc_max_tokens, grpc_started, endings),
    )
    grpc_thread.start()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(serving.server.base_url, timeout=timeout) as session:
        response = await session.post("/v1/chat/completions", json={**body, "stream": True})
        assert response.status == 200
        sse_started, ws_started = asyncio.Event(), asyncio.Event()
        sse = asyncio.create_task(_sse_events(response, sse_started, endings))
        socket = await session.ws_connect("/ws")
        await socket.send_json({"type": "chat", "id": "c1", "data": body})
        ws = asyncio.create_task(_ws_frames(socket, ws_started, endings, ws_until_close))
        await asyncio.wait_for(asyncio.gather(sse_started.wait(), ws_started.wait()), 60)
        await asyncio.to_thread(grpc_started.wait, 60)
        await fault(session)
        await asyncio.wait_for(asyncio.gather(sse, ws), 90)
        await socket.close()
    await asyncio.to_thread(grpc_thread.join, 90)
    return endings


def _error_code(event: dict[str, Any] | str) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("error"), dict):
        return str(event["error"]["code"])
    return None


def test_sigterm_refuses_new_requests_ends_every_stream_with_its_final_event_and_exits_0() -> None:
    refusals: list[httpx.Response] = []

    async def terminate(session: aiohttp.ClientSession) -> None:
        serving.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not refusals:
            with contextlib.suppress(httpx.HTTPError):
                reply = await asyncio.to_thread(httpx.get, serving.server.base_url + "/v1/models", timeout=2)
                if reply.status_code == 503:
                    refusals.append(reply)
            await asyncio.sleep(0.05)

    with _serving(grace_s=1) as serving:
        endings = asyncio.run(_streams_through(serving, terminate))
        assert serving.process.wait(timeout=60) == 0, serving.log()
    log = serving.log()
    assert refusals, f"no request got 503 during the drain\n{log}"
    assert refusals[0].json()["error"]["code"] == "core_unavailable"
    # SSE: the seed's error body as the last event, then [DONE].
    assert endings.sse[-1] == "[DONE]", endings.sse[-3:]
    assert _error_code(endings.sse[-2]) == "core_unavailable", endings.sse[-3:]
    # WebSocket: an error frame for the running chat, then a close frame (1001, going away).
    assert endings.ws[-1]["type"] == "error" and endings.ws[-1]["id"] == "c1", endings.ws[-3:]
    assert endings.ws[-1]["data"]["error"]["code"] == "core_unavailable"
    assert endings.ws_close_code == 1001
    # gRPC, straight to the core: UNAVAILABLE once the core's own grace ends.
    assert endings.grpc_code is grpc.StatusCode.UNAVAILABLE, endings
    assert "Traceback" not in log, log


def test_a_stream_that_ends_within_the_grace_period_finishes_normally() -> None:
    async def scenario(serving: _Serve) -> list[dict[str, Any] | str]:
        endings = _Endings()
        body = {"model": serving.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 24}
        async with aiohttp.ClientSession(serving.server.base_url) as session:
            response = await session.post("/v1/chat/completions", json={**body, "stream": True})
            started = asyncio.Event()
            events = asyncio.create_task(_sse_events(response, started, endings))
            await started.wait()
            serving.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(events, 60)
        return endings.sse

    with _serving() as serving:
        events = asyncio.run(scenario(serving))
        assert serving.process.wait(timeout=60) == 0
    assert events[-1] == "[DONE]"
    assert not any(_error_code(event) for event in events), events
    last = events[-2]
    assert isinstance(last, dict) and last["choices"][0]["finish_reason"] in ("stop", "length"), events[-3:]


# --- faults: kill -9 of a child during streams ----------------------------------------------------------


def test_kill_9_of_the_core_ends_every_stream_and_the_supervisor_prints_its_recovery_time() -> None:
    async def kill_core(session: aiohttp.ClientSession) -> None:
        serving.children()["core"].kill()

    with _serving() as serving:
        endings = asyncio.run(_streams_through(serving, kill_core, ws_until_close=False))
        deadline = time.monotonic() + 120
        while "core recovered in" not in serving.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        log = serving.log()
        assert "inferno: core died with SIGKILL (signal 9)" in log, log
        assert "inferno: core recovered in" in log, log
        # Serving again after the restart.
        body = {"model": serving.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        reply = httpx.post(serving.server.base_url + "/v1/chat/completions", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
    assert endings.sse[-1] == "[DONE]" and _error_code(endings.sse[-2]) == "core_unavailable", endings.sse[
        -3:
    ]
    assert endings.ws[-1]["type"] == "error" and endings.ws[-1]["id"] == "c1", endings.ws[-3:]
    assert endings.ws[-1]["data"]["error"]["code"] == "core_unavailable"
    assert endings.grpc_code is grpc.StatusCode.UNAVAILABLE


def test_a_stored_response_the_core_died_during_is_failed_when_it_comes_back() -> None:
    """Not left in progress for a client that polls it: the restarted core marks it failed."""
    with _serving() as serving:
        base = serving.server.base_url
        body = {
            "model": serving.model,
            "input": "Write a long story about a lighthouse keeper and a storm.",
            "max_output_tokens": 400,
            "stream": True,
        }
        response_id = None
        with httpx.stream("POST", base + "/v1/responses", json=body, timeout=60) as stream:
            for line in stream.iter_lines():
                event = json.loads(line[6:]) if line.startswith("data: {") else {}
                if event.get("type") == "response.created":
                    response_id = event["response"]["id"]
                if event.get("type") == "response.output_text.delta":
                    serving.children()["core"].kill()
                    break
        assert response_id is not None
        deadline = time.monotonic() + 120
        while "core recovered in" not in serving.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        reply = httpx.get(f"{base}/v1/responses/{response_id}", timeout=30)
        assert reply.status_code == 200, reply.text
        stored = reply.json()
        assert stored["status"] == "failed", stored
        assert stored["error"]["code"] == "core_unavailable", stored


def test_kill_9_of_the_gateway_drops_its_streams_leaves_grpc_running_and_it_recovers() -> None:
    async def kill_gateway(session: aiohttp.ClientSession) -> None:
        serving.children()["gateway"].kill()

    with _serving() as serving:
        endings = asyncio.run(_streams_through(serving, kill_gateway, grpc_max_tokens=200))
        deadline = time.monotonic() + 60
        while "gateway recovered in" not in serving.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        log = serving.log()
        assert "inferno: gateway died with SIGKILL (signal 9)" in log, log
        assert "inferno: gateway recovered in" in log, log
        assert httpx.get(serving.server.base_url + "/health", timeout=10).status_code == 200
    # The HTTP clients see their connection end (nothing is left to send a last event); the gRPC stream,
    # which does not pass through the gateway, runs to its end.
    assert endings.sse[-1] == "connection lost", endings.sse[-3:]
    assert endings.ws_close_code is not None
    assert endings.grpc_code is grpc.StatusCode.OK
    assert endings.grpc_chunks > 1
