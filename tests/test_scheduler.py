"""Continuous-batching plans: decode tokens first, prompt chunks in the remaining budget, KV admission."""

from __future__ import annotations

from inferno.core.engines.base import SamplingConfig, SequenceRequest
from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import BURST_HOLD_STEPS, BatchEntry, ContinuousBatchScheduler
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher

GREEDY = SamplingConfig(0.0, 1.0, 0.0, 0.0, None)


def _state(request: SequenceRequest) -> SequenceState:
    return SequenceState(
        request=request,
        emit=lambda _event: None,
        submitted_at=0.0,
        detokenizer=IncrementalDetokenizer(lambda _t: b""),
        stop=StopMatcher(()),
    )


def _sequence(prompt_len: int, max_tokens: int = 8) -> SequenceState:
    return _state(SequenceRequest(tuple(range(1, prompt_len + 1)), max_tokens, (), GREEDY))


def test_short_prompts_go_in_whole_and_the_next_waits_for_room() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=1000, max_batch_tokens=10, kv=_RecordingKV()
    )
    a, b = _sequence(6), _sequence(6)
    scheduler.submit(a)
    scheduler.submit(b)
    scheduler.admit(lambda _s: None)
    plan = scheduler.plan()
    assert [(e.sequence, len(e.tokens), e.start_pos, e.sample) for e in plan] == [(a, 6, 0, True)]


def test_decoding_sequences_get_one_token_each_before_prompts() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=4, kv_capacity_tokens=1000, max_batch_tokens=4, kv=_RecordingKV()
    )
    running, newcomer = _sequence(3), _sequence(5)
    scheduler.submit(running)
    scheduler.admit(lambda _s: None)
    running.prefilled, running.generated, running.pending_token = 3, 2, 42
    scheduler.submit(newcomer)
    scheduler.admit(lambda _s: None)
    plan = scheduler.plan()
    assert (plan[0].sequence, plan[0].tokens, plan[0].start_pos, plan[0].sample) == (running, (42,), 4, True)
    assert (plan[1].sequence, len(plan[1].tokens)) == (newcomer, 3)


def test_admission_waits_for_kv_room_and_sequence_ids() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=2, kv_capacity_tokens=30, max_batch_tokens=64, kv=_RecordingKV()
    )
    first, second, third = _sequence(10), _sequence(10), _sequence(1)
    for seq in (first, second, third):
        scheduler.submit(seq)
    scheduler.admit(lambda _s: None)
    assert (scheduler.running, scheduler.waiting) == (1, 2)  # 18 + 18 tokens would exceed 30
    scheduler.release(first, keep_prefix=False)
    scheduler.admit(lambda _s: None)
    assert (scheduler.running, scheduler.waiting) == (2, 0)
    assert scheduler.kv_usage == (18 + 9) / 30


def test_releasing_a_waiting_sequence_frees_no_kv() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=1, kv_capacity_tokens=100, max_batch_tokens=64, kv=_RecordingKV()
    )
    active, queued = _sequence(4), _sequence(4)
    scheduler.submit(active)
    scheduler.submit(queued)
    scheduler.admit(lambda _s: None)
    scheduler.release(queued, keep_prefix=False)
    assert scheduler.waiting == 0 and queued.finished


class _RecordingKV:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def truncate(self, seq_id: int, length: int) -> None:
        self.calls.append(("truncate", seq_id, length))

    def clear(self, seq_id: int) -> None:
        self.calls.append(("clear", seq_id))


def _finish_prefill(scheduler: ContinuousBatchScheduler, sequence: SequenceState, sampled: int) -> None:
    sequence.prefilled = len(sequence.request.prompt_tokens)
    sequence.output_tokens.append(sampled)
    sequence.pending_token = sampled
    sequence.generated = 1


def test_finished_sequence_hands_its_prefix_to_the_next_prompt() -> None:
    kv = _RecordingKV()
    scheduler = ContinuousBatchScheduler(max_sequences=2, kv_capacity_tokens=1000, max_batch_tokens=64, kv=kv)
    first = _sequence(20)
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _finish_prefill(scheduler, first, 99)
    scheduler.release(first, keep_prefix=True)
    follow_up = _state(SequenceRequest((*range(1, 16), 500, 501), 8, (), GREEDY))
    scheduler.submit(follow_up)
    scheduler.admit(lambda _s: None)
    assert follow_up.seq_id == first.seq_id
    assert follow_up.prefilled == follow_up.reused_prompt_tokens == 15
    assert kv.calls == [("truncate", first.seq_id, 15)]
    assert scheduler.plan()[0].tokens == (500, 501)


