"""The Anthropic Messages API end to end, with the official `anthropic` SDK as the client: whole and streamed
messages, system prompts and turns, stop sequences, max_tokens, a tool round trip, token counting, errors in
Anthropic's shape and x-api-key against a server with API keys."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import jsonschema
import pytest
from anthropic import Anthropic
from anthropic.types import Message, MessageDeltaUsage, MessageParam, ToolParam, Usage

from inferno.adapters.anthropic.errors import ANTHROPIC_ERROR_TYPES
from inferno.adapters.anthropic.responses import MessageEvents, StopOutcome, stop_outcome
from inferno.core.embedded import EMBEDDED_MODEL_ID
from inferno.errors import ERROR_KINDS
from inferno.v1 import common_pb2
from inferno.v1 import inference_service_pb2 as pb
from tests.response_samples import WEATHER_PARAMETERS
from tests.security_fixtures import SecuredServer
from tests.servers import RunningServer

QUESTION: list[MessageParam] = [{"role": "user", "content": "Count from one to twenty in words."}]
# The SDK no longer has arguments for the sampling fields; the API (and Inferno) still takes them.
GREEDY: dict[str, Any] = {"extra_body": {"temperature": 0}}
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": WEATHER_PARAMETERS,
}
WEATHER_QUESTION: list[MessageParam] = [
    {"role": "user", "content": "What is the weather in Paris, in celsius?"}
]


@pytest.fixture(scope="module")
def claude(server: RunningServer) -> Iterator[Anthropic]:
    with Anthropic(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=120) as client:
        yield client


def _text(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _prompt_tokens(usage: Usage | MessageDeltaUsage) -> int:
    """The whole prompt: Anthropic counts the part read from the cache apart from input_tokens."""
    return (usage.input_tokens or 0) + (usage.cache_read_input_tokens or 0)


def test_a_message_comes_back_whole_with_its_usage(claude: Anthropic, model_id: str) -> None:
    message = claude.messages.create(model=model_id, max_tokens=16, messages=QUESTION, **GREEDY)
    assert message.type == "message" and message.role == "assistant" and message.model == model_id
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"] and _text(message)
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and 1 <= message.usage.output_tokens <= 16


def test_a_streamed_message_sends_anthropics_events_in_order(claude: Anthropic, model_id: str) -> None:
    whole = claude.messages.create(model=model_id, max_tokens=16, messages=QUESTION, **GREEDY)
    events = list(
        claude.messages.create(model=model_id, max_tokens=16, messages=QUESTION, **GREEDY, stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.content == []
    assert start.message.stop_reason is None and start.message.id.startswith("msg_")
    # The input is known at message_start, as Anthropic sends it; the output is counted at the end.
    assert _prompt_tokens(start.message.usage) == _prompt_tokens(whole.usage)
    assert start.message.usage.cache_read_input_tokens == delta.usage.cache_read_input_tokens
    assert start.message.usage.output_tokens == 0
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == _text(whole)
    assert delta.type == "message_delta" and delta.delta.stop_reason == whole.stop_reason
    assert delta.usage.output_tokens == whole.usage.output_tokens
    assert _prompt_tokens(delta.usage) == _prompt_tokens(whole.usage)


def test_the_sdks_stream_helper_accumulates_the_text_and_the_final_usage(
    claude: Anthropic, model_id: str
) -> None:
    with claude.messages.stream(model=model_id, max_tokens=12, messages=QUESTION, **GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == _text(final)
    count = claude.messages.count_tokens(model=model_id, messages=QUESTION).input_tokens
    assert _prompt_tokens(final.usage) == count and 1 <= final.usage.output_tokens <= 12


def test_the_stream_is_named_events_with_a_ping_and_no_done_marker(http: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "max_tokens": 4, "messages": QUESTION, "stream": True}
    reply = http.post("/v1/messages", json=body)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in reply.text.split("\n\n") if frame]
    names = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    assert names[:3] == ["message_start", "ping", "content_block_start"] and names[-1] == "message_stop"
    for frame, name in zip(frames, names, strict=True):
        assert json.loads(frame.split("\n")[1].removeprefix("data: "))["type"] == name
    assert "[DONE]" not in reply.text


def test_a_system_prompt_and_earlier_turns_are_part_of_the_prompt(
    claude: Anthropic, http: httpx.Client, model_id: str
) -> None:
    turns: list[MessageParam] = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": [{"type": "text", "text": "Nice to meet you, Ada."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    system = "You are a helpful assistant. Answer in one short sentence."
    message = claude.messages.create(model=model_id, max_tokens=16, system=system, messages=turns)
    assert _text(message)
    same_as_openai = [
        {"role": "system", "content": system},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    tokens = http.post("/v1/tokenize", json={"model": model_id, "messages": same_as_openai}).json()
    assert _prompt_tokens(message.usage) == tokens["count"]
    blocks = claude.messages.create(
        model=model_id, max_tokens=1, system=[{"type": "text", "text": system}], messages=turns
    )
    assert _prompt_tokens(blocks.usage) == tokens["count"]


def test_a_stop_sequence_ends_the_message_and_is_named(claude: Anthropic, model_id: str) -> None:
    free = claude.messages.create(model=model_id, max_tokens=24, messages=QUESTION, **GREEDY)
    assert len(_text(free)) >= 12, _text(free)
    stop = _text(free)[6:9]
    cut = claude.messages.create(
        model=model_id, max_tokens=24, messages=QUESTION, **GREEDY, stop_sequences=["@@never@@", stop]
    )
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert _text(cut) == _text(free)[: _text(free).index(stop)]
    with claude.messages.stream(
        model=model_id, max_tokens=24, messages=QUESTION, **GREEDY, stop_sequences=[stop]
    ) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence, _text(streamed)) == (
        "stop_sequence",
        stop,
        _text(cut),
    )


def test_a_stop_sequence_that_never_appears_leaves_the_stop_reason_alone(
    claude: Anthropic, model_id: str
) -> None:
    message = claude.messages.create(
        model=model_id, max_tokens=4, messages=QUESTION, **GREEDY, stop_sequences=["@@never@@"]
    )
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None


def test_max_tokens_ends_the_message_with_stop_reason_max_tokens(claude: Anthropic, model_id: str) -> None:
    sampling = {"temperature": 0.8, "top_k": 5, "top_p": 0.9}
    message = claude.messages.create(model=model_id, max_tokens=3, messages=QUESTION, extra_body=sampling)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_a_forced_tool_is_called_and_its_result_answered(
    claude: Anthropic, http: httpx.Client, model_id: str
) -> None:
    called = claude.messages.create(
        model=model_id, max_tokens=100, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        metadata={"user_id": "tester"},
    )  # fmt: skip
    assert called.stop_reason == "tool_use"
    uses = [block for block in called.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].id
    jsonschema.validate(uses[0].input, WEATHER_PARAMETERS)
    follow_up: list[MessageParam] = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": called.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 degrees, sunny"}],
        },
    ]
    answer = claude.messages.create(
        model=model_id, max_tokens=24, messages=follow_up, tools=[WEATHER_TOOL], tool_choice={"type": "none"}
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in answer.content] == ["text"] and _text(answer)
    call = {"name": "get_weather", "arguments": json.dumps(uses[0].input)}
    same_as_openai = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [{"id": uses[0].id, "function": call}]},
        {"role": "tool", "tool_call_id": uses[0].id, "content": "18 degrees, sunny"},
    ]
    tokens = http.post("/v1/tokenize", json={"model": model_id, "messages": same_as_openai}).json()
    assert _prompt_tokens(answer.usage) == tokens["count"]


def test_a_streamed_tool_call_arrives_as_input_json_deltas(claude: Anthropic, model_id: str) -> None:
    events = list(
        claude.messages.create(
            model=model_id, max_tokens=100, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL],
            tool_choice={"type": "any", "disable_parallel_tool_use": True}, stream=True,
        )
    )  # fmt: skip
    starts = [e for e in events if e.type == "content_block_start"]
    assert len(starts) == 1 and starts[0].content_block.type == "tool_use"
    assert starts[0].content_block.name == "get_weather"
    pieces = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(pieces) > 1
    jsonschema.validate(json.loads("".join(pieces)), WEATHER_PARAMETERS)
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "tool_use"


def test_count_tokens_equals_the_prompt_tokens_of_a_message(claude: Anthropic, model_id: str) -> None:
    system = "Be brief."
    count = claude.messages.count_tokens(model=model_id, system=system, messages=QUESTION)
    message = claude.messages.create(model=model_id, max_tokens=1, system=system, messages=QUESTION)
    assert count.input_tokens == _prompt_tokens(message.usage) > 0
    tools: dict[str, Any] = {"tools": [WEATHER_TOOL], "tool_choice": {"type": "auto"}}
    with_tools = claude.messages.count_tokens(model=model_id, messages=WEATHER_QUESTION, **tools)
    called = claude.messages.create(model=model_id, max_tokens=1, messages=WEATHER_QUESTION, **tools)
    assert with_tools.input_tokens == _prompt_tokens(called.usage) > count.input_tokens


def test_a_repeated_prompt_is_read_from_the_cache_and_counted_apart(claude: Anthropic, model_id: str) -> None:
    system = "You answer questions about the lighthouse keeper Ilse Marjorie Okonkwo-Falk, born 1871."
    count = claude.messages.count_tokens(model=model_id, system=system, messages=QUESTION).input_tokens
    first = claude.messages.create(model=model_id, max_tokens=2, system=system, messages=QUESTION, **GREEDY)
    again = claude.messages.create(model=model_id, max_tokens=2, system=system, messages=QUESTION, **GREEDY)
    assert _prompt_tokens(first.usage) == _prompt_tokens(again.usage) == count
    # The system prompt is new to this server, so the first request computed it; the second did not.
    assert (first.usage.cache_read_input_tokens or 0) < count // 2
    assert (again.usage.cache_read_input_tokens or 0) >= count - 2 and again.usage.input_tokens >= 1


@pytest.mark.parametrize("max_tokens", [0, -1])
def test_a_bad_max_tokens_is_a_bad_request_in_anthropics_shape(
    claude: Anthropic, model_id: str, max_tokens: int
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=model_id, max_tokens=max_tokens, messages=QUESTION)
    assert refused.value.status_code == 400
    assert isinstance(refused.value.body, dict) and refused.value.body["type"] == "error"
    error = refused.value.body["error"]
    assert error["type"] == "invalid_request_error" and "max_tokens" in error["message"]
    assert error["details"]["param"] == "max_tokens"


def test_an_unknown_model_is_a_not_found_error(claude: Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as refused:
        claude.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION)
    assert refused.value.status_code == 404
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION, stream=True)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=QUESTION)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": QUESTION}, "max_tokens"),
        ({"max_tokens": 4}, "messages"),
        ({"max_tokens": 4, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"max_tokens": 4, "messages": QUESTION, "stop_sequences": "END"}, "stop_sequences"),
        ({"max_tokens": 4, "messages": QUESTION, "tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"max_tokens": 4, "messages": QUESTION, "tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"max_tokens": 4, "messages": QUESTION, "temperature": "hot"}, "temperature"),
        ({"max_tokens": 4, "messages": QUESTION, "thinking": {"type": "enabled"}}, "thinking.type"),
    ],
)
def test_malformed_bodies_are_invalid_request_errors_naming_the_field(
    http: httpx.Client, model_id: str, body: dict[str, Any], param: str
) -> None:
    reply = http.post("/v1/messages", json={"model": model_id, **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["type"] == "error"
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["details"]["param"] == param


def test_a_body_that_is_not_json_is_an_invalid_request_error(http: httpx.Client) -> None:
    reply = http.post("/v1/messages/count_tokens", content=b"{", headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.json()["error"]["code"] == "invalid_json"


def test_every_error_code_has_an_anthropic_error_type() -> None:
    assert set(ANTHROPIC_ERROR_TYPES) == set(ERROR_KINDS)


@pytest.fixture(scope="module")
def secured_claude_factory(secured: SecuredServer) -> Iterator[Any]:
    verify = ssl.create_default_context(cafile=str(secured.server.tls_ca))
    with httpx2.Client(verify=verify, timeout=120) as transport:

        def make(api_key: str) -> Anthropic:
            return Anthropic(
                base_url=secured.server.base_url, api_key=api_key, max_retries=0, http_client=transport
            )

        yield make


def test_x_api_key_authenticates_against_a_server_with_api_keys(
    secured: SecuredServer, secured_claude_factory: Any
) -> None:
    _, secret = secured.create_key(["inference"])
    client: Anthropic = secured_claude_factory(secret)
    message = client.messages.create(model=EMBEDDED_MODEL_ID, max_tokens=2, messages=QUESTION)
    assert message.usage.output_tokens >= 1
    assert client.messages.count_tokens(model=message.model, messages=QUESTION).input_tokens > 0
    with secured.client() as plain:
        reply = plain.get("/v1/auth/user", headers={"x-api-key": secret})
    assert reply.status_code == 200 and reply.json()["permissions"] == ["inference"]


def test_a_wrong_x_api_key_is_an_authentication_error(secured_claude_factory: Any) -> None:
    client: Anthropic = secured_claude_factory("sk-inf-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.messages.create(model=EMBEDDED_MODEL_ID, max_tokens=2, messages=QUESTION)
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_earliest_stop_sequence_in_the_sampled_text_is_the_one_named() -> None:
    stop = common_pb2.FINISH_REASON_STOP
    assert stop_outcome(stop, "one two END three", ["three", "END"]) == StopOutcome("stop_sequence", "END")
    assert stop_outcome(stop, "one two", ["END"]) == StopOutcome("end_turn")
    assert stop_outcome(common_pb2.FINISH_REASON_LENGTH, "END", ["END"]) == StopOutcome("max_tokens")
    assert stop_outcome(common_pb2.FINISH_REASON_TOOL_CALLS, "", []) == StopOutcome("tool_use")


def test_text_then_a_tool_call_become_two_blocks_each_closed_before_the_next_opens() -> None:
    def chunk(**fields: Any) -> pb.StreamChatCompletionResponse:
        return pb.StreamChatCompletionResponse(id="chatcmpl-1", model="m", **fields)

    translator = MessageEvents(())
    call = pb.ToolCallDelta(index=0, id="call_1", type="function", name="f", arguments='{"a"')
    more = pb.ToolCallDelta(index=0, arguments=": 1}")
    events = [
        *translator.events(chunk(delta=pb.ChatCompletionDelta(role="assistant", content="Hi"))),
        *translator.events(chunk(delta=pb.ChatCompletionDelta(tool_calls=[call]))),
        *translator.events(chunk(delta=pb.ChatCompletionDelta(tool_calls=[more]))),
        *translator.events(
            chunk(
                finish_reason=common_pb2.FINISH_REASON_TOOL_CALLS,
                usage=common_pb2.Usage(prompt_tokens=7, completion_tokens=5, cached_prompt_tokens=4),
            )
        ),
        *translator.final_events(),
    ]
    summary = [(e["type"], e.get("index")) for e in events]
    assert summary == [
        ("message_start", None), ("ping", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("message_delta", None), ("message_stop", None),
    ]  # fmt: skip
    assert events[0]["message"]["id"] == "msg_1"
    assert events[5]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"] == {"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 5}
