"""The llama.cpp engine: one thread owns the context and runs continuous batching.

Async callers talk to the thread through a command queue; events come back on their event loop through
call_soon_threadsafe. Each step packs every running sequence's next token plus waiting prompt chunks into
one llama_batch and calls llama_decode once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as llama
import psutil

from inferno.core.chat_template import CHATML_TEMPLATE, ChatTemplate
from inferno.core.engines.base import (
    Engine,
    EngineStatsSnapshot,
    FinishReason,
    ModelDescription,
    SequenceEvent,
    SequenceRequest,
    TokenLogprobs,
)
from inferno.core.engines.llamacpp.embedder import LlamaCppEmbedder
from inferno.core.engines.llamacpp.logprobs import token_logprobs
from inferno.core.engines.llamacpp.model import GgufModel
from inferno.core.engines.llamacpp.sampler import build_sampler_chain, free_sampler_chain
from inferno.core.metrics import EngineMetrics
from inferno.core.scheduler import BatchEntry, ContinuousBatchScheduler, SequenceState
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher
from inferno.errors import InfernoError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlamaCppSettings:
    """How to run one GGUF model."""

    parallel_sequences: int = 8
    # Longest sequence (prompt + completion); 0 = the model's training context, at most DEFAULT_CONTEXT_CAP.
    context_length: int = 0
    batch_tokens: int = 512
    # Prompt tokens computed per decode step, across all waiting prompts; 0 = batch_tokens. On 2 CPU cores
    # with 8 streams, 32 lowered time-to-first-token p50 from about 890 to 600 ms at unchanged throughput
    # (bench/serving.py); prefill speed per token is the same at 32 as at 512 there.
    prompt_tokens_per_step: int = 32
    threads: int = 0


# A default, not a limit: models trained on 128k tokens would otherwise reserve 128k cells per sequence.
DEFAULT_CONTEXT_CAP = 8192


class _LlamaKVCache:
    """KVCacheOps on a llama.cpp context's unified KV cache."""

    def __init__(self, memory: Any) -> None:
        self._memory = memory

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        llama.llama_memory_seq_cp(self._memory, source, target, 0, length)

    def truncate(self, seq_id: int, length: int) -> None:
        llama.llama_memory_seq_rm(self._memory, seq_id, length, -1)

    def clear(self, seq_id: int) -> None:
        llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)


class _Outbox:
    """Events of one engine step, handed to each event loop with a single wake-up instead of one per token.

    Used only on the engine thread.
    """

    def __init__(self) -> None:
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], object]]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, target: asyncio.Queue[Any], event: object) -> None:
        self._pending.setdefault(loop, []).append((target, event))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.items():
            # RuntimeError: that loop is closed; its sequences are cancelled by their callers or at shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[asyncio.Queue[Any], object]]) -> None:
    for target, event in items:
        target.put_nowait(event)


@dataclass
class _SequenceRuntime:
    sampler: Any
    detokenizer: IncrementalDetokenizer
    stop: StopMatcher
    # Prompt log-probabilities computed so far; None once sent with the first event.
    prompt_logprobs: list[TokenLogprobs] | None = None


@dataclass(frozen=True)
class _Submit:
    sequence: SequenceState


@dataclass(frozen=True)
class _Cancel:
    sequence: SequenceState


_SHUTDOWN = object()


