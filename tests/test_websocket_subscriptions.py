"""WebSocket dashboard subscriptions on the model-management server: model status with real load progress,
live metrics whose inference rate moves while a request runs, unsubscribe, and many subscribers at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx

from inferno.core.embedded import EMBEDDED_MODEL_ID, EMBEDDING_MODEL_ID
from tests.management_helpers import unloaded
from tests.servers import RunningServer


async def _frames(
    socket: aiohttp.ClientWebSocketResponse, until: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads((await socket.receive()).data)
            frames.append(frame)
            if until(frame):
                return frames


def test_model_subscription_sees_real_load_progress(
    managed_server: RunningServer, managed_http: httpx.Client
) -> None:
    unloaded(managed_http, "second")

    async def scenario() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(managed_server.base_url + "/ws") as socket,
        ):
            await socket.send_json({"type": "subscribe_models", "id": "models_001"})
            seen: set[str] = set()
            snapshot = await _frames(socket, lambda f: len(seen.add(f["data"]["model_id"]) or seen) == 4)
            order = ["second", "broken", EMBEDDED_MODEL_ID, EMBEDDING_MODEL_ID]
            assert [f["data"]["model_id"] for f in snapshot] == order
            second, broken, embedded, _ = (f["data"]["status"] for f in snapshot)
            assert (second, embedded) == ("unloaded", "loaded") and broken in ("unloaded", "failed")
            load = asyncio.create_task(session.post(managed_server.base_url + "/v1/models/second/load"))
            frames = await _frames(
                socket, lambda f: f["data"]["model_id"] == "second" and f["data"]["status"] == "loaded"
            )
            assert (await load).status == 200
            return [f for f in frames if f["data"]["model_id"] == "second"]

    frames = asyncio.run(scenario())
    assert all(f["type"] == "model_status" and f["id"] == "models_001" for f in frames)
    loading = [f["data"] for f in frames if f["data"]["status"] == "loading"]
    progress = [d["progress"] for d in loading]
    assert progress == sorted(progress)
    # Coalesced to about ten a second, but every phase comes through (test_load_progress.py checks pacing).
    assert list(dict.fromkeys(d["phase"] for d in loading)) == [
        "queued",
        "reading_weights",
        "creating_context",
    ]
    assert any(d["eta"] is not None and d["eta"].endswith("s") for d in loading)
    assert frames[-1]["data"]["progress"] == 100.0


def test_metrics_subscription_reports_what_was_asked_and_a_moving_inference_rate(
    managed_server: RunningServer,
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(managed_server.base_url + "/ws") as socket,
        ):
            subscription = {"interval": 200, "metrics": ["cpu", "memory", "inference_rate"]}
            await socket.send_json({"type": "subscribe_metrics", "id": "metrics_001", "data": subscription})
            body = {
                "model": EMBEDDED_MODEL_ID,
                "messages": [{"role": "user", "content": "Count to one hundred."}],
                "max_tokens": 150,
                "ignore_eos": True,
            }
            chat = asyncio.create_task(
                session.post(managed_server.base_url + "/v1/chat/completions", json=body)
            )
            frames = await _frames(socket, lambda f: chat.done())
            assert (await chat).status == 200
            await socket.send_json({"type": "unsubscribe", "id": "metrics_001"})
            tail = await _frames(socket, lambda f: f["type"] == "unsubscribed")
            with_after = await _frames_for(socket, 0.6)
            assert not [f for f in with_after if f.get("id") == "metrics_001"]
            return frames + tail[:-1]

    frames = asyncio.run(scenario())
    updates = [f["data"] for f in frames if f["type"] == "metrics_update"]
    assert len(updates) >= 3
    for update in updates:
        assert set(update) == {"timestamp", "cpu", "memory", "inference_rate"}
        assert 0 < update["memory"] < 100 and update["cpu"] >= 0
    assert max(u["inference_rate"] for u in updates) > 10


async def _frames_for(socket: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frames.append(json.loads((await socket.receive()).data))
    except TimeoutError:
        return frames


def test_many_subscribers_at_once_while_a_chat_runs(managed_server: RunningServer) -> None:
    async def scenario() -> tuple[list[int], int]:
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(managed_server.base_url + "/ws") for _ in range(20)]
            for i, socket in enumerate(sockets):
                await socket.send_json(
                    {"type": "subscribe_metrics", "id": f"m{i}", "data": {"interval": 100}}
                )
                await socket.send_json({"type": "subscribe_models", "id": f"s{i}"})
            body = {
                "model": EMBEDDED_MODEL_ID,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 32,
            }
            reply = await session.post(managed_server.base_url + "/v1/chat/completions", json=body)
            counts = []
            for socket in sockets:
                frames = await _frames_for(socket, 0.5)
                counts.append(len([f for f in frames if f["type"] == "metrics_update"]))
                await socket.close()
            return counts, reply.status

    counts, status = asyncio.run(scenario())
    assert status == 200
    assert all(count >= 2 for count in counts)


def test_bad_subscriptions_get_error_frames_naming_the_field(managed_server: RunningServer) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(managed_server.base_url + "/ws") as socket,
        ):
            replies = []
            for data in ({"interval": 5}, {"metrics": ["disk"]}, "fast"):
                await socket.send_json({"type": "subscribe_metrics", "id": "bad", "data": data})
                replies.append(json.loads((await socket.receive(timeout=10)).data))
            await socket.send_json({"type": "unsubscribe", "id": "never"})
            replies.append(json.loads((await socket.receive(timeout=10)).data))
            return replies

    replies = asyncio.run(scenario())
    assert [r["type"] for r in replies] == ["error"] * 4
    assert [r["data"]["error"]["details"]["param"] for r in replies] == [
        "data.interval",
        "data.metrics",
        "data",
        "id",
    ]
