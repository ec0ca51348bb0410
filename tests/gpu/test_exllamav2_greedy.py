"""(a) The embedded model exported to FP16 decodes greedily in ExLlamaV2 exactly as in transformers."""

from __future__ import annotations

from pathlib import Path

from tests.gpu import models

NEW_TOKENS = 32


def _explain(name: str, got: list[int], expected: list[int]) -> str:
    index = models.first_difference(got, expected)
    return f"{name} {got}\ntransformers {expected}\nfirst difference at generated token {index}"


def test_engine_greedy_tokens_equal_transformers(hf_model_dir: Path) -> None:
    smoke = models.engine_smoke(hf_model_dir, models.CHAT_PROMPT, NEW_TOKENS)
    expected = models.transformers_greedy(hf_model_dir, smoke.prompt_ids, NEW_TOKENS)
    assert len(smoke.ids) == NEW_TOKENS
    assert all(smoke.greedy_is_top1), "a greedy token was not its step's most likely one"
    # transformers stops at end of sequence, the smoke module does not: compare what both generated.
    got = smoke.ids[: len(expected)]
    assert got == expected, _explain("engine", got, expected)


def test_library_greedy_tokens_equal_transformers(hf_model_dir: Path) -> None:
    prompt = models.tokenize(hf_model_dir, models.CHAT_PROMPT)
    model = models.ExLlamaV2Model(hf_model_dir)
    try:
        got = model.greedy(prompt, NEW_TOKENS, models.eos_ids(hf_model_dir))
    finally:
        model.close()
    expected = models.transformers_greedy(hf_model_dir, prompt, NEW_TOKENS)
    assert len(expected) == NEW_TOKENS, "the prompt should not end within 32 tokens"
    assert got == expected, _explain("exllamav2", got, expected)
