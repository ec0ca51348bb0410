"""llama.cpp behind the runtime's BatchDecoder protocol: the runtime's scheduler plans each step; this runs
it as one llama_batch and one llama_decode, then samples with each sequence's own sampler chain."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence

import llama_cpp.llama_cpp as llama

from inferno.core.engines.llamacpp.logprobs import logits_at, token_logprobs
from inferno.core.engines.llamacpp.model import GgufModel
from inferno.core.engines.llamacpp.sampler import Candidates, GreedyPick, Sampler, build_sampler, free_sampler
from inferno.core.engines.llamacpp.thread_governor import ThreadGovernor, available_cores
from inferno.core.runtime.protocol import DecoderLimits, SampledToken, StepResult
from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import BatchEntry, Speculation
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError, invalid_param

log = logging.getLogger(__name__)


# Drafts are verified only while at most this many sequences decode: on a CPU a batch of several sequences
# already keeps the cores busy, and drafted tokens then cost about as much as they save.
_DRAFT_MAX_SEQUENCES = 2
# llama_decode's status when the abort callback stopped it.
_DECODE_ABORTED = 2


class LlamaKVCache:
    """KVCacheOps and KVSnapshotOps on a llama.cpp context's KV cache."""

    def __init__(self, ctx: llama.llama_context_p) -> None:
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)

    def truncate(self, seq_id: int, length: int) -> None:
        llama.llama_memory_seq_rm(self._memory, seq_id, length, -1)

    def clear(self, seq_id: int) -> None:
        llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def save(self, seq_id: int) -> bytearray:
        # One allocation, written in place and kept as is: no temporary copies of megabytes per snapshot.
        size = llama.llama_state_seq_get_size(self._ctx, seq_id)
        data = bytearray(size)
        written = llama.llama_state_seq_get_data(
            self._ctx, (ctypes.c_uint8 * size).from_buffer(data), size, seq_id
        )
        del data[written:]
        return data

    def restore(self, seq_id: int, data: bytearray) -> bool:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer(data)
        return bool(llama.llama_state_seq_set_data(self._ctx, buffer, len(data), seq_id))


def _libc_strlen_address() -> int:
    address = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p).value
    assert address is not None
    return address


class StepInterrupt:
    """llama.cpp's abort callback, without Python: the callback is libc's strlen on a two-byte buffer, which
    returns 1 while the first byte is set and 0 otherwise. ggml asks the callback after every graph node on
    its compute thread; a Python callback would take the GIL hundreds of times a step. Setting the byte from
    any thread makes the llama_decode in progress stop at the next node and return 2."""

    def __init__(self, ctx: llama.llama_context_p) -> None:
        self._flag = ctypes.create_string_buffer(2)
        self._callback = llama.ggml_abort_callback(_libc_strlen_address())
        llama.llama_set_abort_callback(ctx, self._callback, ctypes.cast(self._flag, ctypes.c_void_p))

    def set(self, stop: bool) -> None:
        self._flag[0] = b"\x01" if stop else b"\x00"


