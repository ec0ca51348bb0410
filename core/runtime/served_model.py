"""A loaded model as the services see it: its description and capabilities, its tokenizer, and generation
and/or embedding when it has them. Built by the runtime from the parts an engine loaded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from inferno.core.engines.base import (
    EngineStatsSnapshot,
    FillInMiddleTokens,
    ModelDescription,
    SequenceEvent,
    SequenceRequest,
)
from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import DeviceMemory, Embedder, LoadedEngine
from inferno.core.metrics import ModelEngineMetrics
from inferno.core.runtime.generation import GenerationRuntime
from inferno.core.runtime.protocol import BatchDecoder
from inferno.core.runtime.stats import StatsRecorder
from inferno.core.runtime.steppers import ScheduledStepper, SelfScheduledStepper, Stepper
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError


class ServedModel:
    def __init__(self, loaded: LoadedEngine, metrics: ModelEngineMetrics, settings: EngineSettings) -> None:
        self._loaded = loaded
        self._metrics = metrics
        generates = loaded.generator is not None
        self._stats = StatsRecorder(metrics, settings.parallel_sequences if generates else 0)
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._runtime: GenerationRuntime | None = None
        if loaded.generator is not None:
            generator = loaded.generator
            stepper: Stepper = (
                ScheduledStepper(generator)
                if isinstance(generator, BatchDecoder)
                else SelfScheduledStepper(generator)
            )
            self._runtime = GenerationRuntime(
                loaded.description.id,
                stepper,
                loaded.vocabulary,
                self._stats,
                settings.stream_interval_ms / 1000,
            )

    @property
    def description(self) -> ModelDescription:
        return self._loaded.description

    @property
    def capabilities(self) -> EngineCapabilities:
        return self._loaded.capabilities

    @property
    def can_generate(self) -> bool:
        return self._runtime is not None

    @property
    def can_embed(self) -> bool:
        return self._loaded.make_embedder is not None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._loaded.vocabulary.tokenize(text, add_special=add_special)

    def token_bytes(self, token: int) -> bytes:
        return self._loaded.vocabulary.token_bytes(token)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of tokens, as generation would stream it."""
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def fill_in_middle_tokens(self) -> FillInMiddleTokens | None:
        """The vocabulary's fill-in-the-middle tokens; None when it has none or its engine does not say."""
        find = getattr(self._loaded.vocabulary, "fill_in_middle_tokens", None)
        return find() if callable(find) else None

    @property
    def chat_template_source(self) -> str:
        """The Jinja source of the model's chat template; empty when it has none."""
        template = self._loaded.chat_template
        return template.source if template is not None else ""

    def render_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, ending where the assistant's reply begins (unless
        add_generation_prompt is False)."""
        template = self._loaded.chat_template
        if template is None or self._runtime is None:
            raise self._missing("text generation", "/v1/embeddings")
        return template.render(messages, add_generation_prompt=add_generation_prompt)

    @property
    def bos_and_eos_text(self) -> tuple[str, str] | None:
        """The texts of the BOS and EOS tokens, for models that generate (their chat template has them)."""
        template = self._loaded.chat_template
        return (template.bos_token, template.eos_token) if template is not None else None

    def generate(self, request: SequenceRequest) -> AsyncIterator[SequenceEvent]:
        """Streams a sequence's text as it is produced. Closing the iterator cancels the sequence."""
        if self._runtime is None:
            raise self._missing("text generation", "/v1/embeddings")
        return self._runtime.generate(request)

    async def embed(self, inputs: list[tuple[int, ...]]) -> list[list[float]]:
        """One L2-normalized mean-pooled vector per tokenized input."""
        embedder = self._embedding()
        if self._runtime is None:  # generating models count their requests on the engine thread
            self._stats.used()
        return await asyncio.to_thread(embedder.embed, inputs)

    @property
    def embedding_limits(self) -> tuple[int, int]:
        """(longest input in tokens, vector size) for embeddings."""
        embedder = self._embedding()
        return embedder.max_input_tokens, embedder.dimensions

    def stats(self) -> EngineStatsSnapshot:
        memory = self.memory()
        return self._stats.snapshot(memory.host_bytes + memory.device_bytes)

    def memory(self) -> DeviceMemory:
        return self._loaded.memory()

    def close(self) -> None:
        """Stops generation (sequences in flight end with model_not_ready) and frees the model."""
        if self._runtime is not None:
            self._runtime.close()
        self._loaded.close()

    def _embedding(self) -> Embedder:
        """Made on first use: models that never embed do not pay for it."""
        make = self._loaded.make_embedder
        if make is None:
            raise self._missing("embeddings", "/v1/chat/completions or /v1/completions")
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = make(self._metrics.record_embedding_decode)
            return self._embedder

    def _missing(self, what: str, instead: str) -> InfernoError:
        return InfernoError(
            "invalid_parameters",
            f"model '{self.description.id}' ({self.capabilities.engine}) does not do {what}; use {instead}",
            {"param": "model"},
        )
