"""The OpenAPI path items of the Anthropic Messages routes, merged into adapters/openapi.py's document.

Bodies describe what requests.py accepts (objects stay open: unknown fields are ignored). Errors are
Anthropic's shape, which also carries the seed's code and details.
"""

from __future__ import annotations

from ..openapi_schema import STRING_OR_NULL, Schema

_TEXT_BLOCK: Schema = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_TEXT_BLOCKS: Schema = {"type": "array", "items": _TEXT_BLOCK}
_TOOL_USE_BLOCK: Schema = {
    "type": "object",
    "required": ["type", "id", "name"],
    "properties": {
        "type": {"const": "tool_use"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "input": {"type": "object"},
    },
}
_TOOL_RESULT_BLOCK: Schema = {
    "type": "object",
    "required": ["type", "tool_use_id"],
    "properties": {
        "type": {"const": "tool_result"},
        "tool_use_id": {"type": "string"},
        "content": {"oneOf": [{"type": "string"}, _TEXT_BLOCKS, {"type": "null"}]},
        "is_error": {"type": ["boolean", "null"]},
    },
}
_MESSAGE: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["user", "assistant"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"oneOf": [_TEXT_BLOCK, _TOOL_USE_BLOCK, _TOOL_RESULT_BLOCK]}},
            ]
        },
    },
}
_TOOL: Schema = {
    "type": "object",
    "required": ["name", "input_schema"],
    "properties": {
        "type": {"enum": ["custom", None]},
        "name": {"type": "string"},
        "description": STRING_OR_NULL,
        "input_schema": {"type": "object"},
    },
}
_TOOL_CHOICE: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["auto", "any", "tool", "none"]},
        "name": {"type": "string"},
        "disable_parallel_tool_use": {"type": "boolean"},
    },
}
_PROMPT: Schema = {
    "model": {"type": "string"},
    "system": {"oneOf": [{"type": "string"}, _TEXT_BLOCKS, {"type": "null"}]},
    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    "tools": {"type": ["array", "null"], "items": _TOOL},
    "tool_choice": {"oneOf": [_TOOL_CHOICE, {"type": "null"}]},
}
_MESSAGES_BODY: Schema = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        **_PROMPT,
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**32 - 1},
        "stop_sequences": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}},
        "stream": {"type": ["boolean", "null"]},
        "temperature": {"type": ["number", "null"]},
        "top_p": {"type": ["number", "null"]},
        "top_k": {"type": ["integer", "null"], "minimum": -1, "maximum": 2**32 - 1},
        "metadata": {"type": ["object", "null"], "properties": {"user_id": STRING_OR_NULL}},
        "thinking": {
            "type": ["object", "null"],
            "required": ["type"],
            "properties": {"type": {"const": "disabled"}},
        },
    },
}
_COUNT_TOKENS_BODY: Schema = {"type": "object", "required": ["model", "messages"], "properties": _PROMPT}
_ERROR: Schema = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message", "code", "details"],
            "properties": {
                "type": {"type": "string", "description": "Anthropic's error type, such as not_found_error"},
                "message": {"type": "string"},
                "code": {"type": "string", "description": "the seed's error code"},
                "details": {"type": "object"},
            },
        },
    },
}


def _operation(operation_id: str, summary: str, body: Schema) -> Schema:
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "operationId": operation_id,
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {}}}},
            "4XX": {"description": "the request was refused", **error},
            "5XX": {"description": "the server failed", **error},
        },
    }


ANTHROPIC_PATHS: Schema = {
    "/v1/messages": {
        "post": _operation(
            "messages",
            "Anthropic Messages: a chat completion (Anthropic's SSE events when stream is true)",
            _MESSAGES_BODY,
        )
    },
    "/v1/messages/count_tokens": {
        "post": _operation(
            "messages_count_tokens", "Anthropic token counting: the prompt's tokens", _COUNT_TOKENS_BODY
        )
    },
}
