"""OpenAI Responses request bodies to inferno.v1 ResponseParams.

The generation settings are read by the chat completions parser (an OpenAI chat body is built from the
Responses fields: max_output_tokens is max_tokens, text.format is response_format, tools lose their
Responses flattening), so they are checked and defaulted exactly as for /v1/chat/completions. Input items
become ResponseItems; the core turns the conversation into chat messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError, invalid_param
from inferno.v1 import response_service_pb2 as pb

from ..openai.requests import ascii_integer, optional_str, parse_chat_request, required_str, uint_field

JsonObject = dict[str, Any]

_ROLES = ("user", "assistant", "system", "developer")
# Chat fields a Responses body may carry as they are: OpenAI's own, and the sampling extensions the chat
# endpoint takes (top_k, min_p, seed and the rest).
_CHAT_FIELDS = (
    "model",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "logit_bias",
    "stop",
    "ignore_eos",
    "parallel_tool_calls",
    "user",
    "reasoning_format",
)
_PLACEHOLDER_MESSAGES = [{"role": "user", "content": ""}]


@dataclass(frozen=True)
class ResponsesRequest:
    params: pb.ResponseParams
    stream: bool


def parse_responses_request(body: JsonObject) -> ResponsesRequest:
    """A POST /v1/responses body."""
    chat_body: JsonObject = {name: body[name] for name in _CHAT_FIELDS if name in body}
    chat_body["model"] = required_str(body.get("model"), "model")
    # The chat parser wants messages; the conversation travels as input items instead.
    chat_body["messages"] = _PLACEHOLDER_MESSAGES
    if body.get("max_output_tokens") is not None:
        chat_body["max_tokens"] = uint_field(body["max_output_tokens"], "max_output_tokens")
    chat_body["tools"] = _tools(body.get("tools"))
    if body.get("tool_choice") is not None:
        chat_body["tool_choice"] = _tool_choice(body["tool_choice"])
    chat_body["response_format"] = _text_format(body.get("text"))
    chat_body["stream"] = body.get("stream")
    chat = parse_chat_request(chat_body)
    del chat.params.messages[:]
    params = pb.ResponseParams(
        chat=chat.params,
        input=_input(body.get("input")),
        instructions=optional_str(body.get("instructions"), "instructions") or "",
        previous_response_id=optional_str(body.get("previous_response_id"), "previous_response_id") or "",
        background=_optional_bool(body.get("background"), "background") or False,
        metadata=_metadata(body.get("metadata")),
    )
    store = _optional_bool(body.get("store"), "store")
    if store is not None:
        params.store = store
    _reject_unsupported(body)
    return ResponsesRequest(params, chat.stream)


def parse_input_items_query(request: web.Request) -> pb.ListResponseInputItemsRequest:
    """GET /v1/responses/{id}/input_items?limit=&order=asc|desc&after="""
    query = request.query
    message = pb.ListResponseInputItemsRequest(
        response_id=request.match_info["response_id"], after=query.get("after", "")
    )
    if "limit" in query:
        limit = ascii_integer(query["limit"])
        if limit is None:
            raise invalid_param("limit", "'limit' must be an integer from 1 to 100")
        message.limit = uint_field(limit, "limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_param("order", "'order' must be asc or desc")
    message.ascending = order == "asc"
    return message


def _input(value: Any) -> list[pb.ResponseItem]:
    """A string (one user message) or an array of items."""
    if value is None:
        raise invalid_param("input", "'input' is required")
    if isinstance(value, str):
        return [_message_item("user", [_part(pb.RESPONSE_CONTENT_TYPE_INPUT_TEXT, value)])]
    if not isinstance(value, list) or not value:
        raise invalid_param("input", "'input' must be a string or a non-empty array of items")
    return [_item(item, f"input[{i}]") for i, item in enumerate(value)]


def _item(value: Any, param: str) -> pb.ResponseItem:
    if not isinstance(value, dict):
        raise _type_error(param, "an object")
    kind = value.get("type", "message")
    item_id = optional_str(value.get("id"), f"{param}.id") or ""
    if kind == "message":
        role = required_str(value.get("role"), f"{param}.role")
        if role not in _ROLES:
            raise invalid_param(f"{param}.role", f"'{param}.role' must be one of {', '.join(_ROLES)}")
        item = _message_item(role, _content(value.get("content"), role, f"{param}.content"))
    elif kind == "function_call":
        call = pb.ResponseFunctionCall(
            call_id=required_str(value.get("call_id"), f"{param}.call_id"),
            name=required_str(value.get("name"), f"{param}.name"),
            arguments=required_str(value.get("arguments"), f"{param}.arguments"),
        )
        item = pb.ResponseItem(function_call=call)
    elif kind == "function_call_output":
        output = pb.ResponseFunctionCallOutput(
            call_id=required_str(value.get("call_id"), f"{param}.call_id"),
            output=_output_text(value.get("output"), f"{param}.output"),
        )
        item = pb.ResponseItem(function_call_output=output)
    elif kind == "reasoning":
        item = pb.ResponseItem(reasoning=pb.ResponseReasoning(text=_reasoning_text(value, param)))
    else:
        raise invalid_param(
            f"{param}.type",
            f"input items of type {kind!r} are not supported (message, function_call, "
            "function_call_output and reasoning are)",
        )
    item.id = item_id
    return item


def _message_item(role: str, parts: list[pb.ResponseContentPart]) -> pb.ResponseItem:
    return pb.ResponseItem(message=pb.ResponseMessage(role=role, content=parts))


def _part(kind: pb.ResponseContentType.ValueType, text: str) -> pb.ResponseContentPart:
    return pb.ResponseContentPart(type=kind, text=text)


_TEXT_PARTS = {
    "input_text": pb.RESPONSE_CONTENT_TYPE_INPUT_TEXT,
    "output_text": pb.RESPONSE_CONTENT_TYPE_OUTPUT_TEXT,
    "text": pb.RESPONSE_CONTENT_TYPE_INPUT_TEXT,
}


def _content(value: Any, role: str, param: str) -> list[pb.ResponseContentPart]:
    """A string or an array of input_text / output_text parts."""
    default = (
        pb.RESPONSE_CONTENT_TYPE_OUTPUT_TEXT if role == "assistant" else pb.RESPONSE_CONTENT_TYPE_INPUT_TEXT
    )
    if isinstance(value, str):
        return [_part(default, value)]
    if not isinstance(value, list):
        raise _type_error(param, "a string or an array of content parts")
    parts: list[pb.ResponseContentPart] = []
    for j, part in enumerate(value):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _type_error(where, 'an object like {"type": "input_text", "text": "..."}')
        kind = part.get("type")
        if kind not in _TEXT_PARTS:
            raise invalid_param(
                f"{where}.type", f"content parts of type {kind!r} are not supported (only text)"
            )
        parts.append(_part(_TEXT_PARTS[kind], required_str(part.get("text"), f"{where}.text")))
    return parts


def _output_text(value: Any, param: str) -> str:
    """A function call's output: a string, or an array of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(part.text for part in _content(value, "user", param))
    raise _type_error(param, "a string or an array of text parts")


