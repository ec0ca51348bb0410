"""Turns a validated request into engine sequences and merges their events back, one index per choice."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from inferno.core.engines.base import FinishReason, SequenceEvent, SequenceRequest, TokenLogprobs
from inferno.core.runtime.served_model import ServedModel
from inferno.v1 import common_pb2, inference_service_pb2

# The engine serving a model id (the model manager's lookup, which may load the model first).
EngineLookup = Callable[[str], Awaitable[ServedModel]]

FINISH_REASONS = {
    FinishReason.STOP: common_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: common_pb2.FINISH_REASON_LENGTH,
}


@dataclass(frozen=True)
class IndexedEvent:
    index: int
    event: SequenceEvent
    # Set on the stream's last event: all choices have finished.
    usage: common_pb2.Usage | None = None


@dataclass
class ChoiceResult:
    text: str = ""
    finish_reason: common_pb2.FinishReason.ValueType = common_pb2.FINISH_REASON_UNSPECIFIED
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    prompt_logprobs: tuple[TokenLogprobs, ...] = ()

    def mean_logprob(self) -> float:
        """best_of's ranking key; a choice with no scored token ranks last."""
        if not self.logprobs:
            return float("-inf")
        return sum(lp.logprob for lp in self.logprobs) / len(self.logprobs)


@dataclass
class Generation:
    """The sequences of one request, all on one engine."""

    engine: ServedModel
    model_id: str
    id_prefix: str
    sequences: list[SequenceRequest]
    # Counted once per prompt, however many choices share it (as OpenAI counts).
    prompt_tokens: int
    id: str = field(init=False)
    created: int = field(init=False)

    def __post_init__(self) -> None:
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    async def stream(self) -> AsyncIterator[IndexedEvent]:
        """Events of all sequences as they come; closing this cancels every unfinished sequence."""
        if len(self.sequences) == 1:
            async for event in self.engine.generate(self.sequences[0]):
                finished = event.finish_reason is not None
                usage = self._usage(event.completion_tokens, event.cached_prompt_tokens) if finished else None
                yield IndexedEvent(0, event, usage)
            return
        merged: asyncio.Queue[IndexedEvent | BaseException] = asyncio.Queue()
        tasks = [asyncio.create_task(self._pump(i, seq, merged)) for i, seq in enumerate(self.sequences)]
        completion = [0] * len(self.sequences)
        cached = [0] * len(self.sequences)
        remaining = len(self.sequences)
        try:
            while remaining:
                item = await merged.get()
                if isinstance(item, BaseException):
                    raise item
                completion[item.index] = item.event.completion_tokens
                cached[item.index] = item.event.cached_prompt_tokens
                if item.event.finish_reason is not None:
                    remaining -= 1
                usage = self._usage(sum(completion), min(cached)) if not remaining else None
                yield IndexedEvent(item.index, item.event, usage)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def collect(self) -> tuple[list[ChoiceResult], common_pb2.Usage]:
        choices = [ChoiceResult() for _ in self.sequences]
        usage = common_pb2.Usage()
        async for item in self.stream():
            choice = choices[item.index]
            choice.text += item.event.text
            choice.logprobs.extend(item.event.logprobs)
            if item.event.prompt_logprobs:
                choice.prompt_logprobs = item.event.prompt_logprobs
            if item.event.finish_reason is not None:
                choice.finish_reason = FINISH_REASONS[item.event.finish_reason]
            if item.usage is not None:
                usage = item.usage
        return choices, usage

    def prompt_usage(self, cached_prompt_tokens: int) -> common_pb2.Usage:
        """The prompt's share of the usage, known once the first token is out."""
        return self._usage(0, cached_prompt_tokens)

    def _usage(self, completion_tokens: int, cached_prompt_tokens: int) -> common_pb2.Usage:
        """The request's usage; the prompt counts once, and its cached part is what no choice computed."""
        prompt = self.prompt_tokens
        return common_pb2.Usage(
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            total_tokens=prompt + completion_tokens,
            cached_prompt_tokens=cached_prompt_tokens,
        )

    async def _pump(
        self, index: int, request: SequenceRequest, out: asyncio.Queue[IndexedEvent | BaseException]
    ) -> None:
        try:
            async for event in self.engine.generate(request):
                out.put_nowait(IndexedEvent(index, event))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, which raises it
            out.put_nowait(exc)


def prompt_logprob_messages(
    engine: ServedModel, prompt: Sequence[int], scores: Sequence[TokenLogprobs]
) -> list[inference_service_pb2.PromptTokenLogprob]:
    """The prompt's tokens with their log-probabilities; the first token has none."""
    first = inference_service_pb2.PromptTokenLogprob(token_id=prompt[0], token=engine.token_bytes(prompt[0]))
    return [first] + [
        inference_service_pb2.PromptTokenLogprob(
            token_id=lp.token,
            token=engine.token_bytes(lp.token),
            logprob=lp.logprob,
            top_logprobs=_top_messages(engine, lp),
        )
        for lp in scores
    ]


def _top_messages(engine: ServedModel, lp: TokenLogprobs) -> list[common_pb2.TopLogprob]:
    return [common_pb2.TopLogprob(token_id=t, token=engine.token_bytes(t), logprob=v) for t, v in lp.top]


def logprob_messages(engine: ServedModel, logprobs: Sequence[TokenLogprobs]) -> list[common_pb2.TokenLogprob]:
    """Engine log-probabilities as proto messages, each token with its bytes."""
    return [
        common_pb2.TokenLogprob(
            token_id=lp.token,
            token=engine.token_bytes(lp.token),
            logprob=lp.logprob,
            top_logprobs=_top_messages(engine, lp),
        )
        for lp in logprobs
    ]


def add_event_outcome(
    message: inference_service_pb2.StreamChatCompletionResponse
    | inference_service_pb2.StreamCompletionResponse,
    generation: Generation,
    item: IndexedEvent,
) -> None:
    """What every stream message carries besides its text: finish reason, usage and log-probabilities."""
    if item.event.finish_reason is not None:
        message.finish_reason = FINISH_REASONS[item.event.finish_reason]
    if item.usage is not None:
        message.usage.CopyFrom(item.usage)
    message.logprobs.extend(logprob_messages(generation.engine, item.event.logprobs))
