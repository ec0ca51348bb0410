"""logprobs: values from the model's own distribution, in OpenAI's chat and legacy completion shapes."""

from __future__ import annotations

import math

import grpc
import httpx
import numpy as np
import pytest
from llama_cpp import Llama
from openai import OpenAI

from inferno.core.embedded import embedded_model_path
from inferno.v1 import common_pb2, inference_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb

QUESTION = [{"role": "user", "content": "Name a colour."}]


def test_chat_logprobs_are_sorted_and_the_greedy_token_is_top_1(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id, messages=QUESTION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    for entry in choice.logprobs.content:
        top = [t.logprob for t in entry.top_logprobs]
        assert len(top) == 5 and top == sorted(top, reverse=True)
        assert entry.top_logprobs[0].token == entry.token
        assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-6)
        assert entry.logprob <= 0 and sum(math.exp(v) for v in top) <= 1.0 + 1e-5
        assert bytes(entry.bytes or []).decode(errors="replace") == entry.token
    if choice.finish_reason == "length":
        assert "".join(e.token for e in choice.logprobs.content) == choice.message.content


def test_sampled_tokens_carry_their_own_logprob(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        max_tokens=12,
        temperature=1.5,
        seed=9,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].logprobs.content if reply.choices[0].logprobs else []
    assert content
    for entry in content:
        assert entry.logprob <= entry.top_logprobs[0].logprob + 1e-6
        listed = {t.token: t.logprob for t in entry.top_logprobs}
        if entry.token in listed:
            assert math.isclose(listed[entry.token], entry.logprob, abs_tol=1e-6)


def test_first_token_logprobs_match_llama_cpp_computed_independently(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    prompt = "The capital of France is"
    params = pb.CompletionParams(
        model=model_id,
        prompts=[pb.Prompt(text=prompt)],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=1),
        logprobs=5,
    )
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    served = stub.CreateCompletion(pb.CreateCompletionRequest(params=params)).choices[0].logprobs[0]
    # The reference runs the same attention kernel (flash attention) so the numbers agree to rounding.
    reference = Llama(
        str(embedded_model_path()), n_ctx=256, n_threads=2, logits_all=True, flash_attn=True, verbose=False
    )
    try:
        reference.eval(reference.tokenize(prompt.encode(), add_bos=True, special=True))
        logits = np.array(reference.scores[reference.n_tokens - 1], dtype=np.float64)
    finally:
        reference.close()
    log_probs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    assert served.token_id == int(np.argmax(log_probs))
    assert math.isclose(served.logprob, log_probs[served.token_id], abs_tol=1e-3)
    assert len(served.top_logprobs) == 5
    for top in served.top_logprobs:
        assert math.isclose(top.logprob, log_probs[top.token_id], abs_tol=1e-3), top


def test_completion_logprobs_in_the_legacy_shape(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.completions.create(
        model=model_id, prompt="One, two, three,", max_tokens=6, temperature=0, logprobs=3
    )
    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.text_offset
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset[0] == 0
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    for token, value, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs or [], strict=True
    ):
        assert 1 <= len(top) <= 3
        assert math.isclose(max(top.values()), value, abs_tol=1e-6)
        assert math.isclose(top[token], value, abs_tol=1e-6)


def test_streamed_logprobs_equal_the_unary_ones(openai_client: OpenAI, model_id: str) -> None:
    request = {"model": model_id, "messages": QUESTION, "max_tokens": 8, "temperature": 0, "logprobs": True}
    unary = openai_client.chat.completions.create(**request)
    streamed = [
        entry.logprob
        for chunk in openai_client.chat.completions.create(**request, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert unary.choices[0].logprobs is not None
    assert streamed == [e.logprob for e in unary.choices[0].logprobs.content or []]


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ],
)
def test_logprob_ranges_name_the_field(
    http: httpx.Client, model_id: str, path: str, extra: dict, param: str
) -> None:
    body = {"model": model_id, "max_tokens": 2, **extra}
    body.update({"messages": QUESTION} if "chat" in path else {"prompt": "Hi"})
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["param"] == param
