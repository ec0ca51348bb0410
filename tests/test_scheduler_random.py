"""The scheduler under random workloads (prompts sharing prefixes at random lengths, conversations' next
turns, random stops and cancellations, small KV caches and host caches): no step fails, no step starts past a
stream's cells, and every admitted sequence finishes once arrivals stop."""

from __future__ import annotations

import random

import pytest

from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import ContinuousBatchScheduler
from tests.test_prefix_sharing import _request, _run_step, _SnapshotKV


@pytest.mark.parametrize("seed", range(40))
def test_random_workloads_finish_every_sequence(seed: int) -> None:
    rnd = random.Random(seed)
    kv = _SnapshotKV()
    scheduler = ContinuousBatchScheduler(
        max_sequences=rnd.choice([2, 4, 8]),
        kv_capacity_tokens=rnd.choice([400, 2000, 10_000]),
        max_batch_tokens=rnd.choice([64, 128, 512]),
        kv=kv,
        max_prompt_tokens_per_step=rnd.choice([8, 32]),
        host_cache_bytes=rnd.choice([0, 1 << 12, 1 << 20]),
    )
    prefixes = [tuple(rnd.randrange(100, 200) for _ in range(rnd.randrange(5, 80))) for _ in range(4)]
    live: list[SequenceState] = []
    sent: list[tuple[int, ...]] = []
    for step in range(1000):
        if step < 400 and rnd.random() < 0.3 and len(live) < 12:
            if sent and rnd.random() < 0.5:  # a conversation's next turn, or a retry
                shared = rnd.choice(sent)[: rnd.randrange(1, 200)]
            else:
                shared = rnd.choice(prefixes)[: rnd.randrange(1, 80)]
            prompt = shared + tuple(rnd.randrange(200, 300) for _ in range(rnd.randrange(1, 30)))
            sequence = _request(prompt, max_tokens=rnd.randrange(1, 20))
            scheduler.submit(sequence)
            live.append(sequence)
        scheduler.admit(lambda _s: None)
        _run_step(scheduler, kv, next_token=lambda: rnd.randrange(300, 400))
        for sequence in list(live):
            if sequence.generated >= sequence.request.max_tokens or rnd.random() < 0.02:
                sent.append(sequence.tokens_in_kv())
                scheduler.release(sequence, keep_prefix=rnd.random() < 0.8)
                live.remove(sequence)
    assert not live
