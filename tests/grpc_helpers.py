"""Small builders for gRPC requests used across the tests."""

from __future__ import annotations

import grpc

from inferno.v1 import common_pb2, model_service_pb2, model_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb


def chat_params(
    model: str, content: str, max_tokens: int = 16, temperature: float = 0.0
) -> pb.ChatCompletionParams:
    return pb.ChatCompletionParams(
        model=model,
        messages=[pb.ChatMessage(role="user", content=content)],
        sampling=common_pb2.SamplingParams(temperature=temperature),
        limits=common_pb2.GenerationLimits(max_tokens=max_tokens),
    )


def assert_same_usage_but_the_cache(first: common_pb2.Usage, later: common_pb2.Usage) -> None:
    """The same token counts; the later request of the same prompt read at least as much from the cache."""
    assert later.cached_prompt_tokens >= first.cached_prompt_tokens
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [getattr(later, name) for name in counts] == [getattr(first, name) for name in counts]


def engine_stats(channel: grpc.Channel, model: str) -> model_service_pb2.EngineStats:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    return stub.GetModelStatus(model_service_pb2.GetModelStatusRequest(model_id=model)).stats
