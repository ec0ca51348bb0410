"""The same runtime behaviours through the gateway, with the official openai client: streamed and unary
replies agree, stop strings and n work, a feature the engine lacks is refused in the seed's error body."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from tests.contract.conftest import ContractTarget


@pytest.fixture(scope="session")
def client(target: ContractTarget) -> OpenAI:
    assert target.base_url is not None, "the HTTP half needs the gateway"
    return OpenAI(base_url=target.base_url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_streamed_chat_with_a_stop_string_equals_the_unary_reply(
    target: ContractTarget, client: OpenAI
) -> None:
    messages = [{"role": "user", "content": "Name a fruit."}]
    free = client.chat.completions.create(
        model=target.model_id, messages=messages, max_tokens=24, temperature=0
    )
    text = free.choices[0].message.content or ""
    assert len(text.strip()) >= 8, text
    start = text.index(text.strip()) + 2
    stop = text[start : start + 3]
    unary = client.chat.completions.create(
        model=target.model_id, messages=messages, max_tokens=24, temperature=0, stop=[stop]
    )
    assert unary.choices[0].message.content == text[: text.index(stop)]
    assert unary.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model=target.model_id,
            messages=messages,
            max_tokens=24,
            temperature=0,
            stop=[stop],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == unary.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == unary.usage.completion_tokens  # type: ignore[union-attr]


def test_completion_choices_are_the_seeded_single_runs_with_one_usage(
    target: ContractTarget, client: OpenAI
) -> None:
    def complete(n: int, seed: int):  # type: ignore[no-untyped-def]
        return client.completions.create(
            model=target.model_id, prompt="Once upon a time", max_tokens=6, n=n, temperature=0.8, seed=seed
        )

    together = complete(3, 3)
    alone = [complete(1, 3 + i) for i in range(3)]
    in_order = sorted(together.choices, key=lambda c: c.index)
    assert [c.text for c in in_order] == [a.choices[0].text for a in alone]
    assert together.usage is not None
    assert together.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone if a.usage)
    assert together.usage.prompt_tokens == alone[0].usage.prompt_tokens  # type: ignore[union-attr]


def test_what_the_engine_cannot_do_is_refused_naming_the_field(target: ContractTarget) -> None:
    assert target.base_url is not None
    body = {"model": target.model_id, "prompt": "Hello", "max_tokens": 0, "echo": True, "logprobs": 1}
    reply = httpx.post(target.base_url + "/v1/completions", json=body, timeout=120)
    if target.capabilities.prompt_logprobs:
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["logprobs"]["token_logprobs"][0] is None
        return
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"]["param"] == "echo"
