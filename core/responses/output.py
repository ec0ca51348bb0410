"""A response's output items, built from a chat reply as it streams (or whole): reasoning, the answer
message and function calls, each an item with its own id, in the order the model wrote them."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferno.core.responses.items import new_id
from inferno.v1 import inference_service_pb2 as chat_pb
from inferno.v1 import response_service_pb2 as pb

_OUTPUT_TEXT = pb.RESPONSE_CONTENT_TYPE_OUTPUT_TEXT


@dataclass
class _Item:
    item: pb.ResponseItem
    text: str = ""
    # Its first delta (which carries the item) has been made.
    opened: bool = False


@dataclass
class OutputBuilder:
    """Feed it a reply's pieces; each returns the deltas they make, and items() the output so far."""

    _items: list[_Item] = field(default_factory=list)
    _reasoning: int | None = None
    _answer: int | None = None
    # Tool call index in the chat reply -> output index.
    _calls: dict[int, int] = field(default_factory=dict)

    def reasoning(self, text: str) -> list[pb.ResponseOutputDelta]:
        if not text:
            return []
        if self._reasoning is None:
            self._reasoning = self._add(pb.ResponseItem(id=new_id("rs"), reasoning=pb.ResponseReasoning()))
        return [self._append(self._reasoning, text)]

    def answer(self, text: str) -> list[pb.ResponseOutputDelta]:
        if not text:
            return []
        if self._answer is None:
            part = pb.ResponseContentPart(type=_OUTPUT_TEXT)
            message = pb.ResponseMessage(role="assistant", content=[part])
            self._answer = self._add(pb.ResponseItem(id=new_id("msg"), message=message))
        return [self._append(self._answer, text)]

    def call(self, delta: chat_pb.ToolCallDelta) -> list[pb.ResponseOutputDelta]:
        """A piece of a tool call: its first piece (with its id and name) starts a function_call item."""
        if delta.index not in self._calls:
            call = pb.ResponseFunctionCall(call_id=delta.id, name=delta.name)
            self._calls[delta.index] = self._add(pb.ResponseItem(id=new_id("fc"), function_call=call))
        index = self._calls[delta.index]
        if not delta.arguments:
            return [self._opening(index)] if delta.id else []
        return [self._append(index, delta.arguments)]

    def message(self, message: chat_pb.ChatMessage) -> None:
        """A whole reply."""
        self.reasoning(message.reasoning_content)
        self.answer(message.content)
        for i, call in enumerate(message.tool_calls):
            self.call(
                chat_pb.ToolCallDelta(
                    index=i, id=call.id, name=call.function.name, arguments=call.function.arguments
                )
            )

    def items(self, status: pb.ResponseItemStatus.ValueType) -> list[pb.ResponseItem]:
        """The output items with their whole text, each with status."""
        return [_finished(entry, status) for entry in self._items]

    def _add(self, item: pb.ResponseItem) -> int:
        item.status = pb.RESPONSE_ITEM_STATUS_IN_PROGRESS
        self._items.append(_Item(item))
        return len(self._items) - 1

    def _opening(self, index: int) -> pb.ResponseOutputDelta:
        return self._append(index, "")

    def _append(self, index: int, text: str) -> pb.ResponseOutputDelta:
        entry = self._items[index]
        delta = pb.ResponseOutputDelta(output_index=index, text=text)
        if not entry.opened:
            entry.opened = True
            delta.added.CopyFrom(entry.item)
        entry.text += text
        return delta


def _finished(entry: _Item, status: pb.ResponseItemStatus.ValueType) -> pb.ResponseItem:
    item = pb.ResponseItem()
    item.CopyFrom(entry.item)
    item.status = status
    kind = item.WhichOneof("item")
    if kind == "reasoning":
        item.reasoning.text = entry.text
    elif kind == "message":
        item.message.content[0].text = entry.text
    elif kind == "function_call":
        item.function_call.arguments = entry.text
    return item
