"""Text completion options beyond the basics: echo (with prompt log-probabilities), best_of and user."""

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
from tests.servers import RunningServer

PROMPT = "The capital of France is"


def _token_count(http: httpx.Client, text: str) -> int:
    return int(http.post("/v1/tokenize", json={"content": text}).json()["count"])


def test_echo_puts_the_exact_prompt_in_front(openai_client: OpenAI, model_id: str) -> None:
    for prompt in (PROMPT, "Café ☕ — naïve  spacing\n\tand tabs:"):
        plain = openai_client.completions.create(model=model_id, prompt=prompt, max_tokens=6, temperature=0)
        echoed = openai_client.completions.create(
            model=model_id, prompt=prompt, max_tokens=6, temperature=0, echo=True
        )
        assert echoed.choices[0].text == prompt + plain.choices[0].text
        assert echoed.usage is not None and plain.usage is not None
        assert echoed.usage.prompt_tokens == plain.usage.prompt_tokens


def test_echo_of_a_token_prompt_returns_its_text(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    tokens = http.post("/v1/tokenize", json={"content": PROMPT}).json()["tokens"]
    reply = openai_client.completions.create(
        model=model_id, prompt=tokens, max_tokens=3, temperature=0, echo=True
    )
    assert reply.choices[0].text.startswith(PROMPT)


def test_echo_with_max_tokens_0_scores_the_prompt_only(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    """What evaluation harnesses send to score a text: every prompt token's logprob, nothing generated."""
    reply = openai_client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=0, echo=True, logprobs=3
    )
    choice = reply.choices[0]
    assert choice.text == PROMPT
    assert reply.usage is not None and reply.usage.completion_tokens == 0
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens is not None
    assert len(logprobs.tokens) == _token_count(http, PROMPT)
    assert "".join(logprobs.tokens) == PROMPT
    assert logprobs.token_logprobs is not None and logprobs.token_logprobs[0] is None
    assert logprobs.top_logprobs is not None and logprobs.top_logprobs[0] is None
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    for top in logprobs.top_logprobs[1:]:
        assert top is not None and len(top) == 3
        assert list(top.values()) == sorted(top.values(), reverse=True)


def test_prompt_logprobs_match_llama_cpp_computed_independently(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    params = pb.CompletionParams(
        model=model_id,
        prompts=[pb.Prompt(text=PROMPT)],
        limits=common_pb2.GenerationLimits(max_tokens=0),
        logprobs=2,
        echo=True,
    )
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    served = stub.CreateCompletion(pb.CreateCompletionRequest(params=params)).choices[0].prompt_logprobs
    reference = Llama(
        str(embedded_model_path()), n_ctx=256, n_threads=2, logits_all=True, flash_attn=True, verbose=False
    )
    try:
        tokens = reference.tokenize(PROMPT.encode(), add_bos=True, special=True)
        reference.eval(tokens)
        logits = np.array(reference.scores[: len(tokens)], dtype=np.float64)
    finally:
        reference.close()
    assert [p.token_id for p in served] == tokens
    assert not served[0].HasField("logprob")
    for position in range(1, len(tokens)):
        row = logits[position - 1]
        log_probs = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        entry = served[position]
        assert math.isclose(entry.logprob, log_probs[tokens[position]], abs_tol=1e-3), position
        assert [t.token_id for t in entry.top_logprobs] == list(np.argsort(-log_probs)[:2])


def test_echoed_prompt_logprob_equals_the_logprob_of_generating_that_token(
    openai_client: OpenAI, model_id: str
) -> None:
    generated = openai_client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=1
    ).choices[0]
    assert generated.logprobs is not None and generated.logprobs.token_logprobs is not None
    continued = PROMPT + generated.text
    scored = openai_client.completions.create(
        model=model_id, prompt=continued, max_tokens=0, echo=True, logprobs=1
    ).choices[0]
    assert scored.logprobs is not None and scored.logprobs.token_logprobs is not None
    assert scored.logprobs.tokens is not None and scored.logprobs.tokens[-1] == generated.text
    assert math.isclose(
        scored.logprobs.token_logprobs[-1], generated.logprobs.token_logprobs[0], abs_tol=1e-3
    )


def test_streamed_echo_equals_the_unary_one(openai_client: OpenAI, model_id: str) -> None:
    unary = openai_client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=8, temperature=0, echo=True, logprobs=1
    ).choices[0]
    chunks = list(
        openai_client.completions.create(
            model=model_id, prompt=PROMPT, max_tokens=8, temperature=0, echo=True, logprobs=1, stream=True
        )
    )
    assert chunks[0].choices[0].text.startswith(PROMPT)
    assert "".join(c.choices[0].text for c in chunks) == unary.text
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens or []]
    offsets = [o for c in chunks if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset or []]
    assert unary.logprobs is not None
    assert tokens == unary.logprobs.tokens
    assert offsets == unary.logprobs.text_offset


