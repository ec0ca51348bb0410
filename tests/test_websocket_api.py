"""GET /ws: chats streamed as chat_chunk + chat_done; bad messages get error frames on an open socket."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import grpc

from tests.grpc_helpers import engine_stats


async def _frames_until_done(socket: aiohttp.ClientWebSocketResponse, chat_id: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads((await socket.receive(timeout=60)).data)
        if frame.get("id") == chat_id:
            frames.append(frame)
            if frame["type"] in ("chat_done", "error"):
                return frames


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_chat_streams_chunks_then_done_with_usage(server, model_id: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.base_url + "/ws") as socket:
            data = {
                "model": model_id,
                "messages": [{"role": "user", "content": "Tell me a story"}],
                "max_tokens": 12,
            }
            await socket.send_json({"type": "chat", "id": "chat_001", "data": data})
            return await _frames_until_done(socket, "chat_001")

    frames = _run(scenario())
    chunks, done = frames[:-1], frames[-1]
    assert chunks and all(f["type"] == "chat_chunk" for f in chunks)
    assert "".join(f["data"]["delta"].get("content", "") for f in chunks).strip()
    assert done["type"] == "chat_done"
    usage = done["data"]["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12


def test_bad_messages_get_errors_and_the_socket_stays_open(server, model_id: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.base_url + "/ws") as socket:
            replies = []
            await socket.send_str("{not json")
            replies.append(json.loads((await socket.receive(timeout=10)).data))
            await socket.send_json({"type": "teleport", "id": "x1", "data": {}})
            replies.append(json.loads((await socket.receive(timeout=10)).data))
            await socket.send_json({"type": "chat", "id": "x2", "data": {"model": model_id, "messages": []}})
            replies.append(json.loads((await socket.receive(timeout=10)).data))
            await socket.send_json(
                {
                    "type": "chat",
                    "id": "x3",
                    "data": {"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
                }
            )
            replies.append(json.loads((await socket.receive(timeout=10)).data))
            data = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
            await socket.send_json({"type": "chat", "id": "ok", "data": data})
            replies.append((await _frames_until_done(socket, "ok"))[-1])
            return replies

    not_json, unknown_type, empty_messages, unknown_model, ok = _run(scenario())
    assert not_json["type"] == "error" and not_json["data"]["error"]["code"] == "invalid_json"
    assert unknown_type["type"] == "error" and unknown_type["id"] == "x1"
    assert empty_messages["data"]["error"]["details"]["param"] == "messages"
    assert unknown_model["data"]["error"]["code"] == "model_not_found"
    assert ok["type"] == "chat_done"


def test_closing_the_socket_cancels_its_chat(server, grpc_channel: grpc.Channel, model_id: str) -> None:
    async def scenario() -> int:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.base_url + "/ws") as socket:
                data = {
                    "model": model_id,
                    "messages": [{"role": "user", "content": "Write a very long story."}],
                    "max_tokens": 2000,
                    "temperature": 0.9,
                }
                await socket.send_json({"type": "chat", "id": "long", "data": data})
                for _ in range(4):
                    await socket.receive(timeout=60)
                running = engine_stats(grpc_channel, model_id).running_sequences
            return running

    assert _run(scenario()) >= 1
    deadline = time.monotonic() + 10
    while engine_stats(grpc_channel, model_id).running_sequences and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_stats(grpc_channel, model_id).running_sequences == 0
