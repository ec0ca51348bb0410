"""One statistics recorder per served model: every figure is counted once, here, and feeds both
GetModelStatus (snapshot()) and Prometheus (the bound metrics). Written by the engine thread only."""

from __future__ import annotations

import time
from dataclasses import dataclass

from inferno.core.engines.base import EngineStatsSnapshot
from inferno.core.host_prefix_cache import PrefixCacheState
from inferno.core.metrics import ModelEngineMetrics
from inferno.core.runtime.protocol import StepResult
from inferno.core.runtime.sequence import SequenceState


@dataclass(frozen=True)
class QueueState:
    running: int
    waiting: int
    kv_usage: float


class StatsRecorder:
    def __init__(self, metrics: ModelEngineMetrics, max_parallel: int) -> None:
        self._metrics = metrics
        self._max_parallel = max_parallel
        self._decode_steps = 0
        self._max_sequences_per_step = 0
        self._last_step_sequences = 0
        self._requests_total = 0
        self._requests_finished = 0
        self._latency_seconds_total = 0.0
        self._prompt_tokens_total = 0
        self._generated_tokens_total = 0
        self._reused_prompt_tokens_total = 0
        self._generating_seconds = 0.0
        self._last_used = 0.0
        self._queue = QueueState(0, 0, 0.0)
        self._prefix_cache = PrefixCacheState(0, 0, 0)

    def submitted(self) -> None:
        self._requests_total += 1
        self._last_used = time.time()

    def used(self) -> None:
        """A request that does not generate (embeddings) counts as use and as a request."""
        self.submitted()

    def finished(self, sequence: SequenceState, cancelled: bool) -> None:
        self._requests_finished += 1
        self._latency_seconds_total += time.monotonic() - sequence.submitted_at
        if cancelled:
            self._metrics.cancelled.inc()

    def reused_prompt_tokens(self, tokens: int) -> None:
        if tokens:
            self._reused_prompt_tokens_total += tokens
            self._metrics.reused_prompt_tokens.inc(tokens)

    def token(self, sequence: SequenceState, now: float) -> None:
        """Time to first token and inter-token latency of a sequence's newest token."""
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self._metrics.time_to_first_token.observe(now - sequence.submitted_at)
        else:
            self._metrics.inter_token_latency.observe(now - sequence.last_token_at)
        sequence.last_token_at = now

    def interrupted_step(self) -> None:
        self._metrics.interrupted_steps.inc()

    def step(self, result: StepResult, seconds: float) -> None:
        sampled = len(result.sampled)
        self._decode_steps += 1
        self._last_step_sequences = result.sequences
        self._max_sequences_per_step = max(self._max_sequences_per_step, result.sequences)
        self._prompt_tokens_total += result.prompt_tokens
        self._generated_tokens_total += sampled
        if sampled:
            self._generating_seconds += seconds
        self._metrics.record_step(result.sequences, result.batch_tokens, sampled, result.prompt_tokens)
        self._metrics.record_drafts(result.drafted, result.accepted)

    def prefix_cache(self, state: PrefixCacheState) -> None:
        # Called every step; the metrics are only touched when something changed (each is a lock and a
        # label lookup, run between two decodes).
        last, self._prefix_cache = self._prefix_cache, state
        if state == last:
            return
        if state.hits > last.hits:
            self._metrics.prefix_cache_hits.inc(state.hits - last.hits)
        self._metrics.prefix_cache_bytes.set(state.bytes_held)
        self._metrics.prefix_cache_entries.set(state.entries)

    def queue(self, state: QueueState) -> None:
        if state == self._queue:
            return
        self._queue = state
        self._metrics.running.set(state.running)
        self._metrics.waiting.set(state.waiting)
        self._metrics.kv_usage.set(state.kv_usage)

    def snapshot(self, memory_bytes: int) -> EngineStatsSnapshot:
        q = self._queue
        return EngineStatsSnapshot(
            running_sequences=q.running,
            waiting_sequences=q.waiting,
            decode_steps=self._decode_steps,
            max_sequences_per_step=self._max_sequences_per_step,
            last_step_sequences=self._last_step_sequences,
            requests_total=self._requests_total,
            prompt_tokens_total=self._prompt_tokens_total,
            generated_tokens_total=self._generated_tokens_total,
            reused_prompt_tokens_total=self._reused_prompt_tokens_total,
            kv_cache_usage=q.kv_usage,
            max_parallel_sequences=self._max_parallel,
            tokens_per_second=self._generated_tokens_total / self._generating_seconds
            if self._generating_seconds
            else 0.0,
            avg_latency_ms=1000 * self._latency_seconds_total / self._requests_finished
            if self._requests_finished
            else 0.0,
            last_used=self._last_used,
            memory_bytes=memory_bytes,
        )
