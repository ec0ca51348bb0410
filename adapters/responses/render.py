"""inferno.v1 Responses messages to OpenAI's JSON: the response object, its items and the input item list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from inferno.v1 import common_pb2, inference_service_pb2
from inferno.v1 import response_service_pb2 as pb

JsonObject = dict[str, Any]

_STATUSES = {
    pb.RESPONSE_STATUS_QUEUED: "queued",
    pb.RESPONSE_STATUS_IN_PROGRESS: "in_progress",
    pb.RESPONSE_STATUS_COMPLETED: "completed",
    pb.RESPONSE_STATUS_INCOMPLETE: "incomplete",
    pb.RESPONSE_STATUS_FAILED: "failed",
    pb.RESPONSE_STATUS_CANCELLED: "cancelled",
}
_ITEM_STATUSES = {
    pb.RESPONSE_ITEM_STATUS_IN_PROGRESS: "in_progress",
    pb.RESPONSE_ITEM_STATUS_COMPLETED: "completed",
    pb.RESPONSE_ITEM_STATUS_INCOMPLETE: "incomplete",
}
_PART_TYPES = {
    pb.RESPONSE_CONTENT_TYPE_INPUT_TEXT: "input_text",
    pb.RESPONSE_CONTENT_TYPE_OUTPUT_TEXT: "output_text",
}
_TOOL_CHOICES = {
    inference_service_pb2.TOOL_CHOICE_MODE_NONE: "none",
    inference_service_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    inference_service_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
}


def status_name(status: pb.ResponseStatus.ValueType) -> str:
    return _STATUSES.get(status, "in_progress")


def response_json(response: pb.Response) -> JsonObject:
    """A response object, its settings echoed as OpenAI echoes them."""
    params, chat = response.params, response.params.chat
    sampling = chat.sampling
    finished = response.status not in (pb.RESPONSE_STATUS_QUEUED, pb.RESPONSE_STATUS_IN_PROGRESS)
    return {
        "id": response.id,
        "object": "response",
        "created_at": response.created_at,
        "completed_at": response.completed_at or None,
        "status": status_name(response.status),
        "background": params.background,
        "error": (
            {"code": response.error.code, "message": response.error.message}
            if response.HasField("error")
            else None
        ),
        "incomplete_details": (
            {"reason": response.incomplete_reason} if response.incomplete_reason else None
        ),
        "instructions": params.instructions or None,
        "max_output_tokens": chat.limits.max_tokens if chat.limits.HasField("max_tokens") else None,
        "metadata": dict(params.metadata),
        "model": response.model,
        "output": [item_json(item) for item in response.output],
        "parallel_tool_calls": chat.parallel_tool_calls if chat.HasField("parallel_tool_calls") else True,
        "previous_response_id": params.previous_response_id or None,
        "reasoning": {"effort": None, "summary": None},
        "store": params.store,
        "temperature": sampling.temperature if sampling.HasField("temperature") else 1.0,
        "text": {"format": _text_format_json(chat.response_format)},
        "tool_choice": _tool_choice_json(chat.tool_choice),
        "tools": [_tool_json(tool) for tool in chat.tools],
        "top_p": sampling.top_p if sampling.HasField("top_p") else 1.0,
        "truncation": "disabled",
        "usage": usage_json(response.usage) if finished and response.HasField("usage") else None,
        "user": chat.user or None,
    }


def usage_json(usage: common_pb2.Usage) -> JsonObject:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def item_json(item: pb.ResponseItem) -> JsonObject:
    """An input or output item; an item still in progress has no text yet (as in output_item.added)."""
    kind = item.WhichOneof("item")
    status = _ITEM_STATUSES.get(item.status, "completed")
    opening = item.status == pb.RESPONSE_ITEM_STATUS_IN_PROGRESS
    if kind == "message":
        content = [] if opening else [content_part_json(part) for part in item.message.content]
        return {
            "type": "message",
            "id": item.id,
            "status": status,
            "role": item.message.role,
            "content": content,
        }
    if kind == "function_call":
        call = item.function_call
        return {
            "type": "function_call",
            "id": item.id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
            "status": status,
        }
    if kind == "function_call_output":
        output = item.function_call_output
        return {
            "type": "function_call_output",
            "id": item.id,
            "call_id": output.call_id,
            "output": output.output,
            "status": status,
        }
    content = [] if opening else [reasoning_part_json(item.reasoning.text)]
    return {"type": "reasoning", "id": item.id, "summary": [], "content": content, "status": status}


def content_part_json(part: pb.ResponseContentPart) -> JsonObject:
    kind = _PART_TYPES.get(part.type, "input_text")
    if kind == "output_text":
        return {"type": kind, "text": part.text, "annotations": [], "logprobs": []}
    return {"type": kind, "text": part.text}


def reasoning_part_json(text: str) -> JsonObject:
    return {"type": "reasoning_text", "text": text}


def input_items_json(items: Sequence[pb.ResponseItem], has_more: bool) -> JsonObject:
    data = [item_json(item) for item in items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def deleted_json(response_id: str) -> JsonObject:
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def _text_format_json(response_format: inference_service_pb2.ResponseFormat) -> JsonObject:
    if response_format.type == inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if response_format.type == inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        schema = json.loads(response_format.json_schema_text) if response_format.json_schema_text else {}
        return {"type": "json_schema", "name": response_format.schema_name, "schema": schema, "strict": True}
    return {"type": "text"}


def _tool_choice_json(choice: inference_service_pb2.ToolChoice) -> str | JsonObject:
    if choice.WhichOneof("choice") == "function_name":
        return {"type": "function", "name": choice.function_name}
    return _TOOL_CHOICES.get(choice.mode, "auto")


def _tool_json(tool: inference_service_pb2.Tool) -> JsonObject:
    function = tool.function
    parameters = json.loads(function.parameters_json) if function.parameters_json else None
    return {
        "type": "function",
        "name": function.name,
        "description": function.description or None,
        "parameters": parameters,
        "strict": function.strict,
    }
