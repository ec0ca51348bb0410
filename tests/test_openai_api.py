"""The OpenAI surface through the official `openai` client, against the real gateway and core."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from inferno.core.embedded import EMBEDDING_MODEL_ID


def test_chat_completion(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id,
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
        max_tokens=20,
        temperature=0,
    )
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == model_id
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_gives_finish_reason_length(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Write a long essay on rivers."}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_chat_streaming_matches_non_streaming(openai_client: OpenAI, model_id: str) -> None:
    request = {
        "model": model_id,
        "messages": [{"role": "user", "content": "List two planets."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    whole = openai_client.chat.completions.create(**request)
    chunks = list(openai_client.chat.completions.create(**request, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3, "tokens arrive one by one"


def test_stream_options_include_usage_adds_a_final_usage_chunk(openai_client: OpenAI, model_id: str) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_text_completion(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.completions.create(
        model=model_id, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.object == "text_completion"
    assert "Paris" in reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens <= 8


def test_text_completion_streaming(openai_client: OpenAI, model_id: str) -> None:
    whole = openai_client.completions.create(model=model_id, prompt="1, 2, 3,", max_tokens=10, temperature=0)
    chunks = list(
        openai_client.completions.create(
            model=model_id, prompt="1, 2, 3,", max_tokens=10, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_models_list_and_get(openai_client: OpenAI, model_id: str) -> None:
    models = openai_client.models.list().data
    assert model_id in [m.id for m in models]
    assert model_id == "smollm2-135m-instruct"
    model = openai_client.models.retrieve(model_id)
    assert (model.id, model.object, model.owned_by) == (model_id, "model", "huggingfacetb")
    assert model.created > 0


def test_unknown_model_is_a_404_with_available_models(openai_client: OpenAI, model_id: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["details"]["available_models"] == [model_id, EMBEDDING_MODEL_ID]
    assert "GET /v1/models" in error["details"]["suggestion"]


def test_retrieving_an_unknown_model_is_a_404(openai_client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")


def test_prompt_array_gives_one_choice_per_prompt(openai_client: OpenAI, model_id: str) -> None:
    prompts = ["The capital of France is", "1, 2, 3,"]
    alone = [
        openai_client.completions.create(model=model_id, prompt=p, max_tokens=6, temperature=0)
        .choices[0]
        .text
        for p in prompts
    ]
    reply = openai_client.completions.create(model=model_id, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.text for c in reply.choices] == alone
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    chunks = list(
        openai_client.completions.create(
            model=model_id, prompt=prompts, max_tokens=6, temperature=0, stream=True
        )
    )
    streamed = [
        "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in (0, 1)
    ]
    assert streamed == alone
