"""n, logit_bias and the llama.cpp sampling extensions (top_k, min_p, repetition_penalty), end to end."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

PROMPT = "My favourite fruit is"


def _complete(client: OpenAI, model_id: str, **kwargs: object) -> list[str]:
    reply = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=8, **kwargs)  # type: ignore[call-overload]
    return [c.text for c in reply.choices]


def test_n_choices_of_a_seeded_request_are_the_single_requests_with_seed_plus_i(
    openai_client: OpenAI, model_id: str
) -> None:
    reply = openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Name an animal."}], max_tokens=10,
        temperature=1.0, seed=11, n=3,
    )  # fmt: skip
    assert [c.index for c in reply.choices] == [0, 1, 2]
    singles = [
        openai_client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Name an animal."}], max_tokens=10,
            temperature=1.0, seed=seed,
        ).choices[0].message.content
        for seed in (11, 12, 13)
    ]  # fmt: skip
    assert [c.message.content for c in reply.choices] == singles
    assert len(set(singles)) > 1


def test_streamed_n_choices_carry_their_index(openai_client: OpenAI, model_id: str) -> None:
    whole = _complete(openai_client, model_id, n=2, temperature=0)
    chunks = list(
        openai_client.completions.create(
            model=model_id, prompt=PROMPT, max_tokens=8, n=2, temperature=0, stream=True
        )
    )
    streamed = [
        "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in (0, 1)
    ]
    assert streamed == whole
    assert whole[0] == whole[1]  # greedy: both choices are the same text


def _first_token(http: httpx.Client, text: str) -> int:
    return int(http.post("/v1/tokenize", json={"content": text}).json()["tokens"][0])


def test_logit_bias_bans_and_forces_tokens(openai_client: OpenAI, http: httpx.Client, model_id: str) -> None:
    greedy = _complete(openai_client, model_id, temperature=0)[0]
    banned = _first_token(http, greedy)
    without = _complete(openai_client, model_id, temperature=0, logit_bias={str(banned): -100})[0]
    assert _first_token(http, without) != banned
    forced = _first_token(http, " banana")
    assert _complete(openai_client, model_id, temperature=0, logit_bias={str(forced): 100})[0].startswith(
        " banana"
    )


def test_greedy_decoding_picks_what_llama_cpps_greedy_sampler_picks(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    """Greedy decoding with no sampler but a logit bias reads the (biased) argmax of the logits in the
    decoder. min_tokens 1 puts llama.cpp's sampler chain (end-of-generation ban, bias, its greedy sampler)
    back in and changes nothing where the first token is not an end of generation: same replies, with and
    without a bias."""

    def complete(prompt: str, **extra: object) -> str:
        reply = openai_client.completions.create(
            model=model_id, prompt=prompt, max_tokens=48, temperature=0, extra_body=extra
        )
        return reply.choices[0].text

    for prompt in (PROMPT, "List the planets of the solar system:", "def fibonacci(n):"):
        plain = complete(prompt)
        assert plain, prompt  # the first token is not an end of generation, so min_tokens changes nothing
        assert complete(prompt, min_tokens=1) == plain, prompt
        bias = {str(_first_token(http, plain)): -100, str(_first_token(http, " the")): 2.5}
        biased = complete(prompt, logit_bias=bias)
        assert biased != plain, prompt
        assert complete(prompt, logit_bias=bias, min_tokens=1) == biased, prompt


@pytest.mark.parametrize("extension", [{"top_k": 1}, {"min_p": 1.0}])
def test_top_k_1_and_min_p_1_leave_only_the_greedy_token(
    openai_client: OpenAI, model_id: str, extension: dict[str, float]
) -> None:
    greedy = _complete(openai_client, model_id, temperature=0)
    sampled = _complete(openai_client, model_id, temperature=1.5, seed=3, extra_body=extension)
    assert sampled == greedy


def test_repetition_penalty_changes_repetitive_output(openai_client: OpenAI, model_id: str) -> None:
    def complete(penalty: float) -> str:
        reply = openai_client.completions.create(
            model=model_id, prompt="red red red red red red", max_tokens=12, temperature=0,
            extra_body={"repetition_penalty": penalty},
        )  # fmt: skip
        return reply.choices[0].text

    plain, penalised = complete(1.0), complete(1.8)
    assert plain != penalised
    assert penalised.count("red") < plain.count("red")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"logit_bias": {"5": 150}}, "logit_bias"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
    ],
)
def test_sampling_ranges_name_the_field(http: httpx.Client, model_id: str, extra: dict, param: str) -> None:
    response = http.post(
        "/v1/completions", json={"model": model_id, "prompt": PROMPT, "max_tokens": 2, **extra}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["param"] == param
