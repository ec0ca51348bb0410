"""Tool calls end to end: the 135M model's calls are valid for the schema because a grammar constrains them,
and they come back in OpenAI's shapes, unary and streamed, over REST and gRPC."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
from openai import OpenAI

from inferno.v1 import common_pb2, inference_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 40}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a timezone",
            "parameters": TIME_PARAMETERS,
        },
    },
]
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
QUESTION = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def _check_call(name: str, arguments: str) -> dict[str, Any]:
    assert name in SCHEMAS
    value = json.loads(arguments)
    jsonschema.validate(value, SCHEMAS[name])
    return value


def test_required_tool_calls_validate_against_their_schema(openai_client: OpenAI, model_id: str) -> None:
    for seed in (1, 2, 3):
        reply = openai_client.chat.completions.create(
            model=model_id, messages=QUESTION, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
            temperature=0.9, seed=seed, max_tokens=200,
        )  # fmt: skip
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls or []
        assert len(calls) == 1
        assert calls[0].type == "function" and calls[0].id.startswith("call_")
        _check_call(calls[0].function.name, calls[0].function.arguments)


def test_parallel_tool_calls_each_validate(openai_client: OpenAI, model_id: str) -> None:
    """With parallel calls the small model may go on calling until max_tokens; every call it finished is
    valid, and only a reply cut by max_tokens may end in an unfinished one."""
    counts = []
    for seed in (1, 2, 3):
        reply = openai_client.chat.completions.create(
            model=model_id, messages=QUESTION, tools=TOOLS, tool_choice="required",
            temperature=0.9, seed=seed, max_tokens=200,
        )  # fmt: skip
        choice = reply.choices[0]
        calls = choice.message.tool_calls or []
        finished = calls if choice.finish_reason == "tool_calls" else calls[:-1]
        assert choice.finish_reason in ("tool_calls", "length") and finished
        for call in finished:
            _check_call(call.function.name, call.function.arguments)
        assert len({c.id for c in calls}) == len(calls)
        counts.append(len(calls))
    assert max(counts) > 1


def test_a_named_function_is_the_one_called(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id, messages=QUESTION, tools=TOOLS, max_tokens=200, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False,
    )  # fmt: skip
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    _check_call(calls[0].function.name, calls[0].function.arguments)


def test_auto_gives_text_or_valid_calls(openai_client: OpenAI, model_id: str) -> None:
    for seed in (1, 2, 3):
        reply = openai_client.chat.completions.create(
            model=model_id, messages=QUESTION, tools=TOOLS, temperature=0.9, seed=seed, max_tokens=200
        )
        choice = reply.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            for call in choice.message.tool_calls:
                _check_call(call.function.name, call.function.arguments)
        elif choice.finish_reason == "stop":
            # The {"response": ...} wrapper is unpacked: the client sees the text only.
            assert choice.message.content and not choice.message.content.startswith('{"response"')


def test_tool_choice_none_answers_in_text(openai_client: OpenAI, model_id: str) -> None:
    plain = openai_client.chat.completions.create(
        model=model_id, messages=QUESTION, max_tokens=20, temperature=0
    )
    none = openai_client.chat.completions.create(
        model=model_id, messages=QUESTION, tools=TOOLS, tool_choice="none", max_tokens=20, temperature=0
    )
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == plain.choices[0].message.content


def test_streamed_tool_calls_assemble_into_the_unary_ones(openai_client: OpenAI, model_id: str) -> None:
    request: dict[str, Any] = {
        "model": model_id, "messages": QUESTION, "tools": TOOLS, "tool_choice": "required",
        "parallel_tool_calls": False, "temperature": 0, "max_tokens": 200,
    }  # fmt: skip
    # A first run leaves its KV cells for the prefix cache; the unary and the streamed run then both take
    # them over and compute the same last prompt token alone, so their numbers (and greedy ties) agree.
    openai_client.chat.completions.create(**request)
    unary = openai_client.chat.completions.create(**request).choices[0]
    calls: dict[int, dict[str, str]] = {}
    finish_reason = None
    pieces = 0
    for chunk in openai_client.chat.completions.create(stream=True, **request):
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for delta in choice.delta.tool_calls or []:
            pieces += 1
            if delta.id:  # the first piece of a call: id, type and name, as OpenAI streams them
                assert delta.index not in calls and delta.type == "function" and delta.function
                calls[delta.index] = {"id": delta.id, "name": delta.function.name or "", "arguments": ""}
            assert delta.function is not None
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    assert finish_reason == "tool_calls"
    assert pieces > len(calls)  # the arguments arrive in pieces, as they are generated
    expected = unary.message.tool_calls or []
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        (c.function.name, c.function.arguments) for c in expected
    ]


def test_tool_history_goes_through_the_template(
    http: httpx.Client, openai_client: OpenAI, model_id: str
) -> None:
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 degrees and sunny"},
    ]
    tokens = http.post("/v1/tokenize", json={"messages": history}).json()["tokens"]
    prompt = http.post("/v1/detokenize", json={"tokens": tokens}).json()["content"]
    assert (
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]}'
        in prompt
    )
    response = {"tool_call_id": "call_abc", "name": "get_weather", "content": "18 degrees and sunny"}
    assert json.dumps({"tool_response": response}) in prompt
    reply = openai_client.chat.completions.create(
        model=model_id,
        messages=history,
        tools=TOOLS,
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOLS[0], TOOLS[0]]}, "tools[1].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(
    http: httpx.Client, model_id: str, body: dict[str, Any], param: str
) -> None:
    reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": QUESTION, **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_parameters"
    assert reply.json()["error"]["details"]["param"] == param


def test_grpc_tool_calls_finish_with_tool_calls(grpc_channel: grpc.Channel, model_id: str) -> None:
    tool = pb.Tool(type="function", function=pb.FunctionDefinition(name="get_weather"))
    tool.function.parameters.update(WEATHER_PARAMETERS)
    params = pb.ChatCompletionParams(
        model=model_id,
        messages=[pb.ChatMessage(role="user", content=QUESTION[0]["content"])],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=200),
        tools=[tool],
        tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
        parallel_tool_calls=False,
    )
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    choice = stub.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params)).choices[0]
    assert choice.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        _check_call(call.function.name, call.function.arguments)
