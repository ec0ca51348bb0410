"""WebSocket chat frames: chat_chunk per SSE choice, then chat_done with finish_reason and usage."""

from __future__ import annotations

from inferno.adapters.websocket import ChatFrames, error_frame
from inferno.errors import invalid_param
from inferno.v1 import common_pb2, inference_service_pb2

I = inference_service_pb2  # noqa: E741


def test_pieces_become_chat_chunks_and_the_end_becomes_chat_done() -> None:
    frames = ChatFrames("chat_001")
    usage = common_pb2.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5, cached_prompt_tokens=1)
    rendered = [
        *frames.chunks(I.StreamChatCompletionResponse(delta=I.ChatCompletionDelta(role="assistant"))),
        *frames.chunks(I.StreamChatCompletionResponse(delta=I.ChatCompletionDelta(content="Once"))),
        *frames.chunks(
            I.StreamChatCompletionResponse(
                delta=I.ChatCompletionDelta(content=" upon"),
                finish_reason=common_pb2.FINISH_REASON_STOP,
                usage=usage,
            )
        ),
        frames.done(),
    ]

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, object]:
        data = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"type": "chat_chunk", "id": "chat_001", "data": data}

    # The same choices as the SSE chunks: the role opens the choice and an empty delta closes it.
    assert rendered == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Once"}),
        chunk({"content": " upon"}),
        chunk({}, "stop"),
        {
            "type": "chat_done",
            "id": "chat_001",
            "data": {
                "finish_reason": "stop",
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 2,
                    "total_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 1},
                },
            },
        },
    ]


def test_error_frame_carries_the_seed_error_body() -> None:
    frame = error_frame(None, invalid_param("messages", "'messages' is required"))
    assert frame == {
        "type": "error",
        "id": None,
        "data": {
            "error": {
                "type": "invalid_request_error",
                "code": "invalid_parameters",
                "message": "'messages' is required",
                "param": "messages",
                "details": {"param": "messages"},
            }
        },
    }
