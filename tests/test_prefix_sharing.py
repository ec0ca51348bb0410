"""Prefix sharing across KV streams (host-memory snapshots, leaders and followers) and prompt-lookup drafts,
on the runtime's scheduler with a KV double that records what it was asked to do."""

from __future__ import annotations

from collections.abc import Callable

from inferno.core.engines.base import SequenceRequest
from inferno.core.host_prefix_cache import HostPrefixCache
from inferno.core.prompt_lookup import PromptLookup
from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import ContinuousBatchScheduler, Speculation
from tests.test_scheduler import GREEDY, _state


class _SnapshotKV:
    """KV cells per sequence as token counts; a snapshot is the cell count, serialized."""

    def __init__(self) -> None:
        self.cells: dict[int, int] = {}
        self.calls: list[tuple[str, int]] = []

    def truncate(self, seq_id: int, length: int) -> None:
        self.cells[seq_id] = min(self.cells.get(seq_id, 0), length)

    def clear(self, seq_id: int) -> None:
        self.cells[seq_id] = 0

    def save(self, seq_id: int) -> bytearray:
        self.calls.append(("save", seq_id))
        return bytearray(self.cells.get(seq_id, 0).to_bytes(4, "little") * 4)

    def restore(self, seq_id: int, data: bytearray) -> bool:
        self.calls.append(("restore", seq_id))
        self.cells[seq_id] = int.from_bytes(data[:4], "little")
        return True


def _request(prompt: tuple[int, ...], max_tokens: int = 8) -> SequenceState:
    return _state(SequenceRequest(prompt, max_tokens, (), GREEDY))


def _run_step(
    scheduler: ContinuousBatchScheduler, kv: _SnapshotKV, next_token: Callable[[], int] | None = None
) -> list[tuple[SequenceState, int]]:
    """Plans a step and applies it as the stepper would; returns (sequence, tokens) of each entry. A prompt's
    first sampled token is 7; decoding sequences advance by next_token() when given (else they stay)."""
    entries = scheduler.plan()
    for entry in entries:
        sequence = entry.sequence
        assert kv.cells.get(sequence.seq_id, 0) >= entry.start_pos, "a step starts past the stream's cells"
        kv.cells[sequence.seq_id] = entry.start_pos + len(entry.tokens)
        if sequence.pending_token is None:
            sequence.prefilled += len(entry.tokens)
            scheduler.prefilled(sequence)
            if entry.sample:
                sequence.pending_token = 7
                sequence.output_tokens.append(7)
                sequence.generated = 1
        elif next_token is not None:
            token = next_token()
            sequence.output_tokens.append(token)
            sequence.pending_token = token
            sequence.generated += 1
    return [(e.sequence, len(e.tokens)) for e in entries]


SYSTEM = tuple(range(100, 160))  # a 60-token shared prefix


def test_a_prompt_sharing_a_prefix_with_one_being_computed_waits_and_restores_it() -> None:
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=10_000, max_batch_tokens=64, kv=kv,
        max_prompt_tokens_per_step=32, host_cache_bytes=1 << 20,
    )  # fmt: skip
    leader, follower = _request((*SYSTEM, 1, 2, 3)), _request((*SYSTEM, 4, 5))
    scheduler.submit(leader)
    scheduler.submit(follower)
    scheduler.admit(lambda _s: None)
    computed = {leader: 0, follower: 0}
    while follower.pending_token is None or leader.pending_token is None:
        for sequence, tokens in _run_step(scheduler, kv):
            computed[sequence] += tokens
    # The leader stopped a chunk where the prompts part and was snapshotted there; the follower restored
    # that and computed only its own two tokens.
    assert computed == {leader: len(SYSTEM) + 3, follower: 2}
    assert follower.reused_prompt_tokens == len(SYSTEM)
    assert ("restore", follower.seq_id) in kv.calls
    assert scheduler.reused_tokens == len(SYSTEM)
    assert scheduler.prefix_hits == 1


