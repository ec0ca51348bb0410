"""The embedded model in a bare llama.cpp context, for tests of the engine's own KV and decode operations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as llama

from inferno.core.embedded import embedded_model_path


@dataclass
class EmbeddedContext:
    ctx: Any
    batch: Any
    n_vocab: int

    def decode(self, seq_id: int, tokens: list[int], start: int) -> int:
        """llama_decode's status for tokens at positions start... of seq_id, logits for the last one."""
        batch = self.batch
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
            batch.seq_id[i][0], batch.logits[i] = seq_id, int(i == len(tokens) - 1)
        batch.n_tokens = len(tokens)
        return int(llama.llama_decode(self.ctx, batch))

    def last_logits(self, count: int) -> list[float]:
        """The logits of the last token of the latest decode of count tokens."""
        logits = llama.llama_get_logits_ith(self.ctx, count - 1)
        return [logits[i] for i in range(self.n_vocab)]


@contextmanager
def embedded_context(sequences: int, cells_per_sequence: int, batch_tokens: int) -> Iterator[EmbeddedContext]:
    """One KV stream per sequence (as the engine runs it), n_batch = n_ubatch = batch_tokens."""
    llama.llama_backend_init()
    model = llama.llama_model_load_from_file(
        str(embedded_model_path()).encode(), llama.llama_model_default_params()
    )
    params = llama.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = sequences * cells_per_sequence, sequences, False
    params.n_batch = params.n_ubatch = batch_tokens
    ctx = llama.llama_init_from_model(model, params)
    batch = llama.llama_batch_init(batch_tokens, 0, 1)
    try:
        yield EmbeddedContext(ctx, batch, llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model)))
    finally:
        llama.llama_batch_free(batch)
        llama.llama_free(ctx)
        llama.llama_model_free(model)