class LlamaCppDecoder:
    def __init__(
        self, model_id: str, model: GgufModel, settings: EngineSettings, context_length: int
    ) -> None:
        self._model = model
        params = llama.llama_context_default_params()
        # One KV stream per sequence (not unified): a sequence's numbers then do not depend on what else is
        # in the batch, so greedy output is the same alone or among others. The price is context_length
        # cells per sequence, allocated up front.
        params.n_ctx = context_length * settings.parallel_sequences
        params.n_batch = settings.batch_tokens
        params.n_ubatch = settings.batch_tokens
        params.n_seq_max = settings.parallel_sequences
        params.n_threads = params.n_threads_batch = threads_for(settings)
        params.kv_unified = False
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise InfernoError("insufficient_memory", f"llama.cpp could not create a context for {model_id}")
        self._batch = llama.llama_batch_init(settings.batch_tokens, 0, 1)
        self._kv = LlamaKVCache(self._ctx)
        self._interrupt = StepInterrupt(self._ctx)
        self._limits = DecoderLimits(
            max_sequences=settings.parallel_sequences,
            kv_capacity_tokens=int(llama.llama_n_ctx(self._ctx)),
            max_batch_tokens=settings.batch_tokens,
            max_prompt_tokens_per_step=settings.prompt_tokens_per_step or None,
            long_prompt_tokens_per_step=settings.long_prompt_tokens_per_step or None,
            host_cache_bytes=settings.prefix_cache_mib << 20,
            speculation=Speculation(settings.draft_tokens, _DRAFT_MAX_SEQUENCES),
        )
        self._samplers: dict[SequenceState, Sampler] = {}
        self._candidates = Candidates(model.n_vocab)
        # threads = 0: as many threads as the cores other processes leave free (thread_governor.py).
        cores = threads_for(settings)
        self._governor = ThreadGovernor(cores) if not settings.threads and cores > 1 else None

    @property
    def limits(self) -> DecoderLimits:
        return self._limits

    @property
    def kv(self) -> LlamaKVCache:
        return self._kv

    def set_interrupt(self, stop: bool) -> None:
        self._interrupt.set(stop)

    def start(self, sequence: SequenceState) -> None:
        request = sequence.request
        self._samplers[sequence] = build_sampler(request.sampling, self._model, request.max_tokens)

    def release(self, sequence: SequenceState) -> None:
        sampler = self._samplers.pop(sequence, None)
        if sampler is not None:
            free_sampler(sampler)

    def decode(self, entries: Sequence[BatchEntry]) -> StepResult:
        batch = self._batch
        # In KV stream order: llama.cpp decodes a batch whose sequences come in any other order at about half
        # the speed (16 sequences, one token each, 2 CPU cores: 196 against 383 tokens/s). The scheduler's
        # order follows admission, and ids come back from retained prefixes in any order.
        entries = sorted(entries, key=lambda entry: entry.sequence.seq_id)
        n = 0
        sample_at: list[tuple[BatchEntry, int]] = []
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
            if entry.sample and entry.sequence.request.max_tokens > 0:
                # The pending token's logits, and each draft token's (to check the one after it).
                first = n - 1 - entry.draft
                for index in range(first, n):
                    batch.logits[index] = 1
                sample_at.append((entry, first))
        batch.n_tokens = n
        threads = self._governor.poll() if self._governor else None
        if threads is not None:
            llama.llama_set_n_threads(self._ctx, threads, threads)
        status = llama.llama_decode(self._ctx, batch)
        if status == _DECODE_ABORTED:
            # n_ubatch is n_batch, so the step was one ubatch, and llama.cpp took its cells back out.
            return StepResult(interrupted=True)
        if status != 0:
            raise InfernoError("internal_error", f"llama_decode failed with status {status}")
        for entry, first_index in scored:
            self._score_prompt_chunk(entry, first_index)
        result = StepResult()
        for entry, index in sample_at:
            self._sample(entry, index, result)
        return result

    def _sample(self, entry: BatchEntry, index: int, result: StepResult) -> None:
        """Samples the sequence's next token; with a draft, keeps sampling while each sample equals the
        drafted token, so the output is exactly what decoding one token at a time would give."""
        sequence = entry.sequence
        sampler = self._samplers[sequence]
        top_n = sequence.request.top_logprobs
        accepted = 0
        while True:
            logits = logits_at(self._ctx, index + accepted, self._model.n_vocab)
            if isinstance(sampler, GreedyPick):
                token = sampler.pick(logits)
            else:
                picked = self._candidates.pick(sampler, logits)
                if picked is None:
                    result.failed.append((sequence, _dead_end(sequence)))
                    return
                token = picked
            logprobs = (
                None
                if top_n is None
                else token_logprobs(self._ctx, index + accepted, self._model.n_vocab, token, top_n)
            )
            result.sampled.append(SampledToken(sequence, token, logprobs))
            if accepted == entry.draft or token != entry.tokens[1 + accepted]:
                break
            accepted += 1
        if entry.draft:
            result.drafted += entry.draft
            result.accepted += accepted
            # The rejected draft tokens' cells: the sequence continues from its last sampled token.
            self._kv.truncate(sequence.seq_id, entry.start_pos + 1 + accepted)

    def _score_prompt_chunk(self, entry: BatchEntry, first_index: int) -> None:
        """Log-probabilities of the prompt tokens that follow this chunk's positions."""
        sequence = entry.sequence
        prompt = sequence.request.prompt_tokens
        top_n = sequence.request.prompt_logprobs or 0
        scores = sequence.prompt_logprobs
        if scores is None:
            return
        for offset in range(len(entry.tokens)):
            position = entry.start_pos + offset
            if position + 1 < len(prompt):
                scores.append(
                    token_logprobs(
                        self._ctx, first_index + offset, self._model.n_vocab, prompt[position + 1], top_n
                    )
                )

    def close(self) -> None:
        for sampler in self._samplers.values():
            free_sampler(sampler)
        self._samplers.clear()
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)


def _dead_end(sequence: SequenceState) -> InfernoError:
    param = sequence.request.sampling.grammar_param
    return invalid_param(
        param,
        f"the grammar made from '{param}' allows no token after {sequence.generated} generated tokens: "
        "it requires text this model's tokens cannot spell (such as a NUL character)",
    )


def threads_for(settings: EngineSettings) -> int:
    return settings.threads or available_cores()