def _scheduler_after_one_request(
    kv: _SnapshotKV, max_sequences: int
) -> tuple[ContinuousBatchScheduler, SequenceState]:
    """A scheduler with a host cache whose first request, SYSTEM and two tokens, was computed and released."""
    scheduler = ContinuousBatchScheduler(
        max_sequences=max_sequences,
        kv_capacity_tokens=10_000,
        max_batch_tokens=128,
        kv=kv,
        host_cache_bytes=1 << 20,
    )
    first = _request((*SYSTEM, 1, 2))
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler, kv)
    scheduler.release(first, keep_prefix=True)
    return scheduler, first


def test_a_finished_sequence_is_snapshotted_and_restored_into_another_stream() -> None:
    kv = _SnapshotKV()
    scheduler, _first = _scheduler_after_one_request(kv, max_sequences=1)
    assert scheduler.host_cache.entries == 1
    # Another prompt that shares the prefix, after the retained stream was given to someone else.
    other = _request(tuple(range(500, 520)))
    scheduler.submit(other)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler, kv)
    scheduler.release(other, keep_prefix=False)
    second = _request((*SYSTEM, 9))
    scheduler.submit(second)
    scheduler.admit(lambda _s: None)
    assert second.prefilled == second.reused_prompt_tokens == len(SYSTEM)
    assert kv.cells[second.seq_id] == len(SYSTEM)


def test_a_prompt_mostly_restored_is_not_snapshotted_again_until_its_release() -> None:
    """A conversation's next turn restores its history and adds a few tokens: copying every cell again when
    its prompt is in would buy those few; its release saves prompt and reply together."""
    kv = _SnapshotKV()
    scheduler, first = _scheduler_after_one_request(kv, max_sequences=2)
    assert kv.calls == [("save", first.seq_id)], "a prompt computed in full is saved once it is in"
    kv.calls.clear()
    next_turn = _request((*SYSTEM, 1, 2, 7, 3, 4))
    scheduler.submit(next_turn)
    scheduler.admit(lambda _s: None)
    assert next_turn.reused_prompt_tokens == len(SYSTEM) + 2
    _run_step(scheduler, kv)
    assert next_turn.prefilled == len(next_turn.request.prompt_tokens)
    assert ("save", next_turn.seq_id) not in kv.calls
    scheduler.release(next_turn, keep_prefix=True)
    assert kv.calls[-1] == ("save", next_turn.seq_id)


def test_prompt_logprob_requests_never_reuse() -> None:
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=2, kv_capacity_tokens=10_000, max_batch_tokens=128, kv=kv, host_cache_bytes=1 << 20
    )
    scheduler.host_cache.put(SYSTEM, bytearray(b"\x3c\0\0\0"))
    scoring = _state(SequenceRequest((*SYSTEM, 1), 0, (), GREEDY, prompt_logprobs=0))
    scheduler.submit(scoring)
    scheduler.admit(lambda _s: None)
    assert scoring.prefilled == 0 and ("restore", scoring.seq_id) not in kv.calls


def test_host_cache_is_bounded_and_drops_snapshots_a_longer_one_extends() -> None:
    cache = HostPrefixCache(capacity_bytes=100, min_reuse_tokens=4)
    cache.put((1, 2, 3, 4), bytearray(b"a" * 40))
    cache.put((1, 2, 3, 4, 5, 6), bytearray(b"b" * 40))
    assert cache.entries == 1, "the shorter snapshot is a prefix of the longer one"
    cache.put((9, 9, 9, 9), bytearray(b"c" * 40))
    cache.put((8, 8, 8, 8), bytearray(b"d" * 40))
    assert cache.bytes_held <= 100 and cache.entries == 2
    assert cache.best_match((1, 2, 3, 4, 5, 6, 7)) is None, "least recently used went first"
    match = cache.best_match((8, 8, 8, 8, 1))
    assert match is not None and match.length == 4
    assert not cache.worth_saving((8, 8, 8)), "shorter than the reuse minimum"
    assert not cache.worth_saving((8, 8, 8, 8)), "already held"


