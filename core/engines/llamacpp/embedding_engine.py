"""An engine for embedding-only GGUF models (BERT and kin): embeddings, tokenization, no text generation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil

from inferno.core.engines.base import (
    Engine,
    EngineStatsSnapshot,
    ModelDescription,
    SequenceEvent,
    SequenceRequest,
)
from inferno.core.engines.llamacpp.embedder import LlamaCppEmbedder
from inferno.core.engines.llamacpp.model import GgufModel
from inferno.core.metrics import EngineMetrics
from inferno.errors import InfernoError

# GGUF architectures whose models encode text into vectors and have no language-model head.
EMBEDDING_ONLY_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2", "modern-bert"})


class LlamaCppEmbeddingEngine(Engine):
    def __init__(
        self, description: ModelDescription, model: GgufModel, threads: int, metrics: EngineMetrics
    ) -> None:
        self._model = model
        self._metrics = metrics.for_model(description.id)
        self._description = ModelDescription(**{**description.__dict__, "context_length": model.n_ctx_train})
        rss_before = psutil.Process().memory_info().rss
        self._embedder = LlamaCppEmbedder(model, threads or os.cpu_count() or 1, self._record)
        self._memory_bytes = description.file_size_bytes + max(
            psutil.Process().memory_info().rss - rss_before, 0
        )
        self._requests = 0
        self._last_used = 0.0

    def _record(self, sequences: int, tokens: int) -> None:
        self._metrics.record_embedding_decode(sequences, tokens)

    @property
    def description(self) -> ModelDescription:
        return self._description

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._model.tokenize(text, add_special=add_special)

    def token_bytes(self, token: int) -> bytes:
        return self._model.token_bytes(token)

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        raise self._no_generation()

    async def generate(self, request: SequenceRequest) -> AsyncIterator[SequenceEvent]:
        raise self._no_generation()
        yield  # pragma: no cover - makes this an async generator

    async def embed(self, inputs: list[tuple[int, ...]]) -> list[list[float]]:
        self._requests += 1
        self._last_used = time.time()
        return await asyncio.to_thread(self._embedder.embed, inputs)

    @property
    def embedding_limits(self) -> tuple[int, int]:
        return self._embedder.max_input_tokens, self._embedder.dimensions

    def stats(self) -> EngineStatsSnapshot:
        return EngineStatsSnapshot(
            running_sequences=0,
            waiting_sequences=0,
            decode_steps=0,
            max_sequences_per_step=0,
            last_step_sequences=0,
            requests_total=self._requests,
            prompt_tokens_total=0,
            generated_tokens_total=0,
            reused_prompt_tokens_total=0,
            kv_cache_usage=0.0,
            max_parallel_sequences=0,
            tokens_per_second=0.0,
            avg_latency_ms=0.0,
            last_used=self._last_used,
            memory_bytes=self._memory_bytes,
        )

    def close(self) -> None:
        self._embedder.close()
        self._model.close()

    def _no_generation(self) -> InfernoError:
        return InfernoError(
            "invalid_parameters",
            f"model '{self._description.id}' makes embeddings only; use /v1/embeddings",
            {"param": "model"},
        )
