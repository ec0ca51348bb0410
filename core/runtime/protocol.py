"""What an engine supplies to the runtime: a small typed protocol in one of two shapes.

- BatchDecoder: the runtime schedules. Its continuous-batching scheduler packs each step (one pending token
  per running sequence plus prompt chunks) and the decoder runs it (llama.cpp: one llama_decode).
- SelfScheduler: the engine schedules. The runtime enqueues one job per sequence, calls step() and cancels;
  the engine's own generator owns batching, paging and prefix deduplication (ExLlamaV2's dynamic generator).

Either way the runtime does the rest: the engine thread and its command queue, event delivery, incremental
detokenizing, stop strings, EOS, max_tokens, cancellation, logprob assembly and statistics. All methods of
both shapes are called on the engine thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from inferno.core.engines.base import TokenLogprobs
from inferno.core.kv_prefix_cache import KVCacheOps
from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import BatchEntry, Speculation


class Vocabulary(Protocol):
    """A model's tokenizer. Any thread may call it."""

    @property
    def n_vocab(self) -> int: ...

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Tokens for text, with the model's BOS if it wants one and add_special; special tokens in text are
        parsed."""

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (control tokens: empty)."""

    def is_end_of_generation(self, token: int) -> bool: ...


@dataclass(frozen=True)
class SampledToken:
    sequence: SequenceState
    token: int
    # Set when the sequence's request asked for log-probabilities.
    logprobs: TokenLogprobs | None = None


@dataclass
class StepResult:
    """What one step of either shape produced."""

    sampled: list[SampledToken] = field(default_factory=list)
    # Prompt tokens computed in this step (not taken from a cache).
    prompt_tokens: int = 0
    # Tokens the step fed to the model, prompt and generated.
    batch_tokens: int = 0
    # Sequences in the step.
    sequences: int = 0
    # Sequences the engine could not run, with why; the runtime ends them with that error.
    failed: list[tuple[SequenceState, BaseException]] = field(default_factory=list)
    # Sequences whose prompt is now fully computed and that asked for no tokens (max_tokens 0: scoring).
    scored: list[SequenceState] = field(default_factory=list)
    # Draft tokens verified in this step, and how many of them the model accepted.
    drafted: int = 0
    accepted: int = 0
    # The step was stopped before it finished (BatchDecoder.set_interrupt): nothing was computed.
    interrupted: bool = False


@dataclass(frozen=True)
class DecoderLimits:
    """The room a BatchDecoder has, for the runtime's scheduler."""

    max_sequences: int
    kv_capacity_tokens: int
    max_batch_tokens: int
    # Prompt tokens per step across all waiting prompts; None: max_batch_tokens.
    max_prompt_tokens_per_step: int | None = None
    # Tokens a long prompt advances per step for each sequence decoding beside it, up to the prompt budget;
    # None: max_prompt_tokens_per_step.
    long_prompt_tokens_per_step: int | None = None
    # Host memory for KV snapshots shared across sequences (the kv must be KVSnapshotOps); 0: none.
    host_cache_bytes: int = 0
    speculation: Speculation = field(default_factory=Speculation)


@runtime_checkable
class BatchDecoder(Protocol):
    """Shape 1: the runtime's scheduler plans every step, the decoder computes it."""

    @property
    def limits(self) -> DecoderLimits: ...

    @property
    def kv(self) -> KVCacheOps: ...

    def start(self, sequence: SequenceState) -> None:
        """Prepares per-sequence state (a sampler) when the sequence is admitted. Raises InfernoError to
        refuse the sequence alone (a grammar the engine rejects)."""

    def decode(self, entries: Sequence[BatchEntry]) -> StepResult:
        """Runs one step and samples a token for every entry with sample set. Entries with all_logits set get
        their prompt log-probabilities appended to sequence.prompt_logprobs. Raising fails every sequence of
        the step; a failure of some sequences only goes into StepResult.failed."""

    def release(self, sequence: SequenceState) -> None:
        """Frees per-sequence state (the KV cells are the scheduler's business)."""

    def set_interrupt(self, stop: bool) -> None:
        """True: the decode in progress (or the next) stops as soon as it can and returns
        StepResult(interrupted=True), having computed nothing and left the KV cache as it was. False: clears
        that. Called from any thread; a decoder that cannot stop a step ignores it."""

    def close(self) -> None:
        """Frees the engine's model and context. Called on the engine thread after the last step."""


class SelfScheduler(Protocol):
    """Shape 2: the engine batches by itself; the runtime enqueues, steps and cancels."""

    def enqueue(self, sequence: SequenceState) -> None:
        """Starts a job for the sequence. Raises InfernoError to refuse the sequence alone."""

    def cancel(self, sequence: SequenceState) -> None:
        """Stops the sequence's job (finished early by the runtime, or abandoned by its caller) and frees its
        cache pages. Safe to call for a sequence whose job has already ended."""

    def step(self) -> StepResult:
        """One iteration of the engine's generator: the tokens sampled since the last call."""

    def has_work(self) -> bool: ...

    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def kv_usage(self) -> float:
        """Share of the KV cache in use, 0 to 1."""

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens taken from cached pages rather than computed, since load."""

    def close(self) -> None: ...