TEXT = tuple(range(1000, 1200))  # a text the prompt holds and the reply copies


def _copy(lookup: PromptLookup, copied: int, steps: int) -> list[tuple[int, ...]]:
    """Drafts of a reply that copies TEXT from TEXT[copied] on, extended as a verifier would: a draft's
    tokens all kept, then the next one."""
    drafts = []
    for _ in range(steps):
        draft = lookup.draft(16)
        drafts.append(draft)
        assert draft == TEXT[copied : copied + len(draft)]
        lookup.extend(TEXT[copied : copied + len(draft) + 1])
        copied += len(draft) + 1
    return drafts


def test_prompt_lookup_drafts_what_followed_the_last_ngram_doubling_while_kept_whole() -> None:
    lookup = PromptLookup(TEXT + TEXT[:3])
    assert [len(d) for d in _copy(lookup, 3, 4)] == [4, 8, 16, 16]
    assert PromptLookup([1, 2, 3, 4, 1, 2]).draft(4) == (), "a two-token match is no guess"


def test_prompt_lookup_stops_drafting_when_its_guesses_miss_and_resumes_when_they_hit() -> None:
    lookup = PromptLookup(TEXT + TEXT[:3])
    _copy(lookup, 3, 4)
    for resume_at, detour in ((40, [1, 2, 3, 4, 5]), (60, [6, 7, 8, 9, 10])):
        assert lookup.draft(16) != ()
        lookup.extend(detour)  # the reply leaves the text: the draft missed at once
        lookup.extend(TEXT[resume_at - 3 : resume_at])  # and comes back to it further on
    # One miss leaves the hit rate over 0.85; the second takes it under: no drafts until three unverified
    # guesses (checked against the token sampled next) have hit.
    assert [len(d) for d in _copy(lookup, 60, 5)] == [0, 0, 0, 4, 8]


def test_drafts_ride_along_only_while_few_sequences_decode() -> None:
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=10_000, max_batch_tokens=256, kv=kv,
        speculation=Speculation(draft_tokens=4, max_sequences=1),
    )  # fmt: skip
    copying = _request(TEXT + TEXT[:3], max_tokens=64)
    scheduler.submit(copying)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler, kv)  # the whole prompt
    copying.output_tokens[-1] = copying.pending_token = TEXT[3]
    (entry,) = scheduler.plan()
    assert entry.tokens == TEXT[3:8] and entry.draft == 4
    other = _request((1, 2, 3))
    scheduler.submit(other)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler, kv)
    assert all(entry.draft == 0 for entry in scheduler.plan()), "two decoding: no drafts"


def _four_streams_then_two_freed_and_the_last_retained(
    kv: _SnapshotKV, reply: tuple[int, ...]
) -> tuple[ContinuousBatchScheduler, list[SequenceState]]:
    """Four prompts computed in streams 0 to 3; streams 0 and 1 free up and stream 3 finishes (after
    `reply` more tokens) with its cells retained, its prompt snapshotted."""
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=10_000, max_batch_tokens=256, kv=kv, host_cache_bytes=1 << 20
    )
    first = [_request((i, *SYSTEM, 1)) for i in range(4)]
    for sequence in first:
        scheduler.submit(sequence)
    scheduler.admit(lambda _s: None)
    assert [s.seq_id for s in first] == [0, 1, 2, 3]
    _run_step(scheduler, kv)
    for sequence in first[:2]:
        scheduler.release(sequence, keep_prefix=False)
    first[3].output_tokens.extend(reply)
    scheduler.release(first[3], keep_prefix=True)
    return scheduler, first


