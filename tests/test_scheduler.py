"""Continuous-batching plans: decode tokens first, prompt chunks in the remaining budget, KV admission."""

from __future__ import annotations

from inferno.core.engines.base import SamplingConfig, SequenceRequest
from inferno.core.scheduler import ContinuousBatchScheduler, SequenceState

GREEDY = SamplingConfig(0.0, 1.0, 0.0, 0.0, None)


def _sequence(prompt_len: int, max_tokens: int = 8) -> SequenceState:
    request = SequenceRequest(tuple(range(1, prompt_len + 1)), max_tokens, (), GREEDY)
    return SequenceState(request=request, emit=lambda _event: None, submitted_at=0.0)


def test_waiting_prompts_are_chunked_into_the_token_budget() -> None:
    scheduler = ContinuousBatchScheduler(max_sequences=4, kv_capacity_tokens=1000, max_batch_tokens=10)
    a, b = _sequence(6), _sequence(6)
    scheduler.submit(a)
    scheduler.submit(b)
    scheduler.admit(lambda _s: None)
    plan = scheduler.plan()
    assert [(e.sequence, len(e.tokens), e.start_pos, e.sample) for e in plan] == [
        (a, 6, 0, True),
        (b, 4, 0, False),
    ]


def test_decoding_sequences_get_one_token_each_before_prompts() -> None:
    scheduler = ContinuousBatchScheduler(max_sequences=4, kv_capacity_tokens=1000, max_batch_tokens=4)
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
    scheduler = ContinuousBatchScheduler(max_sequences=2, kv_capacity_tokens=30, max_batch_tokens=64)
    first, second, third = _sequence(10), _sequence(10), _sequence(1)
    for seq in (first, second, third):
        scheduler.submit(seq)
    scheduler.admit(lambda _s: None)
    assert (scheduler.running, scheduler.waiting) == (1, 2)  # 18 + 18 tokens would exceed 30
    assert scheduler.release(first)
    scheduler.admit(lambda _s: None)
    assert (scheduler.running, scheduler.waiting) == (2, 0)
    assert scheduler.kv_usage == (18 + 9) / 30


def test_releasing_a_waiting_sequence_frees_no_kv() -> None:
    scheduler = ContinuousBatchScheduler(max_sequences=1, kv_capacity_tokens=100, max_batch_tokens=64)
    active, queued = _sequence(4), _sequence(4)
    scheduler.submit(active)
    scheduler.submit(queued)
    scheduler.admit(lambda _s: None)
    assert not scheduler.release(queued)
    assert scheduler.waiting == 0 and queued.finished
