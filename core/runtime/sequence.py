"""One sequence's state from submission to its last event. Owned by the engine thread once submitted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from inferno.core.engines.base import SequenceEvent, SequenceRequest, TokenLogprobs
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher

EventSink = Callable[[SequenceEvent | BaseException], None]


@dataclass(eq=False)
class SequenceState:
    request: SequenceRequest
    emit: EventSink
    submitted_at: float
    detokenizer: IncrementalDetokenizer
    stop: StopMatcher
    # Prompt log-probabilities computed so far, when asked for; None once sent with the first event.
    prompt_logprobs: list[TokenLogprobs] | None = None
    # The KV stream the runtime's scheduler gave the sequence (BatchDecoder engines).
    seq_id: int = -1
    prefilled: int = 0
    generated: int = 0
    pending_token: int | None = None
    # Sampled tokens; all but the pending one are in the KV cache.
    output_tokens: list[int] = field(default_factory=list)
    # Prompt tokens taken from another sequence's KV cells rather than computed.
    reused_prompt_tokens: int = 0
    finished: bool = False
    first_token_at: float | None = None
    last_token_at: float = 0.0

    @property
    def reserved_tokens(self) -> int:
        return len(self.request.prompt_tokens) + self.request.max_tokens

    def tokens_in_kv(self) -> tuple[int, ...]:
        fed_back = self.output_tokens[:-1] if self.output_tokens else []
        return (*self.request.prompt_tokens[: self.prefilled], *fed_back)
