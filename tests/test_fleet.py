"""Two real cores and a gateway behind real Envoy, TLS on every hop (a self-signed certificate), from the
config `inferno envoy-config` generates: conversations stick to a core, a SIGTERM drains a core without
failing a stream, and a kill -9 fails only the streams on the dead core while new requests go to the other.

Which core served a request is read from the cores' own metrics: each first token observes
inferno_engine_time_to_first_token_seconds once. Kept small (max_tokens, --parallel, --ctx-size, one thread
per core): three inferno processes share the CPU.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from inferno.adapters.routing_key import routing_metadata
from inferno.core.embedded import EMBEDDED_MODEL_ID
from inferno.envoy_config import Address, EdgeTls, Topology, model_cluster, parse_core, render_yaml
from inferno.errors import InfernoError, error_from_rpc
from inferno.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    inference_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
)
from inferno.v1 import inference_service_pb2 as pb
from tests.crypto_helpers import write_self_signed_certificate
from tests.fleet_helpers import REPO_ROOT, InfernoProcess, RunningEnvoy, envoy_process
from tests.grpc_helpers import chat_params
from tests.servers import free_port
from tests.tools import require_tool

MODEL = EMBEDDED_MODEL_ID
HEALTH_INTERVAL_S = 1.0
# Two failed checks mark a core unhealthy (envoy_config.py); a little more for the checks to run.
UNHEALTHY_AFTER_S = 2 * HEALTH_INTERVAL_S + 1.5
SYSTEM_PROMPT = "You are a terse assistant. Answer in one short sentence."
TOPICS = ("rivers", "comets", "bread", "violins", "glaciers", "chess", "bees", "lighthouses")
_TTFT_COUNT = "inferno_engine_time_to_first_token_seconds_count"


def conversation(index: int) -> list[dict[str, str]]:
    """Eight conversations sharing a system prompt and differing in the first user message."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Conversation {index}: tell me one fact about {TOPICS[index]}."},
    ]


@dataclass
class Fleet:
    cores: list[InfernoProcess]
    gateway: InfernoProcess
    envoy: RunningEnvoy
    topology: Topology
    ca: Path
    # Which core (index into cores) each conversation lands on, learned by the first test that needs it.
    placement: dict[int, int] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def served(self) -> list[int]:
        """Sequences each core has started (first tokens observed)."""
        return [self.served_by(core) for core in range(len(self.cores))]

    def served_by(self, core: int) -> int:
        """Sequences one core has started."""
        with self.cores[core].channel() as channel:
            stub = admin_service_pb2_grpc.AdminServiceStub(channel)
            text = stub.GetMetrics(admin_service_pb2.GetMetricsRequest(), timeout=10).text
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == _TTFT_COUNT
            )
        )

    def healthy_in_envoy(self) -> dict[str, bool]:
        """host -> healthy, for the model's cluster and the gateway cluster."""
        lines = httpx.get(f"{self.envoy.admin_url}/clusters", timeout=10).text.splitlines()
        flags = {}
        for line in lines:
            parts = line.split("::")
            if len(parts) == 4 and parts[2] == "health_flags":
                flags[f"{parts[0]}::{parts[1]}"] = parts[3] == "healthy"
        return flags

    def wait_all_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            flags = self.healthy_in_envoy()
            if flags and all(flags.values()):
                return
            time.sleep(0.3)
        raise AssertionError(f"not every host is healthy in Envoy: {self.healthy_in_envoy()}")

    def ensure_running(self) -> None:
        """Start again any core a test stopped, on its port, and wait until Envoy routes to it."""
        for core in self.cores:
            if core.running().poll() is not None:
                core.start()
                core.wait_serving()
        self.wait_all_healthy()

    def chat(self, client: httpx.Client, index: int, max_tokens: int = 1) -> httpx.Response:
        body = {"model": MODEL, "messages": conversation(index), "max_tokens": max_tokens, "temperature": 0}
        return client.post("/v1/chat/completions", json=body)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    envoy_bin = require_tool("envoy", "ENVOY")
    workdir = tmp_path_factory.mktemp("fleet")
    cert, key = write_self_signed_certificate(workdir)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    # A long grace: the SIGTERM test checks that streams finish, not that they are cut.
    core_env = {"INFERNO_SHUTDOWN_GRACE_S": "60"}
    core_flags = ["--parallel", "8", "--ctx-size", "512", "--threads", "1", *tls]
    cores = []
    for _ in range(2):
        port = free_port()
        cores.append(InfernoProcess(["core", "--grpc-port", str(port), *core_flags], port, core_env, cert))
    envoy = RunningEnvoy(free_port(), free_port(), workdir / "envoy.log", tls_ca=cert)
    gateway_port, relay_port = free_port(), free_port()
    gateway_flags = ["--port", str(gateway_port), "--grpc-port", str(relay_port), *tls]
    gateway = InfernoProcess(["gateway", "--core", envoy.grpc_target, *gateway_flags], gateway_port, {}, cert)
    topology = Topology(
        cores=tuple(parse_core(f"127.0.0.1:{core.port}={MODEL}") for core in cores),
        gateways=(Address("127.0.0.1", gateway_port),),
        relays=(Address("127.0.0.1", relay_port),),
        listen=Address("127.0.0.1", envoy.listener_port),
        admin_port=envoy.admin_port,
        tls=EdgeTls(cert, key),
        upstream_ca=cert,
        descriptor=str(REPO_ROOT / "envoy" / "inferno.pb"),
        health_interval_s=HEALTH_INTERVAL_S,
    )
    try:
        for core in cores:
            core.start()
        for core in cores:
            core.wait_serving()
        gateway.start()
        gateway.wait_listening()
        with envoy_process(envoy_bin, render_yaml(topology), envoy):
            running = Fleet(cores, gateway, envoy, topology, cert)
            running.wait_all_healthy()
            yield running
    finally:
        gateway.stop()
        for core in cores:
            core.stop()