def test_running_sequences_do_not_share_cells() -> None:
    """KV streams are per sequence (not unified), so only finished sequences hand cells on."""
    kv = _RecordingKV()
    scheduler = ContinuousBatchScheduler(max_sequences=2, kv_capacity_tokens=1000, max_batch_tokens=64, kv=kv)
    first, second = _sequence(20), _sequence(20)
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _finish_prefill(scheduler, first, 7)
    scheduler.submit(second)
    scheduler.admit(lambda _s: None)
    assert second.seq_id != first.seq_id
    assert second.prefilled == 0
    assert kv.calls == []


def test_cancelled_sequences_free_their_cells_and_short_matches_are_not_reused() -> None:
    kv = _RecordingKV()
    scheduler = ContinuousBatchScheduler(max_sequences=1, kv_capacity_tokens=1000, max_batch_tokens=64, kv=kv)
    cancelled = _sequence(20)
    scheduler.submit(cancelled)
    scheduler.admit(lambda _s: None)
    scheduler.release(cancelled, keep_prefix=False)
    assert kv.calls == [("clear", cancelled.seq_id)]
    short = _state(SequenceRequest((1, 2, 3, 900), 4, (), GREEDY))
    scheduler.submit(short)
    scheduler.admit(lambda _s: None)
    assert short.prefilled == 0


def test_retained_prefixes_are_evicted_when_ids_run_out() -> None:
    kv = _RecordingKV()
    scheduler = ContinuousBatchScheduler(max_sequences=1, kv_capacity_tokens=1000, max_batch_tokens=64, kv=kv)
    first = _sequence(20)
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _finish_prefill(scheduler, first, 5)
    scheduler.release(first, keep_prefix=True)
    unrelated = _state(SequenceRequest(tuple(range(100, 120)), 4, (), GREEDY))
    scheduler.submit(unrelated)
    scheduler.admit(lambda _s: None)
    assert kv.calls == [("clear", first.seq_id)]
    assert (unrelated.seq_id, unrelated.prefilled, scheduler.retained_prefixes) == (first.seq_id, 0, 0)


def test_a_burst_of_short_prompts_goes_a_budget_per_step_shortest_first_beside_a_long_chunk() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=5,
        kv_capacity_tokens=1000,
        max_batch_tokens=64,
        kv=_RecordingKV(),
        max_prompt_tokens_per_step=8,
    )
    a, b, c, long = _sequence(6), _sequence(30), _sequence(20), _sequence(100)
    for sequence in (a, b, c, long):
        scheduler.submit(sequence)
    scheduler.admit(lambda _s: None)
    # 30 tokens is short (at most four times the budget of 8) and goes in whole; 100 is long. Shortest
    # first, a short prompt joins while the step's prompt tokens are under the budget.
    assert [(e.sequence, len(e.tokens), e.sample) for e in _run_step(scheduler)] == [
        (a, 6, True),
        (c, 20, True),
        (long, 8, False),
    ]
    # a and c have their first tokens; they sit out while b, short, is computed, and then the three decode
    # together.
    assert [(e.sequence, len(e.tokens), e.sample) for e in _run_step(scheduler)] == [
        (b, 30, True),
        (long, 8, False),
    ]
    assert [(e.sequence, len(e.tokens), e.sample) for e in _run_step(scheduler)] == [
        (a, 1, True),
        (b, 1, True),
        (c, 1, True),
        (long, 8, False),
    ]


def test_a_first_token_sits_out_a_bursts_prompts_for_a_bounded_number_of_steps() -> None:
    """Streams past their first token never wait; one with only its first token waits for the short prompts
    being computed, at most BURST_HOLD_STEPS steps."""
    scheduler = ContinuousBatchScheduler(
        max_sequences=12, kv_capacity_tokens=10_000, max_batch_tokens=64, kv=_RecordingKV(),
        max_prompt_tokens_per_step=8,
    )  # fmt: skip
    streaming, first = _sequence(4), _sequence(4)
    scheduler.submit(streaming)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler)
    _run_step(scheduler)  # streaming has two tokens now
    scheduler.submit(first)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler)  # first's prompt, beside streaming's token
    burst = [_sequence(8) for _ in range(BURST_HOLD_STEPS + 2)]
    for sequence in burst:
        scheduler.submit(sequence)
    scheduler.admit(lambda _s: None)
    steps = [_run_step(scheduler) for _ in range(BURST_HOLD_STEPS + 1)]
    assert all(any(e.sequence is streaming for e in step) for step in steps)
    waited = [not any(e.sequence is first for e in step) for step in steps]
    assert waited == [True] * BURST_HOLD_STEPS + [False]


