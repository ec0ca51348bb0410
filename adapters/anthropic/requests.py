"""Anthropic Messages request bodies to inferno.v1 params, by way of the OpenAI chat body.

An Anthropic body is checked here and rewritten as the OpenAI chat body that means the same thing (system
prompt first, tool_result blocks as tool messages, tool_use blocks as tool_calls, input_schema as
parameters); the OpenAI parser then builds the ChatCompletionParams, so ranges and defaults stay the core's.
Errors name the Anthropic field (messages[1].content[0].tool_use_id); the sampling fields have the same
names in both APIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from inferno.errors import InfernoError, invalid_param
from inferno.v1 import inference_service_pb2

from ..openai.requests import optional_str, parse_chat_request, parse_tokenize_request, required_str

JsonObject = dict[str, Any]

_ROLES = ("user", "assistant")
# Blocks a client replays from earlier replies of a thinking model; nothing here reads them.
_SKIPPED_BLOCKS = ("thinking", "redacted_thinking")
_TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "none": "none"}


@dataclass(frozen=True)
class MessagesRequest:
    params: inference_service_pb2.ChatCompletionParams
    stream: bool
    # Matched against the sampled text to tell a stop sequence from the end of the turn (responses.py).
    stop_sequences: tuple[str, ...]


@dataclass(frozen=True)
class CountTokensRequest:
    """Without tools the Tokenize RPC counts the prompt; with tools only the chat RPC renders them into it."""

    tokenize: inference_service_pb2.TokenizeRequest | None
    chat: inference_service_pb2.ChatCompletionParams | None


def parse_messages_request(body: JsonObject) -> MessagesRequest:
    """A POST /v1/messages body."""
    if body.get("max_tokens") is None:
        raise invalid_param("max_tokens", "'max_tokens' is required")
    _check_thinking(body.get("thinking"))
    stop_sequences = _stop_sequences(body.get("stop_sequences"))
    chat = {
        **_chat_body(body),
        "max_tokens": body["max_tokens"],
        "stop": list(stop_sequences),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "top_k": body.get("top_k"),
        "stream": body.get("stream"),
        "user": _user_id(body.get("metadata")),
        # The sampled tokens are what tells which stop sequence ended the reply.
        "logprobs": bool(stop_sequences),
        # Extended thinking is not offered (a `thinking` request is refused), so a thinking model's reasoning
        # stays in the text, as it would with thinking off, rather than being split off and lost.
        "reasoning_format": "none",
    }
    parsed = parse_chat_request(chat)
    return MessagesRequest(parsed.params, parsed.stream, stop_sequences)


def parse_count_tokens_request(body: JsonObject) -> CountTokensRequest:
    """A POST /v1/messages/count_tokens body: a Messages body without the generation fields."""
    chat = _chat_body(body)
    if chat.get("tools"):
        return CountTokensRequest(None, parse_chat_request({**chat, "max_tokens": 1}).params)
    tokenize = {"model": chat["model"], "messages": chat["messages"]}
    return CountTokensRequest(parse_tokenize_request(tokenize), None)


def _chat_body(body: JsonObject) -> JsonObject:
    """The OpenAI chat fields a Messages body and a count_tokens body share."""
    chat: JsonObject = {
        "model": required_str(body.get("model"), "model"),
        "messages": [*_system(body.get("system")), *_messages(body.get("messages"))],
        "tools": _tools(body.get("tools")),
    }
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        chat["tool_choice"], parallel = _tool_choice(tool_choice)
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    return chat


def _system(value: Any) -> list[JsonObject]:
    if value is None:
        return []
    text = value if isinstance(value, str) else _text_blocks(value, "system")
    return [{"role": "system", "content": text}]


def _messages(value: Any) -> list[JsonObject]:
    if value is None:
        raise invalid_param("messages", "'messages' is required")
    if not isinstance(value, list) or not value:
        raise invalid_param("messages", "'messages' must be a non-empty array")
    messages: list[JsonObject] = []
    for i, message in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _type_error(param, 'an object like {"role": "user", "content": ...}')
        role = required_str(message.get("role"), f"{param}.role")
        if role not in _ROLES:
            raise invalid_param(f"{param}.role", f"'{param}.role' must be user or assistant, got {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif isinstance(content, list):
            messages.extend(_blocks_as_messages(role, content, f"{param}.content"))
        else:
            raise _type_error(f"{param}.content", "a string or an array of content blocks")
    return messages


def _blocks_as_messages(role: str, blocks: list[Any], param: str) -> list[JsonObject]:
    """One turn's blocks: tool_result blocks become tool messages (ahead of the turn's text, as Anthropic
    requires them first); text and tool_use blocks become one message with content and tool_calls."""
    texts: list[str] = []
    tool_calls: list[JsonObject] = []
    tool_messages: list[JsonObject] = []
    for j, block in enumerate(blocks):
        where = f"{param}[{j}]"
        kind = _block_type(block, where)
        if kind == "text":
            texts.append(required_str(block.get("text"), f"{where}.text"))
        elif kind == "tool_use" and role == "assistant":
            tool_calls.append(_tool_call(block, where))
        elif kind == "tool_result" and role == "user":
            tool_messages.append(_tool_message(block, where))
        elif kind not in _SKIPPED_BLOCKS:
            raise invalid_param(f"{where}.type", f"{kind!r} blocks in {role} messages are not supported")
    if not texts and not tool_calls and tool_messages:
        return tool_messages
    message: JsonObject = {"role": role, "content": "\n".join(texts)}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return [*tool_messages, message]


def _tool_call(block: JsonObject, param: str) -> JsonObject:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise _type_error(f"{param}.input", "an object")
    return {
        "id": required_str(block.get("id"), f"{param}.id"),
        "type": "function",
        "function": {
            "name": required_str(block.get("name"), f"{param}.name"),
            "arguments": json.dumps(arguments, ensure_ascii=False),
        },
    }


def _tool_message(block: JsonObject, param: str) -> JsonObject:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = _text_blocks(content, f"{param}.content")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise _type_error(f"{param}.is_error", "a boolean")
    return {
        "role": "tool",
        "tool_call_id": required_str(block.get("tool_use_id"), f"{param}.tool_use_id"),
        # The chat template has no place for the flag; the model reads it as part of the result.
        "content": f"Error: {text}" if is_error else text,
    }


def _text_blocks(value: Any, param: str) -> str:
    """An array of text blocks (system, tool_result content), joined by newlines."""
    if not isinstance(value, list):
        raise _type_error(param, "a string or an array of text blocks")
    texts: list[str] = []
    for j, block in enumerate(value):
        where = f"{param}[{j}]"
        kind = _block_type(block, where)
        if kind != "text":
            raise invalid_param(f"{where}.type", f"{kind!r} blocks are not supported here (only 'text')")
        texts.append(required_str(block.get("text"), f"{where}.text"))
    return "\n".join(texts)


def _block_type(block: Any, param: str) -> str:
    if not isinstance(block, dict):
        raise _type_error(param, 'a content block like {"type": "text", "text": "..."}')
    return required_str(block.get("type"), f"{param}.type")


def _tools(value: Any) -> list[JsonObject] | None:
    """Custom tools ({"name", "description"?, "input_schema"}) as OpenAI function tools."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error("tools", "an array of tools")
    tools: list[JsonObject] = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _type_error(param, 'an object like {"name": ..., "input_schema": {...}}')
        kind = optional_str(tool.get("type"), f"{param}.type")
        if kind not in (None, "custom"):
            raise invalid_param(f"{param}.type", f"server tools ({kind!r}) are not supported")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _type_error(f"{param}.input_schema", "a JSON schema object")
        function = {
            "name": required_str(tool.get("name"), f"{param}.name"),
            "description": optional_str(tool.get("description"), f"{param}.description"),
            "parameters": schema,
        }
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> tuple[str | JsonObject, bool | None]:
    """{"type": "auto" | "any" | "none"} or {"type": "tool", "name"}, with disable_parallel_tool_use, as
    OpenAI's tool_choice and parallel_tool_calls."""
    if not isinstance(value, dict):
        raise _type_error("tool_choice", 'an object like {"type": "auto"}')
    kind = required_str(value.get("type"), "tool_choice.type")
    disable_parallel = value.get("disable_parallel_tool_use")
    if disable_parallel is not None and not isinstance(disable_parallel, bool):
        raise _type_error("tool_choice.disable_parallel_tool_use", "a boolean")
    parallel = None if disable_parallel is None else not disable_parallel
    if kind == "tool":
        name = required_str(value.get("name"), "tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    if kind not in _TOOL_CHOICE_MODES:
        raise invalid_param("tool_choice.type", "'tool_choice.type' must be auto, any, tool or none")
    return _TOOL_CHOICE_MODES[kind], parallel


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _type_error("stop_sequences", "an array of strings")
    for k, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise _type_error(f"stop_sequences[{k}]", "a non-empty string")
    return tuple(value)


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _type_error("metadata", 'an object like {"user_id": "..."}')
    return optional_str(metadata.get("user_id"), "metadata.user_id")


def _check_thinking(value: Any) -> None:
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "disabled":
        return
    if not isinstance(kind, str):
        raise _type_error("thinking", 'an object like {"type": "disabled"}')
    raise invalid_param("thinking.type", f"extended thinking ({kind!r}) is not supported")


def _type_error(param: str, expected: str) -> InfernoError:
    return invalid_param(param, f"'{param}' must be {expected}")
