"""Continuous batching: which sequences, and which of their tokens, go into the next decode step.

Engine-agnostic. The engine thread calls plan() before every decode; sequences join (admit) and leave
(release) between steps. Each running sequence contributes its one pending token; waiting prompts fill the
rest of the step's prompt budget in chunks, shortest remaining prompt first. A small prompt budget finishes
prompts one after another (the short ones get their first token sooner) and keeps long prompts from stalling
the decoding sequences; a lone prompt, with nothing decoding, takes the whole batch. A prompt that starts
like a recently finished sequence takes over that sequence's KV cells (kv_prefix_cache.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inferno.core.kv_prefix_cache import KVCacheOps, KVPrefixCache
from inferno.core.runtime.sequence import SequenceState


@dataclass(frozen=True)
class BatchEntry:
    """A run of consecutive tokens of one sequence in a decode step."""

    sequence: SequenceState
    tokens: tuple[int, ...]
    start_pos: int
    # True when the logits of the last token are needed to sample the sequence's next token.
    sample: bool
    # True when the logits of every token are needed (prompt log-probabilities).
    all_logits: bool = False


class ContinuousBatchScheduler:
    def __init__(
        self,
        max_sequences: int,
        kv_capacity_tokens: int,
        max_batch_tokens: int,
        kv: KVCacheOps,
        max_prompt_tokens_per_step: int | None = None,
        min_prefix_reuse_tokens: int = 8,
    ) -> None:
        self.max_sequences = max_sequences
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_batch_tokens = max_batch_tokens
        self.max_prompt_tokens_per_step = max_prompt_tokens_per_step or max_batch_tokens
        self._kv = kv
        self._prefixes = KVPrefixCache(kv, min_prefix_reuse_tokens)
        self._waiting: deque[SequenceState] = deque()
        self._active: list[SequenceState] = []
        self._free_ids = list(range(max_sequences - 1, -1, -1))
        self._reserved_tokens = 0

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        """KV cache reserved by admitted sequences; retained prefixes are evictable and not counted."""
        return self._reserved_tokens / self.kv_capacity_tokens if self.kv_capacity_tokens else 0.0

    @property
    def retained_prefixes(self) -> int:
        return len(self._prefixes)

    def has_work(self) -> bool:
        return bool(self._active or self._waiting)

    def all_sequences(self) -> list[SequenceState]:
        return [*self._active, *self._waiting]

    def submit(self, sequence: SequenceState) -> None:
        self._waiting.append(sequence)

    def release(self, sequence: SequenceState, keep_prefix: bool) -> None:
        """Removes a finished or cancelled sequence. keep_prefix retains its KV cells for reuse; otherwise
        they are freed at once."""
        sequence.finished = True
        if sequence in self._waiting:
            self._waiting.remove(sequence)
        elif sequence in self._active:
            self._active.remove(sequence)
            self._reserved_tokens -= sequence.reserved_tokens
            if keep_prefix and sequence.prefilled == len(sequence.request.prompt_tokens):
                self._prefixes.retain(sequence.seq_id, sequence.tokens_in_kv())
            else:
                self._kv.clear(sequence.seq_id)
                self._free_ids.append(sequence.seq_id)

    def admit(self, on_admit: Callable[[SequenceState], None]) -> None:
        """Moves waiting sequences to active while a sequence id and KV room are free."""
        while self._waiting:
            head = self._waiting[0]
            needed = self._reserved_tokens + head.reserved_tokens
            if self._active and needed > self.kv_capacity_tokens:
                return
            match = (
                self._prefixes.best_match(head.request.prompt_tokens)
                if head.request.prompt_logprobs is None
                else None
            )
            if match is not None:
                head.seq_id = self._prefixes.take_over(match)
            else:
                seq_id = self._free_ids.pop() if self._free_ids else self._prefixes.evict_oldest()
                if seq_id is None:
                    return
                head.seq_id = seq_id
            head.prefilled = head.reused_prompt_tokens = match.length if match else 0
            # Retained cells count against the KV cache too: drop the oldest until the newcomer fits.
            while needed + self._prefixes.retained_tokens > self.kv_capacity_tokens:
                evicted = self._prefixes.evict_oldest()
                if evicted is None:
                    break
                self._free_ids.append(evicted)
            self._waiting.popleft()
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
        # Shortest remaining prompt first: a short request admitted while a long prompt is being processed
        # gets its first token after a step or two instead of after the whole long prompt.
        prefilling = [seq for seq in self._active if seq.prefilled < len(seq.request.prompt_tokens)]
        prefilling.sort(key=lambda seq: len(seq.request.prompt_tokens) - seq.prefilled)
        # The small prompt budget is there for others' first tokens and decoding; a lone prompt with nothing
        # decoding goes in full batches (fewer steps, each paying the engine's fixed per-step cost).
        lone = not entries and len(prefilling) == 1
        budget = min(
            self.max_batch_tokens - len(entries),
            self.max_batch_tokens if lone else self.max_prompt_tokens_per_step,
        )
        for seq in prefilling:
            if budget <= 0:
                break
            prompt = seq.request.prompt_tokens
            chunk = prompt[seq.prefilled : seq.prefilled + budget]
            entries.append(
                BatchEntry(
                    seq,
                    chunk,
                    seq.prefilled,
                    sample=seq.prefilled + len(chunk) == len(prompt),
                    all_logits=seq.request.prompt_logprobs is not None,
                )
            )
            budget -= len(chunk)
        return entries