def _run_step(scheduler: ContinuousBatchScheduler) -> list[BatchEntry]:
    """Applies one planned step as the stepper does; returns its entries."""
    plan = scheduler.plan()
    for entry in plan:
        sequence = entry.sequence
        if sequence.pending_token is None:
            sequence.prefilled += len(entry.tokens)
        else:
            sequence.generated += 1
        if entry.sample:
            sequence.pending_token = 7
            sequence.generated += sequence.generated == 0
    return plan


def test_short_prompt_admitted_during_a_long_prefill_gets_its_first_token_first() -> None:
    decoding, long = _sequence(4, max_tokens=5000), _sequence(4000)
    scheduler = ContinuousBatchScheduler(
        max_sequences=3,
        kv_capacity_tokens=20_000,
        max_batch_tokens=512,
        kv=_RecordingKV(),
        max_prompt_tokens_per_step=32,
    )
    scheduler.submit(decoding)
    scheduler.admit(lambda _s: None)
    assert [e.sequence for e in _run_step(scheduler) if e.sample] == [decoding]
    scheduler.submit(long)
    scheduler.admit(lambda _s: None)
    for _ in range(5):
        _run_step(scheduler)
    assert long.prefilled == 5 * 32
    assert decoding.generated == 6  # it kept decoding beside the long prompt
    short = _sequence(20)
    scheduler.submit(short)
    scheduler.admit(lambda _s: None)
    steps = 0
    while short.pending_token is None:
        _run_step(scheduler)
        steps += 1
    assert steps == 1
    assert long.prefilled < len(long.request.prompt_tokens)


def test_a_lone_prompt_takes_the_whole_batch_and_shares_it_once_another_arrives() -> None:
    scheduler = ContinuousBatchScheduler(
        max_sequences=2,
        kv_capacity_tokens=10_000,
        max_batch_tokens=512,
        kv=_RecordingKV(),
        max_prompt_tokens_per_step=32,
    )
    long = _sequence(2000)
    scheduler.submit(long)
    scheduler.admit(lambda _s: None)
    assert [len(e.tokens) for e in scheduler.plan()] == [512]
    _run_step(scheduler)
    short = _sequence(40)
    scheduler.submit(short)
    scheduler.admit(lambda _s: None)
    plan = scheduler.plan()
    assert [(e.sequence, len(e.tokens)) for e in plan] == [(short, 40), (long, 32)]


def test_a_long_prompt_goes_in_smaller_chunks_beside_few_decoding_sequences() -> None:
    """A long prompt advances long_prompt_tokens_per_step a step for each decoding sequence beside it (that
    step's time is their next token's), up to the prompt budget; beside another prompt only, the prompt
    budget; alone, the whole batch."""
    scheduler = ContinuousBatchScheduler(
        max_sequences=3, kv_capacity_tokens=20_000, max_batch_tokens=512, kv=_RecordingKV(),
        max_prompt_tokens_per_step=32, long_prompt_tokens_per_step=8,
    )  # fmt: skip
    long, decoding = _sequence(3000), _sequence(4, max_tokens=5000)
    scheduler.submit(long)
    scheduler.admit(lambda _s: None)
    assert [len(e.tokens) for e in _run_step(scheduler)] == [512]
    scheduler.submit(decoding)
    scheduler.admit(lambda _s: None)
    # decoding's prompt is short and goes in whole beside the long prompt's 32 (nothing decodes yet).
    assert [(e.sequence, len(e.tokens)) for e in _run_step(scheduler)] == [(decoding, 4), (long, 32)]
    for _ in range(3):
        assert [(e.sequence, len(e.tokens)) for e in _run_step(scheduler)] == [(decoding, 1), (long, 8)]
    assert long.prefilled == 512 + 32 + 3 * 8
    second = _sequence(4, max_tokens=5000)
    scheduler.submit(second)
    scheduler.admit(lambda _s: None)
    _run_step(scheduler)  # second's prompt
    assert [len(e.tokens) for e in _run_step(scheduler)] == [1, 1, 16]
    # Its last tokens too: a long prompt's tail is not a short prompt that goes in whole.
    chunks = []
    while long.pending_token is None:
        chunks += [len(e.tokens) for e in _run_step(scheduler) if e.sequence is long]
    assert chunks and set(chunks[:-1]) == {16} and chunks[-1] <= 16
