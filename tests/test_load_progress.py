"""Load progress is coalesced once, in the core, for every kind of watcher: about ten updates a second per
model, the start and the end (and every change of state or phase) always sent, percentages never going back,
the seed's `progress` and `eta` while loading. One real load is watched over the WebSocket and SSE at once,
one over gRPC, and the manager's pacing is checked with a scripted load that bursts and stalls."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from prometheus_client import CollectorRegistry

from inferno.config_file import ManagementConfig, ModelConfig
from inferno.core.catalog import ModelEntry, build_catalog
from inferno.core.embedded import embedded_model_path
from inferno.core.engines.factory import EngineFactory, LoadReport
from inferno.core.metrics import EngineMetrics
from inferno.core.model_manager import (
    PROGRESS_INTERVAL_S,
    LoadProgress,
    ManagerOptions,
    ModelManager,
    ModelState,
)
from inferno.core.runtime.served_model import ServedModel
from inferno.engine_settings import EngineSettings
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc
from tests.management_helpers import unloaded
from tests.servers import RunningServer

# Besides the steps (one per interval at most): the start, the end, and the two phase changes of a llama.cpp
# load (reading weights, creating the context), plus one for a step at each end of the window.
_ALWAYS_SENT = 5


def _allowed_updates(load_seconds: float) -> int:
    return int(load_seconds / PROGRESS_INTERVAL_S) + _ALWAYS_SENT


def _server_load_seconds(http: httpx.Client, model_id: str) -> float:
    return float(http.get(f"/v1/models/{model_id}/status").json()["load_seconds"])


def _check_loading_updates(loading: list[dict[str, Any]]) -> None:
    """The updates of one load before its end: the start first, every phase in order, percentages that never
    go back, and an eta on each once there is a rate. (How many steps come between depends on how long the
    load takes: a cached 135M model reads its weights in milliseconds, so often none.)"""
    progress = [u["progress"] for u in loading]
    assert loading[0]["progress"] == 0 and loading[0]["status"] == "loading"
    assert progress == sorted(progress)
    phases = list(dict.fromkeys(u["phase"] for u in loading))
    assert phases == ["queued", "reading_weights", "creating_context"]
    for update in loading:
        assert update["status"] == "loading"
        if update["progress"] > 0:
            assert isinstance(update["eta"], str) and update["eta"].endswith("s")


def test_websocket_and_sse_subscribers_get_coalesced_progress(
    managed_server: RunningServer, managed_http: httpx.Client
) -> None:
    unloaded(managed_http, "second")
    models = len(managed_http.get("/v1/models").json()["data"])

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(managed_server.base_url + "/ws") as socket,
        ):
            await socket.send_json({"type": "subscribe_models", "id": "models_001"})
            for _ in range(models):  # every model's state now
                await socket.receive_json(timeout=30)
            started = time.monotonic()
            sse = asyncio.create_task(_sse_events(session, managed_server.base_url))
            frames: list[dict[str, Any]] = []
            async with asyncio.timeout(120):
                while not frames or frames[-1]["data"]["status"] != "loaded":
                    frame = await socket.receive_json()
                    if frame["data"]["model_id"] == "second":
                        frames.append(frame)
            events = await sse
            return frames, events, time.monotonic() - started

    frames, events, elapsed = asyncio.run(scenario())
    allowed = _allowed_updates(max(elapsed, _server_load_seconds(managed_http, "second")))

    assert all(f["type"] == "model_status" and f["id"] == "models_001" for f in frames)
    updates = [f["data"] for f in frames]
    assert 3 < len(updates) <= allowed, (len(updates), allowed)
    assert updates[-1]["status"] == "loaded" and updates[-1]["progress"] == 100.0
    _check_loading_updates(updates[:-1])

    assert 3 < len(events) <= allowed, (len(events), allowed)
    assert events[-1]["type"] == "loaded" and events[-1]["progress"] == 100.0
    assert events[-1]["model_id"] == "second" and events[-1]["status"] == "success"
    assert all(e["type"] == "progress" for e in events[:-1])
    _check_loading_updates(events[:-1])


async def _sse_events(session: aiohttp.ClientSession, base_url: str) -> list[dict[str, Any]]:
    async with session.post(base_url + "/v1/models/second/load?stream=true") as reply:
        assert reply.status == 200 and reply.content_type == "text/event-stream"
        lines = [line.decode().strip() async for line in reply.content]
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_grpc_load_streams_are_coalesced_too(
    managed_http: httpx.Client, models_stub: model_service_pb2_grpc.ModelServiceStub
) -> None:
    unloaded(managed_http, "second")
    started = time.monotonic()
    updates = list(models_stub.LoadModel(pb.LoadModelRequest(model_id="second")))
    elapsed = time.monotonic() - started
    assert 3 < len(updates) <= _allowed_updates(max(elapsed, _server_load_seconds(managed_http, "second")))
    assert updates[0].phase == pb.LOAD_PHASE_QUEUED and updates[0].percent == 0
    assert updates[-1].phase == pb.LOAD_PHASE_READY and updates[-1].percent == 100
    phases = [u.phase for u in updates]
    assert pb.LOAD_PHASE_READING_WEIGHTS in phases and pb.LOAD_PHASE_CREATING_CONTEXT in phases


class _BurstThenStall(EngineFactory):
    """A real load, after a scripted one: 400 steps as fast as they come, then none for STALL_S at 40%."""

    STALL_S = 0.6
    burst_started = stalled_at = 0.0

    def build(self, entry: ModelEntry, report: LoadReport) -> tuple[ServedModel, ModelEntry]:
        self.burst_started = time.monotonic()
        for step in range(400):
            report("reading_weights", step / 1000)
            time.sleep(0.001)
        report("reading_weights", 0.4)
        self.stalled_at = time.monotonic()
        time.sleep(self.STALL_S)
        return super().build(entry, lambda phase, fraction: report(phase, 0.4 + 0.6 * fraction))


def test_the_manager_sends_a_held_back_step_when_its_interval_ends(tmp_path: Path) -> None:
    directory = tmp_path / "models"
    directory.mkdir()
    shutil.copy(embedded_model_path(), directory / "a.gguf")
    settings = EngineSettings(parallel_sequences=1, context_length=256, threads=2)
    config = ManagementConfig(models_dirs=(directory,), models=(ModelConfig("a.gguf", id="a"),))
    entries = [e for e in build_catalog(config, (), settings) if e.id == "a"]
    metrics = EngineMetrics(CollectorRegistry())
    factory = _BurstThenStall(metrics)
    received = asyncio.run(_watch_one_load(ModelManager(entries, ManagerOptions(), metrics, factory)))

    times = [t for t, _ in received]
    updates = [p for _, p in received]
    assert updates[0].state is ModelState.LOADING and updates[0].percent == 0
    assert updates[-1].state is ModelState.LOADED and updates[-1].percent == 100
    percents = [u.percent for u in updates]
    assert percents == sorted(percents)
    # Steps within one state and phase are an interval apart at least (a little less for timer jitter).
    for (t0, a), (t1, b) in itertools.pairwise(received):
        if (a.state, a.phase) == (b.state, b.phase):
            assert t1 - t0 >= PROGRESS_INTERVAL_S * 0.9
    # The 401 reports of the burst became about one update per interval, besides the start and the phase
    # change: fewer would hide real progress, more would flood the watchers...
    at_stall = percents.index(40.0)
    steps = at_stall + 1 - 2
    intervals = (factory.stalled_at - factory.burst_started) / PROGRESS_INTERVAL_S
    assert intervals - 2 <= steps <= intervals + 1
    # ...and the 40% it ended on came when its interval was over, not after the stall.
    assert times[at_stall] - factory.stalled_at <= PROGRESS_INTERVAL_S + 0.15
    assert times[at_stall + 1] - factory.stalled_at >= _BurstThenStall.STALL_S * 0.9


async def _watch_one_load(manager: ModelManager) -> list[tuple[float, LoadProgress]]:
    """Every update a watcher of all models gets while model "a" loads, with when it came."""
    received: list[tuple[float, LoadProgress]] = []
    with manager.watch() as changes:
        load = asyncio.create_task(manager.load("a"))
        while not received or received[-1][1].state is not ModelState.LOADED:
            progress = await changes.get()
            received.append((time.monotonic(), progress))
        await load
    await manager.close()
    return received
