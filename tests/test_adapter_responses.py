"""Core replies render as OpenAI's objects and streamed chunks."""

from __future__ import annotations

from inferno.adapters.openai.responses import (
    ChatChunkStream,
    CompletionChunkStream,
    chat_completion_json,
    completion_json,
    model_json,
)
from inferno.v1 import common_pb2, inference_service_pb2, model_service_pb2

I = inference_service_pb2  # noqa: E741
USAGE = common_pb2.Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7, cached_prompt_tokens=3)
USAGE_JSON = {
    "prompt_tokens": 5,
    "completion_tokens": 2,
    "total_tokens": 7,
    "prompt_tokens_details": {"cached_tokens": 3},
}
HEAD = {"id": "chatcmpl-1", "created": 1700000000, "model": "tiny"}


def chat_piece(text: str = "", finish: int = 0, usage: common_pb2.Usage | None = None, index: int = 0):
    return I.StreamChatCompletionResponse(
        **HEAD, index=index, delta=I.ChatCompletionDelta(content=text), finish_reason=finish, usage=usage
    )


def test_chat_completion_has_openai_shape() -> None:
    reply = I.CreateChatCompletionResponse(
        **HEAD,
        choices=[
            I.ChatCompletionChoice(
                index=0,
                message=I.ChatMessage(role="assistant", content="Hello!"),
                finish_reason=common_pb2.FINISH_REASON_STOP,
            )
        ],
        usage=USAGE,
    )
    assert chat_completion_json(reply) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "tiny",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE_JSON,
    }


def test_completion_has_openai_shape() -> None:
    reply = I.CreateCompletionResponse(
        id="cmpl-1",
        created=1,
        model="tiny",
        choices=[I.CompletionChoice(index=0, text=" there", finish_reason=common_pb2.FINISH_REASON_LENGTH)],
        usage=USAGE,
    )
    rendered = completion_json(reply)
    assert rendered["object"] == "text_completion"
    assert rendered["choices"] == [
        {"text": " there", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]


def test_model_without_parent_has_null_parent_and_empty_permission() -> None:
    model = model_service_pb2.Model(id="tiny", created=3, owned_by="inferno", root="tiny")
    assert model_json(model) == {
        "id": "tiny",
        "object": "model",
        "created": 3,
        "owned_by": "inferno",
        "permission": [],
        "root": "tiny",
        "parent": None,
    }
    assert model_json(model_service_pb2.Model(id="ft", parent="tiny"))["parent"] == "tiny"


def test_chat_stream_opens_with_role_then_pieces_then_empty_delta_with_finish_reason() -> None:
    chunks = ChatChunkStream(include_usage=False)
    rendered = [
        *chunks.chunks(chat_piece()),
        *chunks.chunks(chat_piece("Hel")),
        *chunks.chunks(chat_piece("lo", finish=common_pb2.FINISH_REASON_LENGTH, usage=USAGE)),
    ]
    rendered += chunks.final_chunks()
    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in rendered] == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "length"),
    ]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in rendered)
    assert all("usage" not in c for c in rendered)


def test_chat_stream_with_include_usage_nulls_usage_and_ends_with_a_usage_chunk() -> None:
    chunks = ChatChunkStream(include_usage=True)
    rendered = chunks.chunks(chat_piece("Hi", finish=common_pb2.FINISH_REASON_STOP, usage=USAGE))
    assert all(c["usage"] is None for c in rendered)
    [last] = chunks.final_chunks()
    assert last["choices"] == []
    assert last["usage"] == USAGE_JSON


def test_tool_calls_finish_reason_is_named() -> None:
    rendered = ChatChunkStream(False).chunks(chat_piece(finish=common_pb2.FINISH_REASON_TOOL_CALLS))
    assert rendered[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_completion_stream_has_no_role_chunk_and_closes_each_choice_with_empty_text() -> None:
    chunks = CompletionChunkStream(include_usage=False)
    rendered = [
        *chunks.chunks(I.StreamCompletionResponse(**HEAD, index=0, text="a")),
        *chunks.chunks(I.StreamCompletionResponse(**HEAD, index=1, text="b")),
        *chunks.chunks(
            I.StreamCompletionResponse(**HEAD, index=0, finish_reason=common_pb2.FINISH_REASON_STOP)
        ),
    ]
    assert [c["choices"] for c in rendered] == [
        [{"text": "a", "index": 0, "logprobs": None, "finish_reason": None}],
        [{"text": "b", "index": 1, "logprobs": None, "finish_reason": None}],
        [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    ]
    assert all(c["object"] == "text_completion" for c in rendered)
