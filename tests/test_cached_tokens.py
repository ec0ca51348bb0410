"""Usage reports the prompt tokens the prefix cache served, on the real model through every API: gRPC's
Usage.cached_prompt_tokens, OpenAI's usage.prompt_tokens_details.cached_tokens (chat, streamed chat and
completions), and the Responses API's usage.input_tokens_details.cached_tokens. Anthropic's
cache_read_input_tokens is tested in test_anthropic_api.py.

Each test sends a prompt no other test sends, twice: the first request computes it, the second takes all
of it but the last token from the cache (the last token is computed again for its logits)."""

from __future__ import annotations

import grpc
from openai import OpenAI

from inferno.v1 import common_pb2, inference_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb


def _messages(subject: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You answer questions about {subject}. Keep every answer short."},
        {"role": "user", "content": f"Who was {subject}?"},
    ]


def _assert_computed_then_cached(first: int, again: int, prompt_tokens: int) -> None:
    # The chat template's first few tokens may be cached from other prompts; the subject is not.
    assert first < prompt_tokens // 2, (first, prompt_tokens)
    assert prompt_tokens - 2 <= again < prompt_tokens, (again, prompt_tokens)


def test_chat_usage_counts_the_cached_prompt_tokens(openai_client: OpenAI, model_id: str) -> None:
    messages = _messages("the cartographer Oswin Thackeray-Lund of Tromso")
    replies = [
        openai_client.chat.completions.create(
            model=model_id,
            messages=messages,
            max_tokens=2,
            temperature=0,  # type: ignore[arg-type]
        )
        for _ in range(2)
    ]
    usages = [reply.usage for reply in replies]
    assert usages[0] is not None and usages[1] is not None
    assert usages[0].prompt_tokens == usages[1].prompt_tokens
    details = [usage.prompt_tokens_details for usage in usages]
    assert details[0] is not None and details[1] is not None
    assert details[0].cached_tokens is not None and details[1].cached_tokens is not None
    _assert_computed_then_cached(details[0].cached_tokens, details[1].cached_tokens, usages[0].prompt_tokens)


def test_a_streams_last_chunk_counts_the_cached_prompt_tokens(openai_client: OpenAI, model_id: str) -> None:
    messages = _messages("the glassblower Henrike Vasquez-Mbeki of Murano")
    cached: list[int] = []
    for _ in range(2):
        stream = openai_client.chat.completions.create(
            model=model_id,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=2,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        *_, last = list(stream)
        assert last.usage is not None and last.usage.prompt_tokens_details is not None
        assert last.usage.prompt_tokens_details.cached_tokens is not None
        cached.append(last.usage.prompt_tokens_details.cached_tokens)
        prompt_tokens = last.usage.prompt_tokens
    _assert_computed_then_cached(cached[0], cached[1], prompt_tokens)


def test_completions_usage_counts_the_cached_prompt_tokens(openai_client: OpenAI, model_id: str) -> None:
    prompt = "The lighthouse on Skerrow Point was kept by Agnethe Ploughwright from 1881 until"
    usages = [
        openai_client.completions.create(model=model_id, prompt=prompt, max_tokens=2, temperature=0).usage
        for _ in range(2)
    ]
    assert usages[0] is not None and usages[1] is not None
    cached = [u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None for u in usages]
    assert cached[0] is not None and cached[1] is not None
    _assert_computed_then_cached(cached[0], cached[1], usages[0].prompt_tokens)


def test_responses_usage_counts_the_cached_input_tokens(openai_client: OpenAI, model_id: str) -> None:
    instructions = "You answer questions about the beekeeper Radomir Ashdown-Kaur of Lviv. Be brief."
    usages = [
        openai_client.responses.create(
            model=model_id, instructions=instructions, input="Who was he?", max_output_tokens=2, store=False
        ).usage
        for _ in range(2)
    ]
    assert usages[0] is not None and usages[1] is not None
    cached = [usage.input_tokens_details.cached_tokens for usage in usages]
    _assert_computed_then_cached(cached[0], cached[1], usages[0].input_tokens)


def test_grpc_usage_takes_the_fewest_cached_tokens_of_a_requests_choices(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    """Two choices of one prompt: the second follows the first's prefix, but the prompt was computed once,
    so the request's cached tokens are the first choice's few, not the second's many."""
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    params = pb.ChatCompletionParams(
        model=model_id,
        messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in _messages("St Wendelgard")],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=2),
        n=2,
    )
    first = stub.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params)).usage
    again = stub.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params)).usage
    assert first.prompt_tokens == again.prompt_tokens
    _assert_computed_then_cached(first.cached_prompt_tokens, again.cached_prompt_tokens, first.prompt_tokens)


def test_a_grpc_streams_first_message_carries_the_prompts_usage(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    """prompt_usage on the first message only: the prompt's tokens and its cached part, as the last
    message's usage counts them, and no completion tokens yet."""
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    params = pb.ChatCompletionParams(
        model=model_id,
        messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in _messages("Ada Lovelace")],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=8, ignore_eos=True),
    )
    for _ in range(2):  # computed, then cached
        messages = list(stub.StreamChatCompletion(pb.StreamChatCompletionRequest(params=params)))
        assert len(messages) > 1
        first, last = messages[0].prompt_usage, messages[-1].usage
        assert (first.prompt_tokens, first.cached_prompt_tokens) == (
            last.prompt_tokens,
            last.cached_prompt_tokens,
        )
        assert first.completion_tokens == 0 and last.completion_tokens == 8
        assert not any(message.HasField("prompt_usage") for message in messages[1:])
    assert last.cached_prompt_tokens >= last.prompt_tokens - 2
