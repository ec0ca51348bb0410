"""Embeddings from a GGUF model: a second llama.cpp context on the same weights, in embedding mode with mean
pooling. Inputs are packed into batches, several sequences per llama_decode; vectors are L2-normalized (as
sentence-transformers' normalize step does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import llama_cpp.llama_cpp as llama
import numpy as np

from inferno.core.engines.llamacpp.model import GgufModel
from inferno.errors import InfernoError

# Tokens one decode may hold, across its sequences; also the longest input.
EMBEDDING_BATCH_TOKENS = 2048
EMBEDDING_BATCH_SEQUENCES = 64


class LlamaCppEmbedder:
    """One caller at a time (a lock); callers run it in a worker thread."""

    def __init__(self, model: GgufModel, threads: int, on_decode: Callable[[int, int], None]) -> None:
        """on_decode(sequences, tokens) is told of every decode, for the metrics."""
        self._model = model
        self.max_input_tokens = min(EMBEDDING_BATCH_TOKENS, model.n_ctx_train)
        params = llama.llama_context_default_params()
        params.n_ctx = self.max_input_tokens
        params.n_batch = self.max_input_tokens
        # Non-causal (BERT-style) models need a whole sequence in one micro-batch.
        params.n_ubatch = self.max_input_tokens
        params.n_seq_max = EMBEDDING_BATCH_SEQUENCES
        params.n_threads = threads
        params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = llama.LLAMA_POOLING_TYPE_MEAN
        params.kv_unified = True
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise InfernoError("insufficient_memory", "llama.cpp could not create an embedding context")
        self._batch = llama.llama_batch_init(self.max_input_tokens, 0, 1)
        self.dimensions = int(llama.llama_model_n_embd(model.handle))
        self._on_decode = on_decode
        self._lock = threading.Lock()

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """One normalized vector per input; every input is non-empty and at most max_input_tokens long."""
        vectors: list[list[float]] = []
        with self._lock:
            for group in _batches(inputs, self.max_input_tokens, EMBEDDING_BATCH_SEQUENCES):
                vectors.extend(self._embed_batch(group))
        return vectors

    def close(self) -> None:
        with self._lock:
            llama.llama_batch_free(self._batch)
            llama.llama_free(self._ctx)

    def _embed_batch(self, group: Sequence[Sequence[int]]) -> list[list[float]]:
        batch = self._batch
        n = 0
        for seq_id, tokens in enumerate(group):
            for position, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = 1
                n += 1
        batch.n_tokens = n
        llama.llama_memory_clear(llama.llama_get_memory(self._ctx), True)
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise InfernoError("internal_error", f"llama_decode failed with status {status} while embedding")
        self._on_decode(len(group), n)
        vectors = []
        for seq_id in range(len(group)):
            pointer = llama.llama_get_embeddings_seq(self._ctx, seq_id)
            vector = np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).astype(np.float64)
            norm = float(np.linalg.norm(vector))
            vectors.append((vector / norm if norm > 0 else vector).tolist())
        return vectors


def _batches(
    inputs: Sequence[Sequence[int]], max_tokens: int, max_sequences: int
) -> list[list[Sequence[int]]]:
    """Consecutive inputs packed so each batch stays within both limits."""
    batches: list[list[Sequence[int]]] = []
    current: list[Sequence[int]] = []
    tokens = 0
    for item in inputs:
        if current and (tokens + len(item) > max_tokens or len(current) == max_sequences):
            batches.append(current)
            current, tokens = [], 0
        current.append(item)
        tokens += len(item)
    if current:
        batches.append(current)
    return batches