def test_new_sequences_take_the_lowest_streams_and_restore_rather_than_take_over_a_far_one() -> None:
    """llama.cpp computes a step over every KV stream between the lowest and highest id in the batch, so
    ids stay low: a fresh sequence gets the lowest free id, and a retained stream further out than that is
    not taken over when a snapshot as long holds the same prefix."""
    kv = _SnapshotKV()
    scheduler, _first = _four_streams_then_two_freed_and_the_last_retained(kv, reply=())
    newcomer = _request((3, *SYSTEM, 2))
    scheduler.submit(newcomer)
    scheduler.admit(lambda _s: None)
    assert newcomer.seq_id == 0
    assert newcomer.reused_prompt_tokens == len(SYSTEM) + 1  # restored from the snapshot
    assert ("restore", 0) in kv.calls


def test_a_far_retained_stream_is_restored_into_a_low_one_with_its_reply() -> None:
    """The retained stream holds the prompt and its reply, saved together at its release: a newcomer that
    continues it gets both, restored into stream 0 rather than taking over stream 3."""
    kv = _SnapshotKV()
    # Two more decode steps: tokens 7 and 8 are in stream 3's cells.
    scheduler, first = _four_streams_then_two_freed_and_the_last_retained(kv, reply=(8, 9))
    kv.calls.clear()
    newcomer = _request((*first[3].tokens_in_kv(), 5, 6))
    scheduler.submit(newcomer)
    scheduler.admit(lambda _s: None)
    assert kv.calls == [("restore", 0)]
    assert newcomer.seq_id == 0 and newcomer.reused_prompt_tokens == len(first[3].tokens_in_kv())


def test_a_snapshot_is_restored_even_when_freeing_the_stream_saves_one_that_replaces_it() -> None:
    """Two retained streams and a snapshot share SYSTEM with a newcomer, which gets the lowest stream: it
    restores SYSTEM from whichever snapshot holds it once that stream is freed (freeing a stream saves its
    cells if the host cache has dropped them, and a snapshot saved then may replace the one matched)."""
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=2, kv_capacity_tokens=10_000, max_batch_tokens=128, kv=kv, host_cache_bytes=1 << 20
    )
    first = _request((*SYSTEM, 1, 2))
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler, kv)  # its prompt is saved
    first.output_tokens.append(8)  # its cells now hold (*SYSTEM, 1, 2, 7), beyond its prompt's snapshot
    second = _request((*SYSTEM, 5, 6))
    scheduler.submit(second)
    scheduler.admit(lambda _s: None)
    assert second.seq_id == 1 and second.reused_prompt_tokens == len(SYSTEM)
    _run_step(scheduler, kv)
    scheduler.release(second, keep_prefix=True)
    scheduler.release(first, keep_prefix=True)
    # Both retained streams and the snapshots share SYSTEM with the newcomer; stream 0, the lowest, is freed.
    newcomer = _request((*SYSTEM, 9))
    scheduler.submit(newcomer)
    scheduler.admit(lambda _s: None)
    assert newcomer.seq_id == 0 and newcomer.reused_prompt_tokens == len(SYSTEM)
    assert scheduler.host_cache.covers((*SYSTEM, 1, 2, 7))


def test_a_burst_of_conversations_keeps_their_streams_in_any_order() -> None:
    """Conversations in streams 0 to 3 come back together in another order: each takes over its own stream
    (all four stay within the lowest four), with no copy to host memory and back."""
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=10_000, max_batch_tokens=512, kv=kv, host_cache_bytes=1 << 20
    )
    turns = [_request((*SYSTEM, c, 1)) for c in range(4)]
    for sequence in turns:
        scheduler.submit(sequence)
    scheduler.admit(lambda _s: None)
    while any(s.pending_token is None for s in turns):
        _run_step(scheduler, kv)
    for sequence in turns:
        scheduler.release(sequence, keep_prefix=True)
    kv.calls.clear()
    next_turns = [_request((*turn.tokens_in_kv(), 5, 6)) for turn in reversed(turns)]
    for sequence in next_turns:
        scheduler.submit(sequence)
    scheduler.admit(lambda _s: None)
    assert [s.seq_id for s in next_turns] == [t.seq_id for t in reversed(turns)] == [3, 2, 1, 0]
    assert kv.calls == []