@pytest.fixture
def client(fleet: Fleet) -> Iterator[httpx.Client]:
    with fleet.envoy.http_client() as http_client:
        yield http_client


def _placement(fleet: Fleet, client: httpx.Client) -> dict[int, int]:
    """Each conversation sent once, alone, and the core whose count went up."""
    placement = {}
    for index in range(len(TOPICS)):
        before = fleet.served()
        response = fleet.chat(client, index)
        assert response.status_code == 200, response.text
        after = fleet.served()
        grown = [core for core in range(len(after)) if after[core] > before[core]]
        assert len(grown) == 1 and after[grown[0]] == before[grown[0]] + 1, (before, after)
        placement[index] = grown[0]
    return placement


@pytest.fixture
def placement(fleet: Fleet, client: httpx.Client) -> dict[int, int]:
    fleet.ensure_running()
    if not fleet.placement:
        fleet.placement.update(_placement(fleet, client))
    return fleet.placement


def test_every_hop_speaks_tls(fleet: Fleet, client: httpx.Client) -> None:
    fleet.ensure_running()
    assert fleet.chat(client, 0).status_code == 200  # client -> Envoy -> gateway -> Envoy -> core
    envoy = fleet.envoy
    assert envoy.stat(f"listener.127.0.0.1_{envoy.listener_port}.ssl.handshake") >= 2  # client and gateway
    assert envoy.stat("cluster.inferno_gateway.ssl.handshake") >= 1
    assert envoy.stat(f"cluster.{model_cluster(fleet.topology, MODEL)}.ssl.handshake") >= 1
    # client -> Envoy -> the gateway's gRPC relay -> Envoy -> core
    with envoy.channel() as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        assert MODEL in [model.id for model in stub.ListModels(model_service_pb2.ListModelsRequest()).models]
    assert envoy.stat("cluster.inferno_relay.ssl.handshake") >= 1
    assert envoy.stat("cluster.inferno_relay.upstream_rq_total") >= 1
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{envoy.listener_port}/v1/models", timeout=10)


def test_each_conversation_lands_on_the_same_core_every_time(fleet: Fleet, client: httpx.Client) -> None:
    fleet.ensure_running()
    first = _placement(fleet, client)
    again = _placement(fleet, client)
    assert again == first
    fleet.placement.update(first)


def test_distinct_conversations_spread_over_both_cores(placement: dict[int, int]) -> None:
    assert set(placement.values()) == {0, 1}, placement


