"""The speed features change nothing but speed, on the real model through the real servers: prompt-lookup
drafts give exactly the tokens of one-at-a-time decoding (greedy, and sampled with a seed), and prefixes
shared across concurrent requests are computed once (host-memory prefix cache) with the same replies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.llama_context import embedded_context
from tests.servers import RunningServer, running_inferno

ARTICLE = (
    "Invoice 4471 was issued on 3 March 2025 to Northwind Traders, 12 Harbour Street, Bristol, for 40 units "
    "of part A-113 at 12.50 each and 15 units of part B-207 at 31.00 each. Payment is due within 30 days. "
    "The contact person is Maria Lopez, maria.lopez@northwind.example, phone 0117 496 0321."
)
COPY_PROMPTS = (
    f"Repeat the following text exactly, word for word:\n\n{ARTICLE}",
    f"Extract the contact person's name, e-mail address and phone number from this text:\n\n{ARTICLE}",
    "Write the numbers from one to twenty in words, separated by commas.",
)
# A long system prompt several conversations share (about 250 tokens).
SYSTEM = "You are the support assistant of Northwind Traders. Answer briefly and politely. " + " ".join(
    f"Rule {i}: never reveal internal ticket {1000 + i}." for i in range(1, 25)
)
# How far one log-probability may move when a prompt is computed in other chunks (seen: up to 0.16).
ROUNDING = 0.3
QUESTIONS = ("Where is my order?", "Can I change my address?", "Do you ship abroad?", "How do I pay?")


@pytest.fixture(scope="module")
def plain_server() -> Iterator[RunningServer]:
    """The embedded model with drafts and the host prefix cache off: one token at a time, every prompt
    computed in full (or from a finished sequence's retained cells)."""
    with running_inferno("--draft-tokens", "0", "--prefix-cache-mib", "0", "--parallel", "4") as running:
        yield running


@pytest.fixture(scope="module")
def drafted_server() -> Iterator[RunningServer]:
    """The same, with drafts: given the same requests in the same order, the two differ only in drafting."""
    with running_inferno("--draft-tokens", "8", "--prefix-cache-mib", "0", "--parallel", "4") as running:
        yield running


def _chat(server: RunningServer, model: str, messages: list[dict[str, str]], **extra: object) -> str:
    body = {"model": model, "messages": messages, "max_tokens": 80, "temperature": 0, **extra}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def _counter(server: RunningServer, name: str) -> float:
    text = httpx.get(server.base_url + "/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(rf"^{name}_total{{[^}}]*}} (\S+)$", text, re.MULTILINE))


def test_drafted_decoding_gives_exactly_the_one_at_a_time_tokens(
    drafted_server: RunningServer, plain_server: RunningServer, model_id: str
) -> None:
    for prompt in COPY_PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        assert _chat(drafted_server, model_id, messages) == _chat(plain_server, model_id, messages), prompt
        seeded = {"temperature": 0.8, "seed": 11}
        drafted = _chat(drafted_server, model_id, messages, **seeded)
        assert drafted == _chat(plain_server, model_id, messages, **seeded)
    assert _counter(drafted_server, "inferno_engine_accepted_draft_tokens") > 20
    assert _counter(plain_server, "inferno_engine_draft_tokens") == 0


def _first_token(server: RunningServer, model: str, messages: list[dict[str, str]]) -> dict[str, float]:
    """The top 5 first tokens of the reply and their log-probabilities."""
    body = {"model": model, "messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": 5}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    (first,) = response.json()["choices"][0]["logprobs"]["content"]
    return {top["token"]: top["logprob"] for top in first["top_logprobs"]}


def test_a_shared_system_prompt_is_computed_once_for_concurrent_conversations(
    server: RunningServer, plain_server: RunningServer, model_id: str
) -> None:
    """The next-token distribution matches a server that computes every prompt in full, to rounding: the
    prompt tails are computed in chunks of other sizes, which llama.cpp's kernels round differently (a wrong
    restore would change the distribution outright; test_a_restored_snapshot_is_the_computed_cells checks
    the cells themselves exactly)."""
    conversations = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{n}. {q}"}]
        for n, q in enumerate(QUESTIONS)
    ]
    expected = [_first_token(plain_server, model_id, messages) for messages in conversations]
    hits_before = _counter(server, "inferno_engine_prefix_cache_hits")
    reused_before = _counter(server, "inferno_engine_reused_prompt_tokens")
    with ThreadPoolExecutor(len(conversations)) as pool:
        got = list(pool.map(lambda m: _first_token(server, model_id, m), conversations))
    for top, reference in zip(got, expected, strict=True):
        # Two first tokens can be near a tie ("3. How do I pay?": "1" and "You" 0.02 apart), so the pick
        # must be one the full computation ranks within rounding of its best, not necessarily its best.
        best = max(top, key=top.__getitem__)
        assert reference.get(best, float("-inf")) > max(reference.values()) - ROUNDING, (top, reference)
        shared = top.keys() & reference.keys()
        assert len(shared) >= 4
        assert all(abs(top[token] - reference[token]) < ROUNDING for token in shared), (top, reference)
    assert _counter(server, "inferno_engine_prefix_cache_hits") >= hits_before + len(conversations) - 1
    # Every conversation after the first takes the system prompt (about 250 tokens) from the cache.
    assert _counter(server, "inferno_engine_reused_prompt_tokens") >= reused_before + 3 * 200
    metrics = httpx.get(server.base_url + "/metrics", timeout=30).text
    held = re.search(r"^inferno_engine_prefix_cache_bytes{[^}]*} (\S+)$", metrics, re.MULTILINE)
    assert held is not None and float(held.group(1)) > 0


def test_a_restored_snapshot_is_the_computed_cells() -> None:
    """In-process, on the engine's own KV operations: a prefix computed in one stream, saved and restored
    into another, then the same tail computed in both streams the same way gives bit-identical logits."""
    from inferno.core.engines.llamacpp.decoder import LlamaKVCache

    with embedded_context(sequences=2, cells_per_sequence=512, batch_tokens=128) as llama_context:
        prefix, tail = [300 + 7 * i for i in range(100)], [1000 + 3 * i for i in range(20)]
        assert llama_context.decode(0, prefix, 0) == 0
        kv = LlamaKVCache(llama_context.ctx)
        assert kv.restore(1, kv.save(0))
        assert llama_context.decode(1, tail, len(prefix)) == 0
        restored = llama_context.last_logits(len(tail))
        assert llama_context.decode(0, tail, len(prefix)) == 0
        assert restored == llama_context.last_logits(len(tail))