def _mean_logprob(choice: object) -> float:
    values = choice.logprobs.token_logprobs  # type: ignore[attr-defined]
    return sum(values) / len(values) if values else -math.inf


def test_best_of_returns_the_candidates_with_the_highest_mean_logprob(
    openai_client: OpenAI, model_id: str
) -> None:
    """Candidate j samples with seed + j, as choice j of an n-request does: the n=4 request below makes the
    same four candidates, and the best_of request must return the two that rank highest."""
    common = {
        "model": model_id,
        "prompt": "Once upon a time",
        "max_tokens": 8,
        "seed": 11,
        "temperature": 1.0,
    }
    four = openai_client.completions.create(n=4, logprobs=0, **common)
    ranked = sorted(four.choices, key=_mean_logprob, reverse=True)
    assert len({c.text for c in four.choices}) > 2  # else the ranking would prove nothing
    best = openai_client.completions.create(n=2, best_of=4, **common)
    assert [c.index for c in best.choices] == [0, 1]
    assert [c.text for c in best.choices] == [c.text for c in ranked[:2]]
    assert all(c.logprobs is None for c in best.choices)
    # Every candidate's tokens are billed, as OpenAI bills best_of.
    assert best.usage is not None and four.usage is not None
    assert best.usage.completion_tokens == four.usage.completion_tokens


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"n": 2, "best_of": 1}, "from n"),
        ({"best_of": 129}, "from n"),
        ({"best_of": 2, "stream": True}, "cannot be streamed"),
        ({"suffix": "The end."}, "suffix"),
        ({"echo": True, "max_tokens": 0, "logprobs": 6}, "logprobs"),
    ],
)
def test_bad_completion_options_are_400s_naming_the_field(
    http: httpx.Client, model_id: str, body: dict[str, object], message: str
) -> None:
    reply = http.post("/v1/completions", json={"model": model_id, "prompt": PROMPT, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"]["param"] in body
    assert message in error["message"]


def test_max_tokens_0_without_echo_is_refused(http: httpx.Client, model_id: str) -> None:
    reply = http.post("/v1/completions", json={"model": model_id, "prompt": PROMPT, "max_tokens": 0})
    assert reply.status_code == 400
    assert reply.json()["error"]["details"]["param"] == "max_tokens"


# Longer than the model's 8192-token context.
TOO_LONG = "word " * 9000


@pytest.mark.parametrize(
    ("path", "field", "value", "param"),
    [
        ("/v1/completions", "prompt", TOO_LONG, "prompt"),
        ("/v1/completions", "prompt", [1] * 9000, "prompt"),
        ("/v1/completions", "prompt", ["Hello", TOO_LONG], "prompt[1]"),
        ("/v1/completions", "prompt", [[1, 2], [1] * 9000], "prompt[1]"),
        ("/v1/chat/completions", "messages", [{"role": "user", "content": TOO_LONG}], "messages"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_context_length_exceeded_names_the_field_the_prompt_came_in(
    http: httpx.Client, model_id: str, path: str, field: str, value: object, param: str, stream: bool
) -> None:
    reply = http.post(path, json={"model": model_id, field: value, "stream": stream})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["details"]["param"] == param


def test_prompt_tokens_are_counted_once_however_many_choices(openai_client: OpenAI, model_id: str) -> None:
    one = openai_client.completions.create(model=model_id, prompt=PROMPT, max_tokens=2)
    three = openai_client.completions.create(model=model_id, prompt=PROMPT, max_tokens=2, n=3)
    assert one.usage is not None and three.usage is not None
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    chat = openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, n=3
    )
    single = openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert chat.usage is not None and single.usage is not None
    assert chat.usage.prompt_tokens == single.usage.prompt_tokens


def test_user_is_recorded_in_the_request_log(
    openai_client: OpenAI, model_id: str, server: RunningServer
) -> None:
    openai_client.completions.create(model=model_id, prompt=PROMPT, max_tokens=1, user="completion-user-7f3a")
    openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, user="chat-user-91bc"
    )
    log = server.log_path.read_text(errors="replace")
    assert "user='completion-user-7f3a'" in log
    assert "user='chat-user-91bc'" in log