def test_a_later_turn_of_a_conversation_stays_on_its_core(
    fleet: Fleet, client: httpx.Client, placement: dict[int, int]
) -> None:
    for index in (0, 1, 2):
        messages = [
            *conversation(index),
            {"role": "assistant", "content": "Here is one."},
            {"role": "user", "content": "And another?"},
        ]
        before = fleet.served()
        body = {"model": MODEL, "messages": messages, "max_tokens": 1}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        after = fleet.served()
        assert after[placement[index]] == before[placement[index]] + 1, (index, before, after)


def test_a_core_without_the_model_is_never_chosen(fleet: Fleet, tmp_path: Path) -> None:
    """A second Envoy over the same cores, told that the second core serves another model only: every
    conversation for the model goes to the first core."""
    envoy = RunningEnvoy(free_port(), free_port(), tmp_path / "envoy.log")
    first, second = fleet.cores
    topology = Topology(
        cores=(parse_core(f"127.0.0.1:{first.port}={MODEL}"), parse_core(f"127.0.0.1:{second.port}=other")),
        listen=Address("127.0.0.1", envoy.listener_port),
        admin_port=envoy.admin_port,
        upstream_ca=fleet.ca,
        descriptor=str(REPO_ROOT / "envoy" / "inferno.pb"),
        health_interval_s=HEALTH_INTERVAL_S,
    )
    assert model_cluster(topology, MODEL) != model_cluster(topology, "other")
    with envoy_process(require_tool("envoy", "ENVOY"), render_yaml(topology), envoy):
        before = fleet.served()
        with envoy.channel() as channel:
            stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
            for index in range(len(TOPICS)):
                request = _grpc_request(index, max_tokens=1)
                stub.CreateChatCompletion(
                    pb.CreateChatCompletionRequest(params=request.params),
                    metadata=routing_metadata(request),
                    timeout=60,
                )
        after = fleet.served()
    assert after[0] - before[0] == len(TOPICS) and after[1] == before[1], (before, after)


# --- streams through a fault --------------------------------------------------------------------------


