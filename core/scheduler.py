"""Continuous batching: which sequences, and which of their tokens, go into the next decode step.

Engine-agnostic. The engine thread calls plan() before every decode; sequences join (admit) and leave
(release) between steps. Each running sequence contributes its one pending token; waiting prompts fill the
rest of the step's token budget in chunks, first come first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferno.core.engines.base import SequenceEvent, SequenceRequest

EventSink = Callable[[SequenceEvent | BaseException], None]


@dataclass(eq=False)
class SequenceState:
    """One sequence's progress. Owned by the engine thread once submitted."""

    request: SequenceRequest
    emit: EventSink
    submitted_at: float
    seq_id: int = -1
    prefilled: int = 0
    generated: int = 0
    pending_token: int | None = None
    finished: bool = False
    first_token_at: float | None = None
    # Engine-specific per-sequence objects (sampler chain, detokenizer, stop matcher).
    runtime: Any = None

    @property
    def reserved_tokens(self) -> int:
        return len(self.request.prompt_tokens) + self.request.max_tokens


@dataclass(frozen=True)
class BatchEntry:
    """A run of consecutive tokens of one sequence in a decode step."""

    sequence: SequenceState
    tokens: tuple[int, ...]
    start_pos: int
    # True when the logits of the last token are needed to sample the sequence's next token.
    sample: bool


@dataclass
class ContinuousBatchScheduler:
    max_sequences: int
    kv_capacity_tokens: int
    max_batch_tokens: int
    _waiting: deque[SequenceState] = field(default_factory=deque)
    _active: list[SequenceState] = field(default_factory=list)
    _free_ids: list[int] = field(default_factory=list)
    _reserved_tokens: int = 0

    def __post_init__(self) -> None:
        self._free_ids = list(range(self.max_sequences - 1, -1, -1))

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        return self._reserved_tokens / self.kv_capacity_tokens if self.kv_capacity_tokens else 0.0

    def has_work(self) -> bool:
        return bool(self._active or self._waiting)

    def all_sequences(self) -> list[SequenceState]:
        return [*self._active, *self._waiting]

    def submit(self, sequence: SequenceState) -> None:
        self._waiting.append(sequence)

    def release(self, sequence: SequenceState) -> bool:
        """Removes a finished or cancelled sequence; True if it held a sequence id (KV to free)."""
        sequence.finished = True
        if sequence in self._waiting:
            self._waiting.remove(sequence)
            return False
        if sequence in self._active:
            self._active.remove(sequence)
            self._free_ids.append(sequence.seq_id)
            self._reserved_tokens -= sequence.reserved_tokens
            return True
        return False

    def admit(self, on_admit: Callable[[SequenceState], None]) -> None:
        """Moves waiting sequences to active while a sequence id and KV reservation are free."""
        while self._waiting and self._free_ids:
            head = self._waiting[0]
            if self._active and self._reserved_tokens + head.reserved_tokens > self.kv_capacity_tokens:
                return
            self._waiting.popleft()
            head.seq_id = self._free_ids.pop()
            self._reserved_tokens += head.reserved_tokens
            self._active.append(head)
            on_admit(head)

    def plan(self) -> list[BatchEntry]:
        """The next decode step: one pending token per decoding sequence, then prompt chunks."""
        entries: list[BatchEntry] = []
        for seq in self._active:
            if seq.pending_token is not None:
                # The pending token is the latest sampled one; all earlier ones are already in the KV cache.
                position = seq.prefilled + seq.generated - 1
                entries.append(BatchEntry(seq, (seq.pending_token,), position, sample=True))
        budget = self.max_batch_tokens - len(entries)
        for seq in self._active:
            prompt = seq.request.prompt_tokens
            if budget <= 0:
                break
            if seq.prefilled >= len(prompt):
                continue
            chunk = prompt[seq.prefilled : seq.prefilled + budget]
            entries.append(
                BatchEntry(seq, chunk, seq.prefilled, sample=seq.prefilled + len(chunk) == len(prompt))
            )
            budget -= len(chunk)
        return entries