class LlamaCppEngine(Engine):
    def __init__(
        self,
        description: ModelDescription,
        model: GgufModel,
        settings: LlamaCppSettings,
        metrics: EngineMetrics,
    ) -> None:
        self._model = model
        self._metrics = metrics.for_model(description.id)
        threads = settings.threads or os.cpu_count() or 1
        context_length = min(settings.context_length or DEFAULT_CONTEXT_CAP, model.n_ctx_train)
        self._description = ModelDescription(**{**description.__dict__, "context_length": context_length})
        rss_before = psutil.Process().memory_info().rss
        params = llama.llama_context_default_params()
        # One KV stream per sequence (not unified): a sequence's numbers then do not depend on what else is
        # in the batch, so greedy output is the same alone or among others. The price is context_length
        # cells per sequence, allocated up front.
        params.n_ctx = context_length * settings.parallel_sequences
        params.n_batch = settings.batch_tokens
        params.n_ubatch = settings.batch_tokens
        params.n_seq_max = settings.parallel_sequences
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = False
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise InfernoError(
                "insufficient_memory", f"llama.cpp could not create a context for {description.id}"
            )
        self._batch = llama.llama_batch_init(settings.batch_tokens, 0, 1)
        self._memory_bytes = description.file_size_bytes + max(
            psutil.Process().memory_info().rss - rss_before, 0
        )
        template_source = model.chat_template() or CHATML_TEMPLATE
        self._template = ChatTemplate(
            template_source, model.token_text(model.bos), model.token_text(model.eos)
        )
        self._scheduler = ContinuousBatchScheduler(
            settings.parallel_sequences,
            int(llama.llama_n_ctx(self._ctx)),
            settings.batch_tokens,
            _LlamaKVCache(llama.llama_get_memory(self._ctx)),
            max_prompt_tokens_per_step=settings.prompt_tokens_per_step or None,
            # llama.cpp copies cells between sequences only within one KV stream; ours are separate.
            share_running_prefixes=False,
        )
        self._threads = threads
        self._embedder_context: LlamaCppEmbedder | None = None
        self._embedder_lock = threading.Lock()
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outbox = _Outbox()
        self._stats = _EngineCounters(max_parallel=settings.parallel_sequences)
        self._thread = threading.Thread(target=self._run, name=f"engine-{description.id}", daemon=True)
        self._thread.start()

    @property
    def description(self) -> ModelDescription:
        return self._description

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._model.tokenize(text, add_special=add_special)

    def token_bytes(self, token: int) -> bytes:
        return self._model.token_bytes(token)

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        return self._template.render(messages, add_generation_prompt=True)

    async def generate(self, request: SequenceRequest) -> AsyncIterator[SequenceEvent]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[SequenceEvent | BaseException] = asyncio.Queue()

        def emit(event: SequenceEvent | BaseException) -> None:
            self._outbox.add(loop, events, event)

        sequence = SequenceState(request=request, emit=emit, submitted_at=time.monotonic())
        self._commands.put(_Submit(sequence))
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not sequence.finished:
                self._commands.put(_Cancel(sequence))

    async def embed(self, inputs: list[tuple[int, ...]]) -> list[list[float]]:
        return await asyncio.to_thread(self._embedder().embed, inputs)

    @property
    def embedding_limits(self) -> tuple[int, int]:
        embedder = self._embedder()
        return embedder.max_input_tokens, embedder.dimensions

    def _embedder(self) -> LlamaCppEmbedder:
        """Made on first use: models that never embed do not pay for the second context."""
        with self._embedder_lock:
            if self._embedder_context is None:
                self._embedder_context = LlamaCppEmbedder(
                    self._model, self._threads, self._metrics.record_embedding_decode
                )
            return self._embedder_context

    def stats(self) -> EngineStatsSnapshot:
        s = self._stats
        return EngineStatsSnapshot(
            running_sequences=self._scheduler.running,
            waiting_sequences=self._scheduler.waiting,
            decode_steps=s.decode_steps,
            max_sequences_per_step=s.max_sequences_per_step,
            last_step_sequences=s.last_step_sequences,
            requests_total=s.requests_total,
            prompt_tokens_total=s.prompt_tokens_total,
            generated_tokens_total=s.generated_tokens_total,
            reused_prompt_tokens_total=s.reused_prompt_tokens_total,
            kv_cache_usage=self._scheduler.kv_usage,
            max_parallel_sequences=s.max_parallel,
            tokens_per_second=s.generated_tokens_total / s.generating_seconds
            if s.generating_seconds
            else 0.0,
            avg_latency_ms=1000 * s.latency_seconds_total / s.requests_finished
            if s.requests_finished
            else 0.0,
            last_used=s.last_used,
            memory_bytes=self._memory_bytes,
        )

    def close(self) -> None:
        self._commands.put(_SHUTDOWN)
        self._thread.join(timeout=30)
        if self._embedder_context is not None:
            self._embedder_context.close()
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        self._model.close()

    # --- engine thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._drain_commands(block=not self._scheduler.has_work()):
                break
            try:
                self._scheduler.admit(self._start_sequence)
                entries = self._scheduler.plan()
                if entries:
                    self._step(entries)
            except Exception:
                # A bug must not kill the thread and leave every caller waiting forever: fail what is in
                # flight, keep serving new requests.
                log.exception("engine step failed; failing the sequences in flight")
                error = InfernoError("internal_error", "the engine failed while decoding this request")
                for sequence in self._scheduler.all_sequences():
                    self._finish(sequence, error=error)
            self._outbox.flush()
            self._metrics.running.set(self._scheduler.running)
            self._metrics.waiting.set(self._scheduler.waiting)
            self._metrics.kv_usage.set(self._scheduler.kv_usage)
        for sequence in self._scheduler.all_sequences():
            self._finish(sequence, error=InfernoError("model_not_ready", "the model is shutting down"))
        self._outbox.flush()

    def _drain_commands(self, block: bool) -> bool:
        """Applies queued submits and cancels; False once shutdown was asked for."""
        try:
            command = self._commands.get(block=block)
        except queue.Empty:
            return True
        while True:
            if command is _SHUTDOWN:
                return False
            if isinstance(command, _Submit):
                self._stats.requests_total += 1
                self._stats.last_used = time.time()
                self._scheduler.submit(command.sequence)
            elif isinstance(command, _Cancel) and not command.sequence.finished:
                self._metrics.cancelled.inc()
                self._finish(command.sequence)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True

    def _start_sequence(self, sequence: SequenceState) -> None:
        request = sequence.request
        self._stats.reused_prompt_tokens_total += sequence.reused_prompt_tokens
        self._metrics.reused_prompt_tokens.inc(sequence.reused_prompt_tokens)
        try:
            sampler = build_sampler_chain(
                request.sampling, self._model.vocab, self._model.n_vocab, request.max_tokens
            )
        except InfernoError as error:  # a grammar llama.cpp refuses fails this request only
            self._finish(sequence, error=error)
            return
        sequence.runtime = _SequenceRuntime(
            sampler=sampler,
            detokenizer=IncrementalDetokenizer(self._model.token_bytes),
            stop=StopMatcher(request.stop),
            prompt_logprobs=[] if request.prompt_logprobs is not None else None,
        )

    def _step(self, entries: list[BatchEntry]) -> None:
        batch = self._batch
        n = 0
        sample_at: list[tuple[SequenceState, int]] = []
        scored: list[tuple[BatchEntry, int]] = []
        for entry in entries:
            seq_id = entry.sequence.seq_id
            if entry.all_logits:
                scored.append((entry, n))
            for offset, token in enumerate(entry.tokens):
                batch.token[n] = token
                batch.pos[n] = entry.start_pos + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = int(entry.all_logits)
                n += 1
            if entry.sample:
                batch.logits[n - 1] = 1
                sample_at.append((entry.sequence, n - 1))
        batch.n_tokens = n
        started = time.monotonic()
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            error = InfernoError("internal_error", f"llama_decode failed with status {status}")
            for entry in entries:
                self._finish(entry.sequence, error=error)
            return
        prompt_tokens = 0
        for entry in entries:
            if entry.sequence.pending_token is None:
                entry.sequence.prefilled += len(entry.tokens)
                prompt_tokens += len(entry.tokens)
        for entry, first_index in scored:
            self._score_prompt_chunk(entry, first_index)
        for sequence, index in sample_at:
            if sequence.request.max_tokens == 0:  # scoring the prompt was all that was asked
                self._finish(sequence, self._event(sequence, "", FinishReason.LENGTH, ()))
                continue
            token = llama.llama_sampler_sample(sequence.runtime.sampler, self._ctx, index)
            top_n = sequence.request.top_logprobs
            logprobs = (
                None if top_n is None else token_logprobs(self._ctx, index, self._model.n_vocab, token, top_n)
            )
            self._on_token(sequence, token, logprobs)
        elapsed = time.monotonic() - started
        self._stats.record_step(len(entries), len(sample_at), prompt_tokens, elapsed)
        self._metrics.record_step(len(entries), n, len(sample_at), prompt_tokens)

    def _score_prompt_chunk(self, entry: BatchEntry, first_index: int) -> None:
        """Log-probabilities of the prompt tokens that follow this chunk's positions."""
        sequence = entry.sequence
        prompt = sequence.request.prompt_tokens
        top_n = sequence.request.prompt_logprobs or 0
        scores = sequence.runtime.prompt_logprobs
        for offset in range(len(entry.tokens)):
            position = entry.start_pos + offset
            if position + 1 < len(prompt):
                scores.append(
                    token_logprobs(
                        self._ctx, first_index + offset, self._model.n_vocab, prompt[position + 1], top_n
                    )
                )

    @staticmethod
    def _event(
        sequence: SequenceState,
        text: str,
        reason: FinishReason | None,
        logprobs: tuple[TokenLogprobs, ...],
    ) -> SequenceEvent:
        """An event of the sequence; the first one also carries the prompt's log-probabilities."""
        runtime: _SequenceRuntime = sequence.runtime
        prompt_logprobs = tuple(runtime.prompt_logprobs or ())
        runtime.prompt_logprobs = None
        return SequenceEvent(text, sequence.generated, reason, logprobs, prompt_logprobs)

    def _on_token(self, sequence: SequenceState, token: int, logprobs: TokenLogprobs | None = None) -> None:
        runtime: _SequenceRuntime = sequence.runtime
        request = sequence.request
        sequence.generated += 1
        sequence.output_tokens.append(token)
        now = time.monotonic()
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self._metrics.time_to_first_token.observe(now - sequence.submitted_at)
        else:
            self._metrics.inter_token_latency.observe(now - sequence.last_token_at)
        sequence.last_token_at = now
        if not request.ignore_eos and self._model.is_end_of_generation(token):
            text = runtime.stop.push(runtime.detokenizer.flush()).text + runtime.stop.flush()
            self._finish(sequence, self._event(sequence, text, FinishReason.STOP, ()))
            return
        token_logprobs_ = (logprobs,) if logprobs is not None else ()
        check = runtime.stop.push(runtime.detokenizer.push(token))
        if check.stopped:
            self._finish(sequence, self._event(sequence, check.text, FinishReason.STOP, token_logprobs_))
        elif sequence.generated >= request.max_tokens:
            tail = runtime.stop.push(runtime.detokenizer.flush())
            text = check.text + tail.text + ("" if tail.stopped else runtime.stop.flush())
            reason = FinishReason.STOP if tail.stopped else FinishReason.LENGTH
            self._finish(sequence, self._event(sequence, text, reason, token_logprobs_))
        else:
            sequence.pending_token = token
            # With log-probabilities every token is an event, even one whose text is still held back.
            if check.text or token_logprobs_ or runtime.prompt_logprobs is not None:
                sequence.emit(self._event(sequence, check.text, None, token_logprobs_))

    def _finish(
        self, sequence: SequenceState, last: SequenceEvent | None = None, error: BaseException | None = None
    ) -> None:
        """Frees the sequence's KV cells and sampler at once and sends its last event, if any."""
        self._scheduler.release(sequence, keep_prefix=error is None and last is not None)
        if sequence.runtime is not None:
            free_sampler_chain(sequence.runtime.sampler)
            sequence.runtime = None
        self._stats.requests_finished += 1
        self._stats.latency_seconds_total += time.monotonic() - sequence.submitted_at
        if error is not None:
            sequence.emit(error)
        elif last is not None:
            sequence.emit(last)


@dataclass
class _EngineCounters:
    """Figures for GetModelStatus; written by the engine thread only."""

    max_parallel: int
    decode_steps: int = 0
    max_sequences_per_step: int = 0
    last_step_sequences: int = 0
    requests_total: int = 0
    requests_finished: int = 0
    latency_seconds_total: float = 0.0
    prompt_tokens_total: int = 0
    generated_tokens_total: int = 0
    reused_prompt_tokens_total: int = 0
    generating_seconds: float = 0.0
    last_used: float = 0.0

    def record_step(self, sequences: int, sampled: int, prompt_tokens: int, seconds: float) -> None:
        self.decode_steps += 1
        self.last_step_sequences = sequences
        self.max_sequences_per_step = max(self.max_sequences_per_step, sequences)
        self.prompt_tokens_total += prompt_tokens
        self.generated_tokens_total += sampled
        if sampled:
            self.generating_seconds += seconds
