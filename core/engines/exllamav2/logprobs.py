"""Log-probabilities of sampled tokens from the logits ExLlamaV2's generator returns (return_logits).

Which distribution that is: ExLlamaV2's sampler adds the repetition/frequency/presence penalties and
logit_bias to the logits in place before it samples, and the generator returns those logits; temperature,
top_k/top_p/min_p and the grammar's mask are applied to a copy. So these are the model's raw log-probabilities
when a request sets no penalty and no logit_bias (the usual case), and the penalized, biased ones otherwise;
never the truncated distribution. The generator's own token_probs/top_k_probs are after temperature and the
cut-offs (a top_k=1 request would report probability 1), so they are not used.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inferno.core.engines.base import TokenLogprobs


def token_logprobs(logits: npt.ArrayLike, token: int, top_n: int, n_vocab: int) -> TokenLogprobs:
    """log softmax over the first n_vocab logits (the rest are the head's padding), read for token and the
    top_n most likely tokens, most likely first."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)[:n_vocab]
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak).sum()))
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        n = min(top_n, row.size)
        candidates = np.argpartition(-row, n - 1)[:n]
        ranked = candidates[np.argsort(-row[candidates], kind="stable")]
        top = tuple((int(t), float(row[t]) - log_total) for t in ranked)
    return TokenLogprobs(token, float(row[token]) - log_total, top)
