"""The two engine shapes behind one stepping interface the engine thread drives.

ScheduledStepper puts the runtime's continuous-batching scheduler in front of a BatchDecoder;
SelfScheduledStepper passes sequences straight to an engine that batches by itself.
"""

from __future__ import annotations

import threading
from typing import Protocol

from inferno.core.host_prefix_cache import PrefixCacheState
from inferno.core.runtime.protocol import BatchDecoder, SelfScheduler, StepResult
from inferno.core.runtime.sequence import SequenceState
from inferno.core.runtime.stats import QueueState
from inferno.core.scheduler import BatchEntry, ContinuousBatchScheduler
from inferno.errors import InfernoError


class Stepper(Protocol):
    def submit(self, sequence: SequenceState) -> InfernoError | None:
        """Queues the sequence, or says why the engine refuses it."""

    def release(self, sequence: SequenceState, completed: bool) -> None:
        """Takes a finished or cancelled sequence out of the engine. completed: it ended normally (its
        cache may be kept for prefix reuse)."""

    def has_work(self) -> bool: ...

    def step(self) -> StepResult: ...

    def make_way_for(self, sequence: SequenceState) -> None:
        """Called from the caller's thread as a sequence is submitted: a step in progress that would hold a
        short prompt's first token back for long may be stopped, and its work redone after the newcomer's
        first step."""

    def sequences(self) -> list[SequenceState]:
        """Every sequence submitted and not yet released."""

    def queue_state(self) -> QueueState: ...

    def reused_prompt_tokens(self) -> int:
        """Prompt tokens taken from a cache rather than computed, since load."""

    def prefix_cache(self) -> PrefixCacheState | None:
        """Prefix reuse by the runtime's scheduler (None: the engine reuses prefixes by itself)."""

    def close(self) -> None: ...


class ScheduledStepper:
    def __init__(self, decoder: BatchDecoder) -> None:
        self._decoder = decoder
        limits = decoder.limits
        self._scheduler = ContinuousBatchScheduler(
            limits.max_sequences,
            limits.kv_capacity_tokens,
            limits.max_batch_tokens,
            decoder.kv,
            max_prompt_tokens_per_step=limits.max_prompt_tokens_per_step,
            long_prompt_tokens_per_step=limits.long_prompt_tokens_per_step,
            host_cache_bytes=limits.host_cache_bytes,
            speculation=limits.speculation,
        )
        self._started: set[SequenceState] = set()
        self._refused: list[tuple[SequenceState, BaseException]] = []
        # Whether the step in progress may be interrupted, under a lock shared with make_way_for, so an
        # interrupt only ever reaches the step it was meant for.
        self._interrupt_lock = threading.Lock()
        self._interruptible = False
        self._interrupted_last = False

    def submit(self, sequence: SequenceState) -> InfernoError | None:
        self._scheduler.submit(sequence)
        return None

    def release(self, sequence: SequenceState, completed: bool) -> None:
        self._scheduler.release(sequence, keep_prefix=completed)
        if sequence in self._started:
            self._started.discard(sequence)
            self._decoder.release(sequence)

    def has_work(self) -> bool:
        return self._scheduler.has_work()

    def step(self) -> StepResult:
        self._scheduler.admit(self._start)
        refused, self._refused = self._refused, []
        entries = self._scheduler.plan()
        if not entries:
            return StepResult(failed=refused)
        self._arm_interrupt(entries)
        try:
            result = self._decoder.decode(entries)
        finally:
            with self._interrupt_lock:
                self._interruptible = False
        self._interrupted_last = result.interrupted
        result.failed.extend(refused)
        if result.interrupted:
            return result
        result.sequences = len(entries)
        result.batch_tokens = sum(len(e.tokens) for e in entries)
        for entry in entries:
            sequence = entry.sequence
            if sequence.pending_token is None:
                sequence.prefilled += len(entry.tokens)
                result.prompt_tokens += len(entry.tokens)
                self._scheduler.prefilled(sequence)
                if sequence.request.max_tokens == 0 and sequence.prefilled == len(
                    sequence.request.prompt_tokens
                ):
                    result.scored.append(sequence)
        return result

    def make_way_for(self, sequence: SequenceState) -> None:
        if len(sequence.request.prompt_tokens) > self._scheduler.short_prompt_tokens:
            return  # a long prompt gains nothing from starting a step sooner
        with self._interrupt_lock:
            if self._interruptible:
                self._interruptible = False
                self._decoder.set_interrupt(True)

    def _arm_interrupt(self, entries: list[BatchEntry]) -> None:
        """A step may be interrupted when it computes a chunk of a long prompt bigger than any prompt chunk
        a step shares with others (a lone prompt takes whole batches, about a second each on 2 CPU cores),
        and the step before was not itself interrupted, so a stream of arrivals cannot starve that prompt."""
        long_chunk = any(
            entry.sequence.pending_token is None and len(entry.tokens) > self._scheduler.short_prompt_tokens
            for entry in entries
        )
        with self._interrupt_lock:
            self._decoder.set_interrupt(False)
            self._interruptible = long_chunk and not self._interrupted_last

    def _start(self, sequence: SequenceState) -> None:
        try:
            self._decoder.start(sequence)
        except InfernoError as error:  # refused by the engine (a grammar it rejects): this sequence only
            self._scheduler.release(sequence, keep_prefix=False)
            # The scheduler marks what it releases finished; the runtime still owes the caller this error.
            sequence.finished = False
            self._refused.append((sequence, error))
            return
        self._started.add(sequence)

    def sequences(self) -> list[SequenceState]:
        return self._scheduler.all_sequences()

    def queue_state(self) -> QueueState:
        s = self._scheduler
        return QueueState(s.running, s.waiting, s.kv_usage)

    def reused_prompt_tokens(self) -> int:
        return self._scheduler.reused_tokens

    def prefix_cache(self) -> PrefixCacheState | None:
        return self._scheduler.prefix_cache_state()

    def close(self) -> None:
        self._decoder.close()


class SelfScheduledStepper:
    def __init__(self, engine: SelfScheduler) -> None:
        self._engine = engine
        self._live: dict[SequenceState, None] = {}

    def submit(self, sequence: SequenceState) -> InfernoError | None:
        try:
            self._engine.enqueue(sequence)
        except InfernoError as error:
            return error
        self._live[sequence] = None
        return None

    def release(self, sequence: SequenceState, completed: bool) -> None:
        if sequence in self._live:
            del self._live[sequence]
            self._engine.cancel(sequence)

    def has_work(self) -> bool:
        return bool(self._live) or self._engine.has_work()

    def step(self) -> StepResult:
        return self._engine.step()

    def make_way_for(self, sequence: SequenceState) -> None:
        pass  # the engine schedules its own steps

    def sequences(self) -> list[SequenceState]:
        return list(self._live)

    def queue_state(self) -> QueueState:
        e = self._engine
        return QueueState(e.running, e.waiting, e.kv_usage)

    def reused_prompt_tokens(self) -> int:
        return self._engine.reused_prompt_tokens

    def prefix_cache(self) -> PrefixCacheState | None:
        return None

    def close(self) -> None:
        self._engine.close()
