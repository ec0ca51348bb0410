"""Requests that make the session server write each shape of its main responses, for the schema tests
(test_openapi_document.py against our OpenAPI document, test_openai_fidelity.py against OpenAI's types).

Every request keeps what it generates small. Streams are read whole: the data of every SSE event before
[DONE], parsed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

Body = dict[str, Any]

# The weather tool the tool-call tests of several APIs ask for (its arguments in the tool's JSON schema).
WEATHER_PARAMETERS: Body = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL: Body = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
_QUESTION = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]

# By what each shows: a name for the test ids, the body without its model.
CHAT_REQUESTS: dict[str, Body] = {
    "n=2 with logprobs": {
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "n": 2,
        "temperature": 0.8,
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 2,
    },
    "tool call": {
        "messages": _QUESTION,
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0,
        "max_tokens": 100,
    },
    # The first word ends at the first space: finish_reason "stop".
    "stopped by a stop sequence": {
        "messages": [{"role": "user", "content": "Tell me about Paris."}],
        "max_tokens": 20,
        "stop": [" "],
    },
}
COMPLETION_REQUESTS: dict[str, Body] = {
    "two prompts with logprobs and echo": {
        "prompt": ["Hello", "1, 2, 3,"],
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": 2,
        "echo": True,
    },
    "n=2": {"prompt": "Once upon a time", "max_tokens": 4, "n": 2, "seed": 5},
}
EMBEDDING_REQUESTS: dict[str, Body] = {
    "float": {"input": ["a red apple", "the stock market"], "encoding_format": "float"},
    "base64": {"input": "a red apple", "encoding_format": "base64"},
}


def streamed(body: Body) -> Body:
    """The same request streamed, with the final usage chunk."""
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def with_model(body: Body, model_id: str) -> Body:
    return {"model": model_id, **body}


def sse_events(http: httpx.Client, path: str, body: Body) -> list[Any]:
    """POST body to path and read the whole event stream: each event's data, parsed, up to [DONE]."""
    events: list[Any] = []
    with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        done = False
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                break
            events.append(json.loads(data))
    assert done, f"no [DONE] after {len(events)} events"
    return events


def error_requests(model_id: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Requests the server refuses, by the error they show: (method, path, httpx request arguments)."""
    chat = "/v1/chat/completions"
    return {
        "invalid_json": ("POST", chat, {"content": b"{not json"}),
        "invalid_parameters": ("POST", chat, {"json": {"model": model_id, "messages": []}}),
        "model_not_found": ("POST", chat, {"json": {"model": "no-such-model", "messages": _QUESTION}}),
        "context_length_exceeded": (
            "POST",
            "/v1/completions",
            {"json": {"model": model_id, "prompt": "word " * 10_000, "max_tokens": 1}},
        ),
        "unknown model id": ("GET", "/v1/models/no-such-model", {}),
        "method_not_allowed": ("GET", chat, {}),
        "not_found": ("GET", "/v1/no-such-route", {}),
        "bad encoding_format": (
            "POST",
            "/v1/embeddings",
            {"json": {"model": model_id, "input": "x", "encoding_format": "hex"}},
        ),
    }