def _reasoning_text(value: JsonObject, param: str) -> str:
    """A reasoning item sent back: its content's reasoning_text parts (summaries are not kept)."""
    content = value.get("content")
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _type_error(f"{param}.content", "an array of reasoning_text parts")
    texts: list[str] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _type_error(
                f"{param}.content[{j}]", 'an object like {"type": "reasoning_text", "text": ...}'
            )
        texts.append(required_str(part.get("text"), f"{param}.content[{j}].text"))
    return "\n".join(texts)


def _tools(value: Any) -> list[JsonObject] | None:
    """Responses function tools ({"type": "function", "name", "parameters", ...}) as chat tools."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error("tools", "an array of tools or null")
    tools: list[JsonObject] = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _type_error(param, 'an object like {"type": "function", "name": ...}')
        if tool.get("type") != "function":
            raise invalid_param(
                f"{param}.type", f"tools of type {tool.get('type')!r} are not supported (function is)"
            )
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        function["name"] = required_str(tool.get("name"), f"{param}.name")
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> str | JsonObject:
    """ "none", "auto", "required" or {"type": "function", "name"}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": required_str(value.get("name"), "tool_choice.name")}}
    raise _type_error("tool_choice", 'none, auto, required or {"type": "function", "name": ...}')


def _text_format(value: Any) -> JsonObject | None:
    """text.format ({"type": "text" | "json_object" | "json_schema", "name", "schema"}) as response_format."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error("text", 'an object like {"format": {"type": "json_schema", ...}}')
    text_format = value.get("format")
    if text_format is None:
        return None
    if not isinstance(text_format, dict):
        raise _type_error("text.format", 'an object like {"type": "json_schema", "name", "schema"}')
    kind = text_format.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid_param("text.format.type", "'text.format.type' must be text, json_object or json_schema")
    if kind != "json_schema":
        return {"type": kind}
    schema = text_format.get("schema")
    if not isinstance(schema, dict):
        raise _type_error("text.format.schema", "a JSON schema object")
    return {"type": "json_schema", "json_schema": {"name": text_format.get("name"), "schema": schema}}


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _type_error("metadata", "an object of strings")
    return dict(value)


def _reject_unsupported(body: JsonObject) -> None:
    if body.get("conversation") is not None:
        raise invalid_param("conversation", "'conversation' is not supported; use previous_response_id")
    if body.get("prompt") is not None:
        raise invalid_param("prompt", "stored prompt templates ('prompt') are not supported")


def _optional_bool(value: Any, param: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _type_error(param, "a boolean or null")
    return value


def _type_error(param: str, expected: str) -> InfernoError:
    return invalid_param(param, f"'{param}' must be {expected}")
