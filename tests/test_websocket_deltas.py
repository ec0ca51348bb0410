"""A WebSocket chat carries the same deltas as the SSE stream of the same request: role, text, tool-call
pieces, logprobs and each choice's finish_reason in its chat_chunk frames, and the usage in chat_done.

Where one stream's message ends and the next begins depends on timing (the core hands running streams'
tokens over at most every --stream-interval-ms), so the deltas are compared joined up, not frame by frame."""

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


def _joined(choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The deltas of one choice joined up: role, text, each tool call's pieces (its random id blanked), the
    finish reasons given."""
    calls: dict[int, dict[str, Any]] = {}
    for choice in choices:
        for piece in choice["delta"].get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"arguments": ""})
            if "id" in piece:
                assert piece["id"].startswith("call_") and "id" not in call
                call["id"] = "call_*"
            call.update({k: v for k, v in piece.items() if k not in ("id", "index", "function")})
            function = piece.get("function", {})
            if "name" in function:
                call["name"] = function["name"]
            call["arguments"] += function.get("arguments") or ""
    return {
        "roles": [c["delta"]["role"] for c in choices if "role" in c["delta"]],
        "content": "".join(c["delta"].get("content") or "" for c in choices),
        "tool_calls": calls,
        "finish_reasons": [c["finish_reason"] for c in choices if c["finish_reason"] is not None],
    }


def _assert_same_usage(ws: dict[str, Any], sse: dict[str, Any]) -> None:
    """The same counts; the second request (over WS) reads at least as much of the prompt from the cache."""
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert {k: ws[k] for k in counts} == {k: sse[k] for k in counts}
    assert ws["prompt_tokens_details"]["cached_tokens"] >= sse["prompt_tokens_details"]["cached_tokens"]


def _logprobs(choices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for c in choices if c.get("logprobs") for entry in c["logprobs"]["content"]]


def _assert_same_logprobs(ws: list[dict[str, Any]], sse: list[dict[str, Any]]) -> None:
    assert len(ws) == len(sse)
    for ours, theirs in zip(ws, sse, strict=True):
        assert (ours["token"], ours["bytes"]) == (theirs["token"], theirs["bytes"])
        assert math.isclose(ours["logprob"], theirs["logprob"], abs_tol=_LOGPROB_TOLERANCE)
        assert [t["token"] for t in ours["top_logprobs"]] == [t["token"] for t in theirs["top_logprobs"]]


def test_a_forced_tool_call_streams_the_same_deltas_over_ws_and_sse(
    server: RunningServer, http: httpx.Client, model_id: str
) -> None:
    body = {"model": model_id, **FORCED_TOOL_CALL}
    sse_choices, sse_usage = _sse_stream(http, body)
    ws_choices, done = _ws_stream(server, body)

    assert _joined(ws_choices) == _joined(sse_choices)
    calls = [c for choice in ws_choices for c in choice["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["type"] == "function"
    arguments = json.loads("".join(c["function"]["arguments"] for c in calls))
    assert arguments["unit"] in ("celsius", "fahrenheit") and arguments["city"]
    assert ws_choices[-1]["finish_reason"] == "tool_calls" == done["finish_reason"]
    _assert_same_usage(done["usage"], sse_usage)


def test_logprobs_stream_the_same_over_ws_and_sse(
    server: RunningServer, http: httpx.Client, model_id: str
) -> None:
    body = {"model": model_id, **WITH_LOGPROBS}
    sse_choices, sse_usage = _sse_stream(http, body)
    ws_choices, done = _ws_stream(server, body)

    assert _joined(ws_choices) == _joined(sse_choices)
    _assert_same_logprobs(_logprobs(ws_choices), _logprobs(sse_choices))
    streamed = _logprobs(ws_choices)
    assert len(streamed) == done["usage"]["completion_tokens"] == 12
    assert "".join(e["token"] for e in streamed) == "".join(c["delta"].get("content", "") for c in ws_choices)
    assert done["finish_reason"] == "length"
    _assert_same_usage(done["usage"], sse_usage)
