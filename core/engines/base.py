"""The dataclasses that cross the engine seam: a sequence to generate, its events, a model's description and
its statistics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    # The request field the grammar came from ("response_format", "tools", "grammar", "guided_json", ...),
    # named when an engine rejects it.
    grammar_param: str = "response_format"
    # Locally typical sampling; 1.0 is off.
    typical_p: float = 1.0
    # End-of-generation tokens are not sampled, and stop strings do not match, before this many tokens.
    min_tokens: int = 0


@dataclass(frozen=True)
class FillInMiddleTokens:
    """A code model's fill-in-the-middle tokens: prompt = prefix_token prefix suffix_token suffix
    middle_token, and the model writes the middle."""

    prefix: int
    suffix: int
    middle: int


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
    # Prompt tokens whose KV state the engine took from its prefix cache instead of computing them.
    cached_prompt_tokens: int = 0

    def followed_by(self, later: SequenceEvent) -> SequenceEvent:
        """This event and the next one of the same sequence as one event."""
        return SequenceEvent(
            self.text + later.text,
            later.completion_tokens,
            later.finish_reason,
            self.logprobs + later.logprobs,
            self.prompt_logprobs + later.prompt_logprobs,
            later.cached_prompt_tokens,
        )


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
