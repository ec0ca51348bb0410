"""OpenAI JSON bodies become inferno.v1 params; shape and type errors name the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from inferno.adapters.openai.requests import (
    parse_chat_request,
    parse_completion_request,
    parse_json_object,
)
from inferno.errors import InfernoError
from inferno.v1 import inference_service_pb2

USER_HELLO = [{"role": "user", "content": "Hello!"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": USER_HELLO, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "prompt": "Once", **fields}


def invalid_param_of(parse: Callable[[dict[str, Any]], object], body: dict[str, Any]) -> object:
    """The details.param of the invalid_parameters error parse raises for body."""
    with pytest.raises(InfernoError) as caught:
        parse(body)
    assert caught.value.code == "invalid_parameters"
    return caught.value.details.get("param")


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"{", b"[1, 2]", b'"text"', b'{"a": NaN}', b"\xff\xfe{", b"[" * 5000]
)
def test_body_that_is_not_a_json_object_is_invalid_json(raw: bytes) -> None:
    with pytest.raises(InfernoError) as caught:
        parse_json_object(raw)
    assert caught.value.code == "invalid_json"


def test_minimal_chat_leaves_every_optional_field_unset() -> None:
    request = parse_chat_request(chat())
    params = request.params
    assert params.model == "tiny"
    assert [(m.role, m.content) for m in params.messages] == [("user", "Hello!")]
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"):
        assert not params.sampling.HasField(name)
    assert not params.limits.HasField("max_tokens")
    assert list(params.limits.stop) == []
    assert (request.stream, request.include_usage) == (False, False)


def test_null_optional_fields_stay_unset() -> None:
    params = parse_chat_request(
        chat(temperature=None, seed=None, max_tokens=None, stop=None, user=None)
    ).params
    assert not params.sampling.HasField("temperature")
    assert not params.sampling.HasField("seed")
    assert not params.limits.HasField("max_tokens")


def test_given_fields_are_copied() -> None:
    body = chat(
        temperature=0,
        top_p=0.5,
        presence_penalty=-1,
        frequency_penalty=1.5,
        seed=42,
        max_tokens=16,
        stop="\n",
        user="alice",
        stream=True,
        stream_options={"include_usage": True},
    )
    request = parse_chat_request(body)
    sampling, limits = request.params.sampling, request.params.limits
    assert sampling.HasField("temperature") and sampling.temperature == 0
    assert (sampling.top_p, sampling.presence_penalty, sampling.frequency_penalty) == (0.5, -1, 1.5)
    assert sampling.seed == 42
    assert limits.max_tokens == 16
    assert list(limits.stop) == ["\n"]
    assert request.params.user == "alice"
    assert (request.stream, request.include_usage) == (True, True)


def test_max_completion_tokens_is_an_alias_that_wins_over_max_tokens() -> None:
    assert parse_chat_request(chat(max_completion_tokens=7)).params.limits.max_tokens == 7
    assert parse_chat_request(chat(max_tokens=3, max_completion_tokens=7)).params.limits.max_tokens == 7


def test_text_content_parts_are_joined_and_null_content_is_empty() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    messages = [{"role": "user", "content": parts, "name": "bob"}, {"role": "assistant", "content": None}]
    params = parse_chat_request(chat(messages=messages)).params
    assert [(m.role, m.content, m.name) for m in params.messages] == [
        ("user", "one\ntwo", "bob"),
        ("assistant", "", ""),
    ]


def test_unknown_fields_are_ignored() -> None:
    assert parse_chat_request(chat(metadata={"x": 1}, store=False)).params.model == "tiny"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER_HELLO}, "model"),
        (chat(model=3), "model"),
        ({"model": "tiny"}, "messages"),
        (chat(messages=[]), "messages"),
        (chat(messages="hi"), "messages"),
        (chat(messages=["hi"]), "messages[0]"),
        (chat(messages=[{"content": "hi"}]), "messages[0].role"),
        (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (chat(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
        (chat(messages=[{"role": "user", "content": "x", "name": 1}]), "messages[0].name"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=True), "top_p"),
        (chat(seed=1.5), "seed"),
        (chat(seed=-1), "seed"),
        (chat(max_tokens="10"), "max_tokens"),
        (chat(max_tokens=-1), "max_tokens"),
        (chat(max_completion_tokens=2**32), "max_completion_tokens"),
        (chat(stop=["a", 1]), "stop"),
        (chat(user=7), "user"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options=True), "stream_options"),
        (chat(stream_options={"include_usage": 1}), "stream_options.include_usage"),
    ],
)
def test_chat_shape_and_type_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    assert invalid_param_of(parse_chat_request, body) == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
            "messages[0].content[0].type",
        ),
        (chat(functions=[{"name": "f"}]), "functions"),
        (chat(function_call={"name": "f"}), "function_call"),
    ],
)
def test_features_not_supported_are_refused_by_name(body: dict[str, Any], param: str) -> None:
    parse = parse_chat_request if "messages" in body else parse_completion_request
    with pytest.raises(InfernoError) as caught:
        parse(body)
    assert caught.value.details == {"param": param}
    assert "not supported yet" in caught.value.message


def test_default_values_of_unsupported_features_are_accepted() -> None:
    parse_chat_request(chat(n=1, logprobs=False, functions=[], function_call="auto"))
    parse_completion_request(completion(suffix=None))
    parse_completion_request(completion(suffix=""))
    parse_completion_request(completion(logprobs=False))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(tools={"type": "function"}), "tools"),
        (chat(tools=[{"type": "function"}]), "tools[0]"),
        (chat(tools=[{"function": {"description": "no name"}}]), "tools[0].function.name"),
        (chat(tools=[{"function": {"name": "f", "parameters": []}}]), "tools[0].function.parameters"),
        (chat(tool_choice="sometimes"), "tool_choice"),
        (chat(tool_choice={"type": "function"}), "tool_choice"),
        (chat(tool_choice={"type": "function", "function": {}}), "tool_choice.function.name"),
        (chat(parallel_tool_calls="yes"), "parallel_tool_calls"),
        (chat(messages=[{"role": "assistant", "tool_calls": {}}]), "messages[0].tool_calls"),
        (
            chat(
                messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}]
            ),
            "messages[0].tool_calls[0].function.name",
        ),
        (chat(messages=[{"role": "tool", "content": "x", "tool_call_id": 3}]), "messages[0].tool_call_id"),
        (completion(echo="yes"), "echo"),
        (completion(best_of=1.5), "best_of"),
    ],
)
def test_tool_and_completion_option_type_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    parse = parse_chat_request if "messages" in body else parse_completion_request
    assert invalid_param_of(parse, body) == param


def test_tools_and_history_map_to_the_proto() -> None:
    params = parse_chat_request(
        chat(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": {"c": 1}}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "w"}},
            parallel_tool_calls=False,
        )
    ).params
    assert params.tools[0].function.name == "w"
    assert json.loads(params.tools[0].function.parameters_json) == {"type": "object"}
    assert params.tool_choice.function_name == "w"
    assert params.HasField("parallel_tool_calls") and not params.parallel_tool_calls
    assert params.messages[1].tool_calls[0].function.arguments == '{"c": 1}'
    assert params.messages[2].tool_call_id == "call_1"
    assert parse_chat_request(chat(tool_choice="required")).params.tool_choice.mode == (
        inference_service_pb2.TOOL_CHOICE_MODE_REQUIRED
    )


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Once", [("text", "Once")]),
        (["a", "b"], [("text", "a"), ("text", "b")]),
        ([1, 2, 3], [("tokens", [1, 2, 3])]),
        ([[1, 2], [3]], [("tokens", [1, 2]), ("tokens", [3])]),
    ],
)
def test_each_prompt_form_becomes_prompts(prompt: Any, expected: list[tuple[str, Any]]) -> None:
    prompts = parse_completion_request(completion(prompt=prompt)).params.prompts
    got = [
        ("text", p.text) if p.WhichOneof("kind") == "text" else ("tokens", list(p.tokens.ids))
        for p in prompts
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        (None, "prompt"),
        ([], "prompt"),
        (["a", 1], "prompt"),
        (7, "prompt"),
        ([1, -2], "prompt[1]"),
        ([[1], [2, "x"]], "prompt[1][1]"),
    ],
)
def test_bad_prompts_name_the_offending_element(prompt: Any, param: str) -> None:
    assert invalid_param_of(parse_completion_request, {"model": "tiny", "prompt": prompt}) == param


def test_n_and_extension_sampling_fields_reach_the_proto() -> None:
    body = chat(n=3, top_k=40, min_p=0.05, repetition_penalty=1.1, logit_bias={"42": -100, "7": 2.5})
    params = parse_chat_request(body).params
    assert params.n == 3
    assert (params.sampling.top_k, round(params.sampling.min_p, 6)) == (40, 0.05)
    assert round(params.sampling.repetition_penalty, 6) == 1.1
    assert dict(params.sampling.logit_bias) == {42: -100.0, 7: 2.5}
    assert parse_completion_request(completion(top_k=-1)).params.sampling.top_k == 0


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("logit_bias", {"abc": 1}, "logit_bias"),
        ("logit_bias", {"5": "high"}, "logit_bias.5"),
        ("logit_bias", [1, 2], "logit_bias"),
        ("n", 1.5, "n"),
        ("top_k", "many", "top_k"),
    ],
)
def test_bad_extension_fields_name_the_field(field: str, value: Any, param: str) -> None:
    assert invalid_param_of(parse_chat_request, chat(**{field: value})) == param


def test_response_format_reaches_the_proto() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    body = chat(response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    fmt = parse_chat_request(body).params.response_format
    assert fmt.type == inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert fmt.schema_name == "person"
    # As text, so property order (the order the model writes them in) survives.
    assert fmt.json_schema_text == json.dumps(schema)
    plain = parse_chat_request(chat(response_format={"type": "json_object"})).params.response_format
    assert plain.type == inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
        ("json", "response_format"),
    ],
)
def test_bad_response_format_names_the_field(value: Any, param: str) -> None:
    assert invalid_param_of(parse_chat_request, chat(response_format=value)) == param
