"""Log-probabilities of sampled tokens from llama.cpp's raw logits (the model's own distribution)."""

from __future__ import annotations

import llama_cpp.llama_cpp as llama
import numpy as np

from inferno.core.engines.base import TokenLogprobs


def logits_at(ctx: llama.llama_context_p, batch_index: int, n_vocab: int) -> np.ndarray:
    """The logits of the batch's token at batch_index, in place (valid until the next decode)."""
    return np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, batch_index), shape=(n_vocab,))


def token_logprobs(
    ctx: llama.llama_context_p, batch_index: int, n_vocab: int, token: int, top_n: int
) -> TokenLogprobs:
    """log softmax of the logits at batch_index, read for token and the top_n most likely tokens."""
    logits = logits_at(ctx, batch_index, n_vocab)
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        candidates = np.argpartition(-logits, top_n)[:top_n]
        ranked = candidates[np.argsort(-logits[candidates], kind="stable")]
        top = tuple((int(t), float(logits[t]) - log_total) for t in ranked)
    return TokenLogprobs(token, float(logits[token]) - log_total, top)
