"""Continuous batching: which sequences, and which of their tokens, go into the next decode step.

Engine-agnostic. The engine thread calls plan() before every decode; sequences join (admit) and leave
(release) between steps. Each running sequence contributes its one pending token; waiting prompts fill the
rest of the step, shortest remaining prompt first. A short prompt (at most four times the prompt budget) goes
in whole, and more join while the step's prompt tokens are under the budget, so a burst of chat requests
starts a few per step: on a CPU a step's time grows with its tokens, so the first ones start decoding
sooner. A long prompt advances by the small per-step prompt budget, so it neither stalls the decoding
sequences nor holds back others' first tokens, and in smaller chunks still beside a single decoding
sequence (each step's time is its next token's). A lone prompt, with nothing decoding, takes the whole batch.

Prefixes are computed once: a prompt that starts like a recently finished sequence takes over that
sequence's KV cells (kv_prefix_cache.py), or restores a host-memory snapshot of any earlier sequence that
shares more (host_prefix_cache.py); a prompt that shares a prefix with one still being computed waits for
it instead of computing the same cells again. Decoding sequences may carry draft tokens from prompt lookup
(prompt_lookup.py), which the decoder verifies in the same step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inferno.core.host_prefix_cache import HostPrefixCache, PrefixCacheState, SnapshotMatch
from inferno.core.kv_prefix_cache import KVCacheOps, KVPrefixCache, KVSnapshotOps, common_prefix_length
from inferno.core.prompt_lookup import PromptLookup
from inferno.core.runtime.sequence import SequenceState

# How many steps a sequence with only its first token may sit out for its burst's other prompts
# (_held_back): a burst of 16 short prompts goes in about 8 steps.
BURST_HOLD_STEPS = 8


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
    # Trailing tokens that are a draft to verify (after the pending token), not yet accepted.
    draft: int = 0


@dataclass(frozen=True)
class Speculation:
    """Prompt-lookup drafting: at most draft_tokens per sequence, only while at most max_sequences decode
    (with more, the batch already keeps the CPU busy and drafts cost more than they save)."""

    draft_tokens: int = 0
    max_sequences: int = 1


class ContinuousBatchScheduler:
    def __init__(
        self,
        max_sequences: int,
        kv_capacity_tokens: int,
        max_batch_tokens: int,
        kv: KVCacheOps,
        max_prompt_tokens_per_step: int | None = None,
        long_prompt_tokens_per_step: int | None = None,
        min_prefix_reuse_tokens: int = 8,
        host_cache_bytes: int = 0,
        speculation: Speculation | None = None,
    ) -> None:
        self.max_sequences = max_sequences
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_batch_tokens = max_batch_tokens
        self.max_prompt_tokens_per_step = max_prompt_tokens_per_step or max_batch_tokens
        self.long_prompt_tokens_per_step = long_prompt_tokens_per_step or self.max_prompt_tokens_per_step
        self._kv = kv
        # A retained stream's cells are saved at its release; when its stream is given away they are saved
        # again if the host cache has dropped them since.
        self._prefixes = KVPrefixCache(kv, min_prefix_reuse_tokens, before_evict=self._save)
        self._min_reuse = min_prefix_reuse_tokens
        self._snapshots = kv if isinstance(kv, KVSnapshotOps) and host_cache_bytes > 0 else None
        self.host_cache = HostPrefixCache(host_cache_bytes if self._snapshots else 0, min_prefix_reuse_tokens)
        # Prompt positions where a leader's computed prefix is snapshotted for the sequences waiting on it,
        # and each waiting sequence's leader with the length they share.
        self._split_points: dict[SequenceState, set[int]] = {}
        self._following: dict[SequenceState, tuple[SequenceState, int]] = {}
        self._speculation = speculation or Speculation()
        self._lookups: dict[SequenceState, PromptLookup] = {}
        # Steps each sequence with only its first token sat out while a burst's other prompts were computed.
        self._held_steps: dict[SequenceState, int] = {}
        # Prefix reuses since load (restored snapshots and taken-over streams) and the tokens they saved.
        self.prefix_hits = 0
        self.reused_tokens = 0
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
        self._split_points.pop(sequence, None)
        self._following.pop(sequence, None)
        self._lookups.pop(sequence, None)
        self._held_steps.pop(sequence, None)
        if sequence in self._waiting:
            self._waiting.remove(sequence)
        elif sequence in self._active:
            self._active.remove(sequence)
            self._reserved_tokens -= sequence.reserved_tokens
            if keep_prefix and sequence.prefilled == len(sequence.request.prompt_tokens):
                tokens = sequence.tokens_in_kv()
                self._save(sequence.seq_id, tokens)
                self._prefixes.retain(sequence.seq_id, tokens)
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
            reusable = head.request.prompt_logprobs is None
            prompt = head.request.prompt_tokens
            match = self._prefixes.best_match(prompt) if reusable else None
            stored = self.host_cache.best_match(prompt) if reusable and self._snapshots else None
            fresh = self._lowest_available_id()
            if match is not None and self._too_far(match.seq_id, fresh):
                # Restored into the fresh stream instead, from a snapshot as long; its cells are saved now
                # if none is.
                if self._snapshots is not None and (stored is None or stored.length < match.length):
                    self._save(match.seq_id, self._prefixes.tokens(match.seq_id))
                    stored = self.host_cache.best_match(prompt)
                if stored is not None and stored.length >= match.length:
                    match = None
            if match is not None:
                head.seq_id = self._prefixes.take_over(match)
                head.prefilled = head.reused_prompt_tokens = match.length
                self.prefix_hits += 1
                self.reused_tokens += match.length
            else:
                if fresh is None:
                    return
                self._take_id(fresh)
                head.seq_id = fresh
                head.prefilled = head.reused_prompt_tokens = 0
                if stored is not None:
                    # Freeing the stream may have saved its cells as a snapshot that replaces stored.
                    stored = self.host_cache.best_match(prompt)
                if stored is not None:
                    self._restore(head, stored)
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

    def _too_far(self, matched_id: int, fresh: int | None) -> bool:
        """Whether a retained stream is too far out to take over: the admitted sequences would no longer
        fit in the lowest streams (llama.cpp steps over every stream between the lowest and highest in a
        batch), and a lower one is available. A burst of conversations each keeps its own stream while
        those stay within the burst's count."""
        in_flight = len(self._active) + len(self._waiting)
        return fresh is not None and fresh < matched_id and matched_id >= in_flight

    def _lowest_available_id(self) -> int | None:
        """The id a sequence that takes over no stream gets: the lowest free one, else the lowest retained
        one (its cells are freed). Low ids keep the running sequences' streams together: llama.cpp computes
        a step over every stream from the lowest to the highest id in the batch (4 sequences in streams 0,
        5, 10 and 15 decode at 166 tokens/s on 2 CPU cores, in streams 0 to 3 at 242)."""
        return min(self._free_ids, default=self._prefixes.lowest_id())

    def _take_id(self, seq_id: int) -> None:
        if seq_id in self._free_ids:
            self._free_ids.remove(seq_id)
        else:
            self._prefixes.evict(seq_id)

    @property
    def short_prompt_tokens(self) -> int:
        """A prompt this long or shorter goes into one step whole; longer ones are computed in chunks."""
        return min(4 * self.max_prompt_tokens_per_step, self.max_batch_tokens)

    def _is_short(self, sequence: SequenceState) -> bool:
        """Whether the prompt goes into a step whole: what it computes (past any reused prefix) is at most
        short_prompt_tokens. A long prompt's last chunks stay chunks: its last 128 tokens in one step, deep
        in its cache, gave a stream decoding beside it a 750 ms gap here."""
        return len(sequence.request.prompt_tokens) - sequence.reused_prompt_tokens <= self.short_prompt_tokens

    def plan(self) -> list[BatchEntry]:
        """The next decode step: one pending token (and its draft) per decoding sequence, then prompt
        chunks."""
        decoding = [seq for seq in self._active if seq.pending_token is not None]
        prefilling = [seq for seq in self._active if seq.prefilled < len(seq.request.prompt_tokens)]
        held = self._held_back(decoding, prefilling)
        entries = self._decode_entries([seq for seq in decoding if seq not in held])
        # Shortest remaining prompt first: a short request admitted while a long prompt is being processed
        # gets its first token after a step or two instead of after the whole long prompt.
        prefilling.sort(key=lambda seq: len(seq.request.prompt_tokens) - seq.prefilled)
        # The small prompt budget is there for others' first tokens and decoding; a lone prompt with nothing
        # decoding goes in full batches (fewer steps, each paying the engine's fixed per-step cost).
        lone = not entries and len(prefilling) == 1
        room = self.max_batch_tokens - sum(len(e.tokens) for e in entries)
        long_budget = self.max_batch_tokens if lone else self._long_prompt_budget(len(entries))
        prompt_tokens = 0
        for seq in prefilling:
            if room <= 0:
                break
            if (
                self._snapshots is not None
                and seq.prefilled == seq.reused_prompt_tokens
                and seq.request.prompt_logprobs is None
            ):
                if self._waits_for_leader(seq):
                    continue
                stored = self.host_cache.best_match(seq.request.prompt_tokens)
                if stored is not None and stored.length > seq.prefilled:
                    self._restore(seq, stored)
            prompt = seq.request.prompt_tokens
            remaining = len(prompt) - seq.prefilled
            if self._is_short(seq):
                # Whole, or the next step; only the first prompt of a step is cut to the room left, so a
                # batch full of decoding sequences cannot starve it. A step's time grows with its tokens,
                # so a burst goes a prompt budget per step, shortest first: the first ones start decoding
                # sooner.
                if prompt_tokens and (remaining > room or prompt_tokens >= self.max_prompt_tokens_per_step):
                    continue
                take = min(remaining, room)
            else:
                take = min(room, long_budget)
                if take <= 0:
                    continue
                long_budget -= take
            end = min(seq.prefilled + take, self._next_split_point(seq, len(prompt)))
            chunk = prompt[seq.prefilled : end]
            entries.append(
                BatchEntry(
                    seq,
                    chunk,
                    seq.prefilled,
                    sample=end == len(prompt),
                    all_logits=seq.request.prompt_logprobs is not None,
                )
            )
            room -= len(chunk)
            prompt_tokens += len(chunk)
        if held and not prompt_tokens:
            # No prompt could go this step after all (they wait on a leader): nobody sits out for nothing.
            entries += self._decode_entries([seq for seq in decoding if seq in held])
        return entries

    def _long_prompt_budget(self, decoding: int) -> int:
        """Tokens long prompts advance this step beside `decoding` decoding sequences: the long-prompt
        budget for each, up to the prompt budget. The step's time is their next token's, and the more of
        them decode, the more of the step's time is their own work anyway."""
        if not decoding:
            return self.max_prompt_tokens_per_step
        per_sequence = self.long_prompt_tokens_per_step
        return min(per_sequence * decoding, max(per_sequence, self.max_prompt_tokens_per_step))

    def _decode_entries(self, decoding: list[SequenceState]) -> list[BatchEntry]:
        """One pending token (and its draft) per decoding sequence."""
        entries: list[BatchEntry] = []
        speculate = 0 < len(decoding) <= self._speculation.max_sequences
        room = self.max_batch_tokens - len(decoding)
        for seq in decoding:
            assert seq.pending_token is not None
            # The pending token is the latest sampled one; all earlier ones are already in the KV cache.
            position = seq.prefilled + seq.generated - 1
            draft = self._draft(seq, room) if speculate else ()
            room -= len(draft)
            entries.append(
                BatchEntry(seq, (seq.pending_token, *draft), position, sample=True, draft=len(draft))
            )
        return entries

    def _held_back(
        self, decoding: list[SequenceState], prefilling: list[SequenceState]
    ) -> set[SequenceState]:
        """Sequences that sit this step out: those with only their first token, while short prompts (their
        burst's others, as a rule) are still being computed, for at most BURST_HOLD_STEPS steps.

        A burst of requests then decodes together once its prompts are in, instead of the first ones
        riding along in every prompt step (each decode token costs those prompts' first tokens some 4 ms
        here) and finishing first, leaving a tail of steps with few sequences. Streams already past their
        first token never wait: their inter-token latency stays steady."""
        if not any(self._is_short(seq) for seq in prefilling):
            return set()
        held = set()
        for seq in decoding:
            steps = self._held_steps.get(seq, 0)
            if seq.generated == 1 and steps < BURST_HOLD_STEPS:
                self._held_steps[seq] = steps + 1
                held.add(seq)
        return held

    def prefilled(self, sequence: SequenceState) -> None:
        """Called after a step computed a chunk of the sequence's prompt: snapshots its cells where other
        prompts wait on them, and once the whole prompt is in, unless most of it came from the cache.

        A prompt mostly restored (a conversation's next turn) is saved at release anyway, with its reply; a
        snapshot here as well would copy all its cells (some 7 ms for 600 tokens of the embedded model) on
        the engine thread for the few tokens the step added."""
        points = self._split_points.get(sequence)
        prompt = sequence.request.prompt_tokens
        if points and sequence.prefilled in points:
            points.discard(sequence.prefilled)
            self._save(sequence.seq_id, prompt[: sequence.prefilled])
        elif sequence.prefilled == len(prompt) and sequence.reused_prompt_tokens <= len(prompt) // 2:
            self._save(sequence.seq_id, prompt)

    def _draft(self, sequence: SequenceState, room: int) -> tuple[int, ...]:
        request = sequence.request
        room = min(room, self._speculation.draft_tokens, request.max_tokens - sequence.generated - 1)
        if room <= 0:
            return ()
        lookup = self._lookups.get(sequence)
        if lookup is None:
            lookup = self._lookups[sequence] = PromptLookup(request.prompt_tokens)
        history = len(request.prompt_tokens) + len(sequence.output_tokens)
        if len(lookup) < history:
            lookup.extend(sequence.output_tokens[len(lookup) - history :])
        return lookup.draft(room)

    def _waits_for_leader(self, sequence: SequenceState) -> bool:
        """True when an earlier sequence is computing cells this prompt would compute too: it waits, and the
        leader's cells are snapshotted at the point they part, for it to restore."""
        followed = self._following.get(sequence)
        if followed is not None:
            leader, shared = followed
            if not leader.finished and leader.prefilled < shared:
                return True
            # The leader reached the point (its cells are snapshotted there) or is gone.
            del self._following[sequence]
            return False
        prompt = sequence.request.prompt_tokens
        for leader in self._active:
            if leader is sequence:
                return False
            lead_prompt = leader.request.prompt_tokens
            if leader.prefilled >= len(lead_prompt):
                continue
            shared = min(common_prefix_length(prompt, lead_prompt), len(prompt) - 1)
            if shared >= sequence.prefilled + self._min_reuse and leader.prefilled < shared:
                self._split_points.setdefault(leader, set()).add(shared)
                self._following[sequence] = (leader, shared)
                return True
        return False

    def _next_split_point(self, sequence: SequenceState, default: int) -> int:
        points = [p for p in self._split_points.get(sequence, ()) if p > sequence.prefilled]
        return min(points, default=default)

    def _save(self, seq_id: int, tokens: tuple[int, ...]) -> None:
        """Snapshots the stream's cells, which hold tokens, unless the host cache has them already."""
        if self._snapshots is not None and self.host_cache.worth_saving(tokens):
            self.host_cache.put(tokens, self._snapshots.save(seq_id))

    def _restore(self, sequence: SequenceState, stored: SnapshotMatch) -> None:
        """Replaces the sequence's cells with the snapshot's first stored.length tokens."""
        assert self._snapshots is not None
        self._kv.clear(sequence.seq_id)
        if not self._snapshots.restore(sequence.seq_id, stored.snapshot.data):
            self._kv.clear(sequence.seq_id)
            sequence.prefilled = sequence.reused_prompt_tokens = 0
            return
        self._kv.truncate(sequence.seq_id, stored.length)
        self.prefix_hits += 1
        self.reused_tokens += stored.length - sequence.reused_prompt_tokens
        sequence.prefilled = sequence.reused_prompt_tokens = stored.length
        self.host_cache.touch(stored)

    def prefix_cache_state(self) -> PrefixCacheState:
        cache = self.host_cache
        return PrefixCacheState(cache.entries, cache.bytes_held, self.prefix_hits)
