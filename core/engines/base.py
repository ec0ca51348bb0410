"""The interface every engine implements, and the dataclasses that cross it."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any


class FinishReason(Enum):
    STOP = "stop"
    LENGTH = "length"


@dataclass(frozen=True)
class SamplingConfig:
    """Fully resolved sampling settings: every default already applied."""

    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    seed: int | None
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    # GBNF the output must match (structured output); None for free text.
    grammar: str | None = None


@dataclass(frozen=True)
class TokenLogprobs:
    """A sampled token's log-probability under the raw model distribution, and the top alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class SequenceRequest:
    """One sequence to generate: a tokenized prompt and how to continue it."""

    prompt_tokens: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...]
    sampling: SamplingConfig
    # Keep generating through end-of-generation tokens (benchmarks), as vLLM's ignore_eos does.
    ignore_eos: bool = False
    # None: no log-probabilities; n >= 0: each sampled token's, with its n most likely alternatives.
    top_logprobs: int | None = None
    # None: none; n >= 0: also every prompt token's (after the first), with n alternatives. Such a prompt is
    # computed in full, never taken from the prefix cache. max_tokens may then be 0 (score the prompt only).
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class SequenceEvent:
    """New text of one sequence; the last event of a sequence has finish_reason set."""

    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None
    # Tokens sampled since the previous event, when the request asked for log-probabilities.
    logprobs: tuple[TokenLogprobs, ...] = ()
    # On the first event, when prompt_logprobs was asked: prompt tokens 1 to the end (the first token has
    # nothing before it).
    prompt_logprobs: tuple[TokenLogprobs, ...] = ()


@dataclass(frozen=True)
class ModelDescription:
    id: str
    path: str
    format: str
    engine: str
    owned_by: str
    created: int
    context_length: int
    file_size_bytes: int
    vocab_size: int


@dataclass(frozen=True)
class EngineStatsSnapshot:
    running_sequences: int
    waiting_sequences: int
    decode_steps: int
    max_sequences_per_step: int
    last_step_sequences: int
    requests_total: int
    prompt_tokens_total: int
    generated_tokens_total: int
    reused_prompt_tokens_total: int
    kv_cache_usage: float
    max_parallel_sequences: int
    tokens_per_second: float
    avg_latency_ms: float
    last_used: float
    memory_bytes: int


class Engine(abc.ABC):
    """A loaded model that turns prompts into token streams. One engine owns one model."""

    @property
    @abc.abstractmethod
    def description(self) -> ModelDescription: ...

    @abc.abstractmethod
    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Tokens for text, with the model's BOS if it wants one and add_special; special tokens in text are
        parsed."""

    @abc.abstractmethod
    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (control tokens: empty)."""

    def detokenize(self, tokens: list[int]) -> str:
        """The text of tokens, as generation would stream it."""
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    @abc.abstractmethod
    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text for a conversation, ending where the assistant's reply begins."""

    @abc.abstractmethod
    def generate(self, request: SequenceRequest) -> AsyncIterator[SequenceEvent]:
        """Streams a sequence's text as it is produced. Closing the iterator cancels the sequence."""

    @abc.abstractmethod
    async def embed(self, inputs: list[tuple[int, ...]]) -> list[list[float]]:
        """One L2-normalized mean-pooled vector per tokenized input."""

    @property
    @abc.abstractmethod
    def embedding_limits(self) -> tuple[int, int]:
        """(longest input in tokens, vector size) for embeddings."""

    @abc.abstractmethod
    def stats(self) -> EngineStatsSnapshot: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Stops the engine and frees the model."""
