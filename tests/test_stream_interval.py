"""The stream interval: running streams' tokens are handed to the service together, at most once per
interval; a stream's first and last tokens and errors go at once (core/runtime/outbox.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from inferno.core.embedded import EMBEDDED_MODEL_ID
from inferno.core.engines.base import FinishReason, SequenceEvent
from inferno.core.runtime.outbox import Outbox
from tests.servers import RunningServer, running_inferno


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Mailbox:
    """Counts hand-overs and runs them at once, as the loop would."""

    def __init__(self) -> None:
        self.handovers = 0

    def post(self, callback: Callable[[], None]) -> None:
        self.handovers += 1
        callback()


def _token(text: str, count: int) -> SequenceEvent:
    return SequenceEvent(text, count)


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def test_without_an_interval_every_step_is_handed_over() -> None:
    outbox, mailbox, queue = Outbox(0.0, _Clock()), _Mailbox(), asyncio.Queue[Any]()
    for step in range(3):
        outbox.add(mailbox, queue, _token("a", step + 1), urgent=False)  # type: ignore[arg-type]
        outbox.flush()
    assert mailbox.handovers == 3 and len(_drain(queue)) == 3


def test_running_tokens_wait_for_the_interval_then_go_together() -> None:
    clock = _Clock()
    outbox, mailbox, queue = Outbox(0.02, clock), _Mailbox(), asyncio.Queue[Any]()
    outbox.add(mailbox, queue, _token("first", 1), urgent=True)  # type: ignore[arg-type]
    outbox.flush()
    assert mailbox.handovers == 1
    for step in range(3):
        clock.now += 0.006
        outbox.add(mailbox, queue, _token(str(step), step + 2), urgent=False)  # type: ignore[arg-type]
        outbox.flush()
    assert mailbox.handovers == 1, "18 ms after the last hand-over, nothing is due"
    clock.now += 0.006
    outbox.add(mailbox, queue, _token("3", 5), urgent=False)  # type: ignore[arg-type]
    outbox.flush()
    assert mailbox.handovers == 2
    assert [event.text for event in _drain(queue)] == ["first", "0", "1", "2", "3"]


def test_an_urgent_event_takes_the_held_ones_with_it() -> None:
    clock = _Clock()
    outbox, mailbox, queue = Outbox(0.02, clock), _Mailbox(), asyncio.Queue[Any]()
    outbox.add(mailbox, queue, _token("first", 1), urgent=True)  # type: ignore[arg-type]
    outbox.flush()
    clock.now += 0.001
    outbox.add(mailbox, queue, _token("held", 2), urgent=False)  # type: ignore[arg-type]
    outbox.flush()
    assert mailbox.handovers == 1
    clock.now += 0.001
    last = SequenceEvent("end", 3, FinishReason.STOP)
    outbox.add(mailbox, queue, last, urgent=True)  # type: ignore[arg-type]
    outbox.flush()
    assert mailbox.handovers == 2
    assert [event.text for event in _drain(queue)] == ["first", "held", "end"]


def test_force_hands_over_what_is_held() -> None:
    clock = _Clock()
    outbox, mailbox, queue = Outbox(0.02, clock), _Mailbox(), asyncio.Queue[Any]()
    outbox.add(mailbox, queue, _token("first", 1), urgent=True)  # type: ignore[arg-type]
    outbox.flush()
    outbox.add(mailbox, queue, _token("held", 2), urgent=False)  # type: ignore[arg-type]
    outbox.flush()
    assert len(_drain(queue)) == 1
    outbox.flush(force=True)
    assert [event.text for event in _drain(queue)] == ["held"]


@pytest.fixture(scope="module")
def slow_handover_server() -> Iterator[RunningServer]:
    with running_inferno("--stream-interval-ms", "1000", "--parallel", "1") as server:
        yield server


def test_a_stream_gets_its_first_token_alone_and_the_rest_together(
    slow_handover_server: RunningServer,
) -> None:
    """A 1 s interval on the real model: 24 tokens take a fraction of that, so after the first token
    (sent at once) the rest arrive together with the end, and the text is the unstreamed reply's."""
    client = openai.OpenAI(base_url=slow_handover_server.base_url + "/v1", api_key="unused")
    request: dict[str, Any] = {
        "model": EMBEDDED_MODEL_ID,
        "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, logprobs=True))
    with_tokens = [c for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    tokens_per_chunk = [len(c.choices[0].logprobs.content) for c in with_tokens]  # type: ignore[union-attr]
    assert tokens_per_chunk[0] == 1
    assert sum(tokens_per_chunk) == whole.usage.completion_tokens == 24  # type: ignore[union-attr]
    assert len(with_tokens) <= 3, tokens_per_chunk
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
