"""Splits a reply that thinks in tags (`<think>...</think>` before the answer) into its reasoning and its
content, as it streams: text that may be the start of a tag is held back until it is known.

Only a think block at the very start of the reply (after whitespace) is reasoning, as llama.cpp and vLLM
parse it; tags later in the reply are content. A template whose generation prompt already opens the block
(DeepSeek-R1's) makes the reply start inside it. Whitespace around the reasoning is dropped, so streamed
and whole replies split the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from inferno.v1 import inference_service_pb2 as pb

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ReasoningPiece:
    """What one piece of reply text turned into."""

    reasoning: str = ""
    content: str = ""

    def __add__(self, other: ReasoningPiece) -> ReasoningPiece:
        return ReasoningPiece(self.reasoning + other.reasoning, self.content + other.content)


@dataclass(frozen=True)
class ReasoningPolicy:
    """A request's replies are split; opened_in_prompt: the prompt ends inside a think block."""

    opened_in_prompt: bool = False

    def splitter(self) -> ReasoningSplitter:
        return ReasoningSplitter(self.opened_in_prompt)

    def split(self, text: str) -> ReasoningPiece:
        """A whole reply, split."""
        splitter = self.splitter()
        return splitter.feed(text) + splitter.flush()


def template_thinks_in_tags(template_source: str) -> bool:
    """A chat template that mentions think tags belongs to a model that thinks in them (Qwen3, DeepSeek-R1,
    QwQ: their templates strip or open think blocks)."""
    return THINK_OPEN in template_source or THINK_CLOSE in template_source


def resolve_reasoning(
    reasoning_format: pb.ReasoningFormat.ValueType, template_source: str, prompt: str, constrained: bool
) -> ReasoningPolicy | None:
    """Whether and how a request's replies are split; None: reasoning stays inline in the content.

    constrained: a grammar shapes the reply (tools, response_format), so it holds no think block."""
    if reasoning_format == pb.REASONING_FORMAT_NONE or constrained:
        return None
    if reasoning_format != pb.REASONING_FORMAT_SEPARATED and not template_thinks_in_tags(template_source):
        return None
    opened = prompt.rstrip().endswith(THINK_OPEN)
    return ReasoningPolicy(opened_in_prompt=opened)


class _State(Enum):
    # Before the reply's first non-blank text: a think block may open.
    START = auto()
    THINKING = auto()
    # Just after </think>: blank text before the answer is dropped.
    AFTER_THINKING = auto()
    CONTENT = auto()


class ReasoningSplitter:
    """feed() returns the text that is safe to release; flush() what is held when the reply ends (an
    unclosed think block is all reasoning)."""

    def __init__(self, opened_in_prompt: bool = False) -> None:
        self._state = _State.THINKING if opened_in_prompt else _State.START
        self._held = ""
        # Inside the think block, before its first non-blank character.
        self._reasoning_started = False

    def feed(self, text: str) -> ReasoningPiece:
        self._held += text
        reasoning, content = "", ""
        while True:
            if self._state is _State.START:
                blank_end = len(self._held) - len(self._held.lstrip())
                rest = self._held[blank_end:]
                if rest.startswith(THINK_OPEN):
                    self._state, self._held = _State.THINKING, rest[len(THINK_OPEN) :]
                    continue
                if THINK_OPEN.startswith(rest):  # blank so far, or a tag still arriving
                    break
                self._state = _State.CONTENT
                continue
            if self._state is _State.THINKING:
                if not self._reasoning_started:
                    self._held = self._held.lstrip()
                    if not self._held:
                        break
                    self._reasoning_started = True
                end = self._held.find(THINK_CLOSE)
                if end >= 0:
                    reasoning += self._held[:end].rstrip()
                    self._state, self._held = _State.AFTER_THINKING, self._held[end + len(THINK_CLOSE) :]
                    continue
                keep = _held_back(self._held)
                reasoning += self._held[: len(self._held) - keep]
                self._held = self._held[len(self._held) - keep :]
                break
            if self._state is _State.AFTER_THINKING:
                self._held = self._held.lstrip()
                if not self._held:
                    break
                self._state = _State.CONTENT
                continue
            content += self._held
            self._held = ""
            break
        return ReasoningPiece(reasoning, content)

    def flush(self) -> ReasoningPiece:
        held, self._held = self._held, ""
        if self._state is _State.THINKING:
            return ReasoningPiece(reasoning=held.rstrip())
        if self._state is _State.AFTER_THINKING:
            return ReasoningPiece()
        return ReasoningPiece(content=held)


def _held_back(text: str) -> int:
    """How much of the end of reasoning text to hold: a partial </think>, and the blanks before it (they are
    dropped if the block ends there)."""
    partial = next(
        (
            size
            for size in range(min(len(THINK_CLOSE) - 1, len(text)), 0, -1)
            if text.endswith(THINK_CLOSE[:size])
        ),
        0,
    )
    before = text[: len(text) - partial]
    return partial + len(before) - len(before.rstrip())
