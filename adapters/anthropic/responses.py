"""inferno.v1 chat replies to Anthropic's Message object and its stream events.

The chat RPC's finish_reason says "stop" both for the end of the turn and for a stop string. Requests with
stop_sequences ask the core for log-probabilities, whose tokens are the text the model sampled, the matched
stop string included (the reply's text ends where it begins): the stop sequence found earliest in that text is
the one that ended the reply, as the core's own matcher picks the earliest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from inferno.v1 import common_pb2, inference_service_pb2

JsonObject = dict[str, Any]

_STOP_REASONS: dict[int, str] = {
    common_pb2.FINISH_REASON_LENGTH: "max_tokens",
    common_pb2.FINISH_REASON_TOOL_CALLS: "tool_use",
}


@dataclass(frozen=True)
class StopOutcome:
    reason: str
    sequence: str | None = None


def stop_outcome(finish_reason: int, sampled_text: str, stop_sequences: Sequence[str]) -> StopOutcome:
    """Anthropic's stop_reason and stop_sequence for a reply that finished with finish_reason."""
    if finish_reason == common_pb2.FINISH_REASON_STOP:
        found = [(sampled_text.find(s), k) for k, s in enumerate(stop_sequences) if s in sampled_text]
        if found:
            return StopOutcome("stop_sequence", stop_sequences[min(found)[1]])
    return StopOutcome(_STOP_REASONS.get(finish_reason, "end_turn"))


def sampled_text(tokens: Iterable[bytes]) -> str:
    """The text of the sampled tokens (the log-probabilities' tokens)."""
    return b"".join(tokens).decode("utf-8", errors="replace")


def message_id(chat_id: str) -> str:
    """msg_<...> from the core's chatcmpl-<...>."""
    return "msg_" + chat_id.removeprefix("chatcmpl-")


def usage_json(usage: common_pb2.Usage) -> JsonObject:
    """Anthropic's split: input_tokens are the prompt tokens not read from the cache, so the prompt is
    input_tokens + cache_read_input_tokens."""
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_prompt_tokens,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
        "output_tokens": usage.completion_tokens,
    }


def message_json(
    reply: inference_service_pb2.CreateChatCompletionResponse, stop_sequences: Sequence[str]
) -> JsonObject:
    """A message object from the reply's one choice."""
    choice = reply.choices[0]
    content: list[JsonObject] = []
    if choice.message.content:
        content.append({"type": "text", "text": choice.message.content})
    content.extend(
        _tool_use_block(call.id, call.function.name, _tool_input(call.function.arguments))
        for call in choice.message.tool_calls
    )
    outcome = stop_outcome(
        choice.finish_reason, sampled_text(entry.token for entry in choice.logprobs), stop_sequences
    )
    return {
        **_message_head(reply.id, reply.model),
        "content": content,
        "stop_reason": outcome.reason,
        "stop_sequence": outcome.sequence,
        "usage": usage_json(reply.usage),
    }


def count_tokens_json(input_tokens: int) -> JsonObject:
    return {"input_tokens": input_tokens}


class MessageEvents:
    """Turns the core's stream messages for one request into Anthropic's events, in order.

    message_start (and a ping) comes with the first core message; text opens a text block and tool calls
    open a tool_use block each, every block closing before the next opens; final_events() closes the last
    block and sends message_delta (stop_reason, stop_sequence, usage) and message_stop. message_start has the
    input tokens from the core's first message (prompt_usage) and no output tokens yet; message_delta has the
    totals, input and output (Anthropic's message_delta usage counts are cumulative).
    """

    def __init__(self, stop_sequences: Sequence[str]) -> None:
        self._stop_sequences = stop_sequences
        self._started = False
        self._blocks = 0
        # The open block's index and, for a tool_use block, the core's index of its call.
        self._open: tuple[int, int | None] | None = None
        self._sampled: list[bytes] = []
        self._finish_reason: int = common_pb2.FINISH_REASON_UNSPECIFIED
        self._usage = common_pb2.Usage()

    def events(self, message: inference_service_pb2.StreamChatCompletionResponse) -> list[JsonObject]:
        """The events one core message becomes."""
        events: list[JsonObject] = []
        if not self._started:
            self._started = True
            events.append({"type": "message_start", "message": self._start_message(message)})
            events.append({"type": "ping"})
        self._sampled.extend(entry.token for entry in message.logprobs)
        if message.delta.content:
            events.extend(self._text(message.delta.content))
        for call in message.delta.tool_calls:
            events.extend(self._tool_call(call))
        if message.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
            self._finish_reason = message.finish_reason
        if message.HasField("usage"):
            self._usage = message.usage
        return events

    def final_events(self) -> list[JsonObject]:
        """What follows the core's last message: the last block's end, the outcome and message_stop."""
        events = self._close_block()
        outcome = stop_outcome(self._finish_reason, sampled_text(self._sampled), self._stop_sequences)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": outcome.reason, "stop_sequence": outcome.sequence},
                "usage": usage_json(self._usage),
            }
        )
        events.append({"type": "message_stop"})
        return events

    def _start_message(self, message: inference_service_pb2.StreamChatCompletionResponse) -> JsonObject:
        return {
            **_message_head(message.id, message.model),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(message.prompt_usage),
        }

    def _text(self, text: str) -> list[JsonObject]:
        events: list[JsonObject] = []
        if self._open is None or self._open[1] is not None:
            events.extend(self._open_block({"type": "text", "text": ""}, None))
        delta = {"type": "text_delta", "text": text}
        events.append({"type": "content_block_delta", "index": self._blocks - 1, "delta": delta})
        return events

    def _tool_call(self, call: inference_service_pb2.ToolCallDelta) -> list[JsonObject]:
        events: list[JsonObject] = []
        if call.id:
            events.extend(self._open_block(_tool_use_block(call.id, call.name, {}), call.index))
        if call.arguments and self._open == (self._blocks - 1, call.index):
            delta = {"type": "input_json_delta", "partial_json": call.arguments}
            events.append({"type": "content_block_delta", "index": self._blocks - 1, "delta": delta})
        return events

    def _open_block(self, block: JsonObject, call_index: int | None) -> list[JsonObject]:
        events = self._close_block()
        self._open = (self._blocks, call_index)
        events.append({"type": "content_block_start", "index": self._blocks, "content_block": block})
        self._blocks += 1
        return events

    def _close_block(self) -> list[JsonObject]:
        if self._open is None:
            return []
        index, self._open = self._open[0], None
        return [{"type": "content_block_stop", "index": index}]


def _message_head(chat_id: str, model: str) -> JsonObject:
    return {"id": message_id(chat_id), "type": "message", "role": "assistant", "model": model}


def _tool_use_block(call_id: str, name: str, arguments: JsonObject) -> JsonObject:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _tool_input(arguments: str) -> JsonObject:
    """A call's arguments as an object; {} for a call cut short by max_tokens, whose JSON is unfinished."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