@dataclass
class _Stream:
    index: int
    events: list[dict[str, Any] | str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float = 0.0


async def _sse_chat(session: aiohttp.ClientSession, stream: _Stream, max_tokens: int) -> None:
    body = {
        "model": MODEL,
        "messages": conversation(stream.index),
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    try:
        async with session.post("/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            async for line in response.content:
                text = line.decode().strip()
                if not text.startswith("data: "):
                    continue
                payload = text.removeprefix("data: ")
                stream.events.append(payload if payload == "[DONE]" else json.loads(payload))
                stream.started.set()
                if payload == "[DONE]":
                    break
    except aiohttp.ClientError as error:
        stream.events.append(f"connection lost: {error}")
    finally:
        stream.ended_at = time.monotonic()
        stream.started.set()


def _error_code(event: dict[str, Any] | str) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("error"), dict):
        return str(event["error"]["code"])
    return None


def _finished_normally(stream: _Stream) -> bool:
    events = stream.events
    if len(events) < 2 or events[-1] != "[DONE]" or any(_error_code(event) for event in events):
        return False
    last = events[-2]
    return isinstance(last, dict) and last["choices"][0]["finish_reason"] == "length"


async def _streams_through(fleet: Fleet, fault: Any, max_tokens: int) -> list[_Stream]:
    """The eight conversations streaming over SSE, each generating when `fault` runs; then to their ends."""
    streams = [_Stream(index) for index in range(len(TOPICS))]
    timeout = aiohttp.ClientTimeout(total=180)
    connector = aiohttp.TCPConnector(ssl=fleet.ssl_context())
    async with aiohttp.ClientSession(fleet.envoy.base_url, timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(_sse_chat(session, stream, max_tokens)) for stream in streams]
        await asyncio.wait_for(asyncio.gather(*(stream.started.wait() for stream in streams)), 120)
        await fault()
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
    return streams


def _grpc_request(index: int, max_tokens: int) -> pb.StreamChatCompletionRequest:
    params = chat_params(MODEL, "", max_tokens=max_tokens)
    del params.messages[:]
    params.messages.extend(pb.ChatMessage(role=m["role"], content=m["content"]) for m in conversation(index))
    params.limits.ignore_eos = True
    return pb.StreamChatCompletionRequest(params=params)


@dataclass
class _GrpcEnding:
    chunks: int = 0
    code: grpc.StatusCode | None = None
    error: InfernoError | None = None
    started: threading.Event = field(default_factory=threading.Event)


def _grpc_stream(fleet: Fleet, index: int, max_tokens: int, ending: _GrpcEnding) -> None:
    """A gRPC client of Envoy that sets no routing metadata: the gateway's relay routes it as the gateway
    routes the same conversation over HTTP."""
    request = _grpc_request(index, max_tokens)
    with fleet.envoy.channel() as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        try:
            for _ in stub.StreamChatCompletion(request, timeout=180):
                ending.chunks += 1
                ending.started.set()
            ending.code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            ending.code = error.code()
            ending.error = error_from_rpc(error)
        finally:
            ending.started.set()


def test_sigterm_drains_a_core_without_failing_a_stream(
    fleet: Fleet, client: httpx.Client, placement: dict[int, int]
) -> None:
    victim = max((0, 1), key=lambda core: list(placement.values()).count(core))
    others = [index for index, core in placement.items() if core == victim]
    process = fleet.cores[victim].running()
    health_during_drain: list[int] = []
    refusals: list[InfernoError | None] = []
    late: list[tuple[int, httpx.Response]] = []
    served: dict[str, int] = {}
    signalled_at = 0.0

    async def terminate() -> None:
        nonlocal signalled_at
        signalled_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        health_during_drain.append(await asyncio.to_thread(fleet.cores[victim].health))
        refusals.append(await asyncio.to_thread(_direct_call_error, fleet.cores[victim]))
        # New requests for the draining core's conversations, at once: Envoy retries them on the other.
        served["before"] = await asyncio.to_thread(fleet.served_by, 1 - victim)
        for index in others:
            late.append((index, await asyncio.to_thread(fleet.chat, client, index)))
        served["after"] = await asyncio.to_thread(fleet.served_by, 1 - victim)

    streams = asyncio.run(_streams_through(fleet, terminate, max_tokens=128))
    assert process.wait(timeout=90) == 0, fleet.cores[victim].log_tail()
    assert health_during_drain == [health_pb2.HealthCheckResponse.NOT_SERVING]
    # Asked directly, the draining core refuses a new call with the status Envoy retries on.
    assert refusals[0] is not None and refusals[0].code == "core_unavailable", refusals
    assert refusals[0].kind.grpc_status is grpc.StatusCode.UNAVAILABLE
    for stream in streams:
        assert _finished_normally(stream), (stream.index, stream.events[-3:])
    # The drain let the victim's streams run on after the signal.
    assert any(stream.ended_at > signalled_at for stream in streams if placement[stream.index] == victim)
    for index, response in late:
        assert response.status_code == 200, (index, response.text)
    assert served["after"] - served["before"] == len(others), served


def test_outlier_detection_ejects_a_core_that_keeps_failing(
    fleet: Fleet, placement: dict[int, int], tmp_path: Path
) -> None:
    """A second Envoy whose health checks come a minute apart, so only outlier detection can notice: a core
    draining (kept so by a stream held open) refuses every new call with UNAVAILABLE while its last health
    check said SERVING. Envoy retries each call on the other core, and after three failures in a row ejects
    the draining one."""
    victim = placement[0]
    on_victim = [index for index, core in placement.items() if core == victim]
    envoy = RunningEnvoy(free_port(), free_port(), tmp_path / "envoy.log")
    topology = Topology(
        cores=tuple(parse_core(f"127.0.0.1:{core.port}={MODEL}") for core in fleet.cores),
        listen=Address("127.0.0.1", envoy.listener_port),
        admin_port=envoy.admin_port,
        upstream_ca=fleet.ca,
        descriptor=str(REPO_ROOT / "envoy" / "inferno.pb"),
        health_interval_s=60,
    )
    cluster = model_cluster(topology, MODEL)
    process = fleet.cores[victim].running()
    with (
        envoy_process(require_tool("envoy", "ENVOY"), render_yaml(topology), envoy),
        fleet.cores[victim].channel() as direct,
    ):
        held = inference_service_pb2_grpc.InferenceServiceStub(direct).StreamChatCompletion(
            _grpc_request(0, max_tokens=400), timeout=120
        )
        next(held)  # generating: the drain waits for it
        process.send_signal(signal.SIGTERM)
        with envoy.channel() as channel:
            stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
            for index in (on_victim * 4)[:4]:
                request = _grpc_request(index, max_tokens=1)
                stub.CreateChatCompletion(
                    pb.CreateChatCompletionRequest(params=request.params),
                    metadata=routing_metadata(request),
                    timeout=60,
                )
        ejections = envoy.stat(f"cluster.{cluster}.outlier_detection.ejections_enforced_total")
        clusters = httpx.get(f"{envoy.admin_url}/clusters", timeout=10).text
        held.cancel()
    assert process.wait(timeout=60) == 0
    assert ejections >= 1
    victim_flags = f"{cluster}::127.0.0.1:{fleet.cores[victim].port}::health_flags::"
    assert f"{victim_flags}/failed_outlier_check" in clusters, clusters


def _direct_call_error(core: InfernoProcess) -> InfernoError | None:
    """The error a ListModels call straight to the core ends with (None: it succeeded)."""
    with core.channel() as channel:
        try:
            model_service_pb2_grpc.ModelServiceStub(channel).ListModels(
                model_service_pb2.ListModelsRequest(), timeout=10
            )
        except grpc.RpcError as error:
            return error_from_rpc(error)
    return None


def test_kill_9_fails_only_the_streams_on_the_dead_core_and_the_other_takes_over(
    fleet: Fleet, client: httpx.Client, placement: dict[int, int]
) -> None:
    victim = placement[0]
    on_victim = {index for index, core in placement.items() if core == victim}
    process = fleet.cores[victim].running()
    grpc_ending = _GrpcEnding()
    grpc_thread = threading.Thread(target=_grpc_stream, args=(fleet, 0, 400, grpc_ending))

    killed_at = 0.0

    async def kill() -> None:
        nonlocal killed_at
        await asyncio.to_thread(grpc_ending.started.wait, 60)
        killed_at = time.monotonic()
        process.kill()

    grpc_thread.start()
    streams = asyncio.run(_streams_through(fleet, kill, max_tokens=240))
    grpc_thread.join(120)
    process.wait(timeout=30)
    # Every stream either ran to its end or was cut with the seed's error body as the last event before
    # [DONE], and only the dead core's conversations are cut. Which ones were still running is read from the
    # streams, not from the clock: a stream whose last events were in flight at the kill ended normally.
    cut = [stream for stream in streams if not _finished_normally(stream)]
    assert cut, "no stream was still running on the killed core"
    for stream in cut:
        assert stream.index in on_victim, (stream.index, placement)
        assert stream.ended_at > killed_at, (stream.index, stream.events[-3:])
        assert stream.events[-1] == "[DONE]", (stream.index, stream.events[-3:])
        assert _error_code(stream.events[-2]) == "core_unavailable", (stream.index, stream.events[-3:])
    # A gRPC client through Envoy: its call (relayed by the gateway) ends UNAVAILABLE with the seed's code.
    assert grpc_ending.chunks > 0 and grpc_ending.code is grpc.StatusCode.UNAVAILABLE, grpc_ending
    assert grpc_ending.error is not None and grpc_ending.error.code == "core_unavailable", grpc_ending
    # After the health checks have seen it dead, its conversations are served by the other core.
    time.sleep(UNHEALTHY_AFTER_S)
    flags = fleet.healthy_in_envoy()
    cluster = model_cluster(fleet.topology, MODEL)
    assert flags[f"{cluster}::127.0.0.1:{fleet.cores[victim].port}"] is False, flags
    survivor = 1 - victim
    before = fleet.served_by(survivor)
    for index in sorted(on_victim):
        response = fleet.chat(client, index)
        assert response.status_code == 200, (index, response.text)
    assert fleet.served_by(survivor) - before == len(on_victim)
    # Envoy's workers took every health change (the restarts before this test, this kill) when its checks
    # saw it: merged ones came up to a second late, and requests went on to a dead core or around a live one.
    assert fleet.envoy.stat("cluster_manager.cluster_updated_via_merge") == 0
