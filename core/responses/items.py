"""Responses items and chat messages: a conversation of items as the chat messages a template renders, and
the ids items carry."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from inferno.errors import invalid_param
from inferno.v1 import inference_service_pb2 as chat_pb
from inferno.v1 import response_service_pb2 as pb

_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def with_ids(items: Iterable[pb.ResponseItem]) -> list[pb.ResponseItem]:
    """Copies of items, each with an id (a new one where the caller sent none); an item without content is
    refused, naming it."""
    named: list[pb.ResponseItem] = []
    for i, item in enumerate(items):
        kind = item.WhichOneof("item")
        if kind is None:
            raise invalid_param(
                f"input[{i}]", f"'input[{i}]' is no message, function_call or function_call_output"
            )
        copy = pb.ResponseItem()
        copy.CopyFrom(item)
        copy.id = copy.id or new_id(_ID_PREFIXES[kind])
        named.append(copy)
    return named


def chat_messages(instructions: str, items: Iterable[pb.ResponseItem]) -> list[chat_pb.ChatMessage]:
    """The conversation as chat messages: instructions as the system message in front; a model's function
    calls join the assistant message they follow; reasoning is not sent back (templates drop it)."""
    messages: list[chat_pb.ChatMessage] = []
    if instructions:
        messages.append(chat_pb.ChatMessage(role="system", content=instructions))
    for item in items:
        kind = item.WhichOneof("item")
        if kind == "message":
            text = "\n".join(part.text for part in item.message.content)
            messages.append(chat_pb.ChatMessage(role=item.message.role, content=text))
        elif kind == "function_call":
            call = item.function_call
            tool_call = chat_pb.ToolCall(
                id=call.call_id,
                type="function",
                function=chat_pb.FunctionCall(name=call.name, arguments=call.arguments),
            )
            previous = messages[-1] if messages else None
            if previous is not None and previous.role == "assistant" and not previous.tool_call_id:
                previous.tool_calls.append(tool_call)
            else:
                messages.append(chat_pb.ChatMessage(role="assistant", tool_calls=[tool_call]))
        elif kind == "function_call_output":
            output = item.function_call_output
            messages.append(
                chat_pb.ChatMessage(role="tool", content=output.output, tool_call_id=output.call_id)
            )
    return messages
