"""A WebSocket chat carries the same deltas as the SSE stream of the same request: role, text, tool-call
pieces, logprobs and each choice's finish_reason in its chat_chunk frames, and the usage in chat_done."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import httpx

from tests.response_samples import WEATHER_TOOL
from tests.servers import RunningServer

FORCED_TOOL_CALL = {
    "messages": [{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "max_tokens": 120,
    "temperature": 0.8,
    "seed": 7,
}
WITH_LOGPROBS = {
    "messages": [{"role": "user", "content": "Name a colour."}],
    "max_tokens": 12,
    "ignore_eos": True,
    "temperature": 0.8,
    "seed": 11,
    "logprobs": True,
    "top_logprobs": 3,
}
# Two runs of the same seeded request sample the same tokens; their log-probabilities come from the same
# weights but the prompt may be decoded in other batches (the prefix cache), so floats are compared closely.
_LOGPROB_TOLERANCE = 1e-3


def _sse_stream(http: httpx.Client, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(every choice of every chunk, the usage of the final chunk)."""
    request = {**body, "stream": True, "stream_options": {"include_usage": True}}
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] = {}
    with http.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            choices.extend(chunk["choices"])
            usage = chunk.get("usage") or usage
    return choices, usage


def _ws_stream(server: RunningServer, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the data of every chat_chunk frame, the data of chat_done)."""

    async def chat() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.base_url + "/ws") as socket:
            await socket.send_json({"type": "chat", "id": "deltas", "data": body})
            chunks: list[dict[str, Any]] = []
            while True:
                frame = json.loads((await socket.receive(timeout=120)).data)
                assert frame["id"] == "deltas" and frame["type"] != "error", frame
                if frame["type"] == "chat_done":
                    return chunks, frame["data"]
                chunks.append(frame["data"])

    return asyncio.run(chat())


def _without_call_ids(choices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The choices with each tool call's id blanked: every call gets a fresh random id."""
    stripped = json.loads(json.dumps(choices))
    for choice in stripped:
        for call in choice["delta"].get("tool_calls", []):
            if "id" in call:
                assert call["id"].startswith("call_")
                call["id"] = "call_*"
    return stripped


def _assert_same_logprobs(ws: dict[str, Any] | None, sse: dict[str, Any] | None) -> None:
    if ws is None or sse is None:
        assert ws is sse
        return
    assert len(ws["content"]) == len(sse["content"])
    for ours, theirs in zip(ws["content"], sse["content"], strict=True):
        assert (ours["token"], ours["bytes"]) == (theirs["token"], theirs["bytes"])
        assert math.isclose(ours["logprob"], theirs["logprob"], abs_tol=_LOGPROB_TOLERANCE)
        assert [t["token"] for t in ours["top_logprobs"]] == [t["token"] for t in theirs["top_logprobs"]]


def test_a_forced_tool_call_streams_the_same_deltas_over_ws_and_sse(
    server: RunningServer, http: httpx.Client, model_id: str
) -> None:
    body = {"model": model_id, **FORCED_TOOL_CALL}
    sse_choices, sse_usage = _sse_stream(http, body)
    ws_choices, done = _ws_stream(server, body)

    assert _without_call_ids(ws_choices) == _without_call_ids(sse_choices)
    calls = [c for choice in ws_choices for c in choice["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["type"] == "function"
    arguments = json.loads("".join(c["function"]["arguments"] for c in calls))
    assert arguments["unit"] in ("celsius", "fahrenheit") and arguments["city"]
    assert ws_choices[-1]["finish_reason"] == "tool_calls" == done["finish_reason"]
    assert done["usage"] == sse_usage


def test_logprobs_stream_the_same_over_ws_and_sse(
    server: RunningServer, http: httpx.Client, model_id: str
) -> None:
    body = {"model": model_id, **WITH_LOGPROBS}
    sse_choices, sse_usage = _sse_stream(http, body)
    ws_choices, done = _ws_stream(server, body)

    assert [c["delta"] for c in ws_choices] == [c["delta"] for c in sse_choices]
    assert [c["finish_reason"] for c in ws_choices] == [c["finish_reason"] for c in sse_choices]
    for ours, theirs in zip(ws_choices, sse_choices, strict=True):
        _assert_same_logprobs(ours["logprobs"], theirs["logprobs"])
    streamed = [entry for c in ws_choices if c["logprobs"] for entry in c["logprobs"]["content"]]
    assert len(streamed) == done["usage"]["completion_tokens"] == 12
    assert "".join(e["token"] for e in streamed) == "".join(c["delta"].get("content", "") for c in ws_choices)
    assert done == {"finish_reason": "length", "usage": sse_usage}
