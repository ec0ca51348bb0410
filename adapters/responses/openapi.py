"""The OpenAPI path items of the Responses routes, merged into adapters/openapi.py's document.

Bodies describe what requests.py accepts (objects stay open: unknown fields are ignored). Errors are the
seed's body (the document's Error schema).
"""

from __future__ import annotations

from ..openapi_schema import BOOL_OR_NULL, ERROR_REF, NUMBER_OR_NULL, STRING_OR_NULL, UINT32_OR_NULL, Schema

_TEXT_PART: Schema = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": {"type": "string"}},
}
_MESSAGE_ITEM: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "type": {"const": "message"},
        "id": {"type": "string"},
        "role": {"enum": ["user", "assistant", "system", "developer"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]},
    },
}
_FUNCTION_CALL_ITEM: Schema = {
    "type": "object",
    "required": ["type", "call_id", "name", "arguments"],
    "properties": {
        "type": {"const": "function_call"},
        "id": {"type": "string"},
        "call_id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "string"},
    },
}
_FUNCTION_CALL_OUTPUT_ITEM: Schema = {
    "type": "object",
    "required": ["type", "call_id", "output"],
    "properties": {
        "type": {"const": "function_call_output"},
        "id": {"type": "string"},
        "call_id": {"type": "string"},
        "output": {"oneOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]},
    },
}
_REASONING_ITEM: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"const": "reasoning"},
        "id": {"type": "string"},
        "content": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["text"],
                "properties": {"type": {"const": "reasoning_text"}, "text": {"type": "string"}},
            },
        },
    },
}
_TOOL: Schema = {
    "type": "object",
    "required": ["type", "name"],
    "properties": {
        "type": {"const": "function"},
        "name": {"type": "string"},
        "description": STRING_OR_NULL,
        "parameters": {"type": "object"},
        "strict": BOOL_OR_NULL,
    },
}
_CREATE_BODY: Schema = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string"},
        "input": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            _MESSAGE_ITEM,
                            _FUNCTION_CALL_ITEM,
                            _FUNCTION_CALL_OUTPUT_ITEM,
                            _REASONING_ITEM,
                        ]
                    },
                },
            ]
        },
        "instructions": STRING_OR_NULL,
        "previous_response_id": STRING_OR_NULL,
        "store": BOOL_OR_NULL,
        "background": BOOL_OR_NULL,
        "stream": BOOL_OR_NULL,
        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "max_output_tokens": UINT32_OR_NULL,
        "temperature": NUMBER_OR_NULL,
        "top_p": NUMBER_OR_NULL,
        "tools": {"type": ["array", "null"], "items": _TOOL},
        "tool_choice": {
            "oneOf": [
                {"enum": ["none", "auto", "required"]},
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
                },
            ]
        },
        "parallel_tool_calls": BOOL_OR_NULL,
        "text": {
            "type": ["object", "null"],
            "properties": {
                "format": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["text", "json_object", "json_schema"]},
                        "name": {"type": "string"},
                        "schema": {"type": "object"},
                        "strict": BOOL_OR_NULL,
                    },
                }
            },
        },
        "reasoning_format": {"enum": ["auto", "none", "deepseek", None]},
        "user": STRING_OR_NULL,
    },
}
_RESPONSE_ID: Schema = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _operation(
    operation_id: str, summary: str, body: Schema | None = None, parameters: list[Schema] | None = None
) -> Schema:
    error = {"content": {"application/json": {"schema": ERROR_REF}}}
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [_RESPONSE_ID, *(parameters or [])] if body is None else [],
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {}}}},
            "4XX": {"description": "the request was refused", **error},
            "5XX": {"description": "the server failed", **error},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        del operation["parameters"]
    return operation


RESPONSES_PATHS: Schema = {
    "/v1/responses": {
        "post": _operation(
            "responses_create",
            "OpenAI Responses: generate a response (semantic SSE events when stream is true)",
            body=_CREATE_BODY,
        )
    },
    "/v1/responses/{response_id}": {
        "get": _operation("responses_get", "A stored response (the caller's own)"),
        "delete": _operation("responses_delete", "Delete a stored response"),
    },
    "/v1/responses/{response_id}/input_items": {
        "get": _operation(
            "responses_input_items",
            "The input items of a stored response",
            parameters=[
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
            ],
        )
    },
    "/v1/responses/{response_id}/cancel": {
        "post": _operation("responses_cancel", "Cancel a background response that has not finished")
    },
}
