"""The OpenAPI 3.1 document of the gateway's REST routes, served at GET /openapi.json.

Request bodies describe what adapters/openai/requests.py and the other route modules accept; every field is
optional in JSON Schema terms unless the parser requires it, and unknown fields are ignored by the gateway,
so objects stay open. Every error is the seed's body (the Error schema), with the status of its code in
inferno.errors. /ws is a WebSocket and is not described here.
"""

from __future__ import annotations

from aiohttp import web

from .anthropic.openapi import ANTHROPIC_PATHS
from .openai.compat_openapi import GUIDED_PROPERTIES, root_tokenizer_paths
from .openapi_schema import (
    BOOL_OR_NULL,
    ERROR_REF,
    NUMBER_OR_NULL,
    STRING_OR_NULL,
    UINT32,
    UINT32_OR_NULL,
    Schema,
)
from .response_schemas import RESPONSE_SCHEMAS, component
from .responses.openapi import RESPONSES_PATHS

# The core caps what it generates at the model's context; the sequences one request may create (prompts x n,
# best_of) are capped by the core's max_sequences_per_request setting.
_MAX_TOKENS = UINT32_OR_NULL
_COUNT: Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**32 - 1}
_STOP: Schema = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]
}
_PROMPT: Schema = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": UINT32},
        {"type": "array", "items": {"type": "array", "items": UINT32}},
    ]
}
_ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "details"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "OpenAI's name for details.param"},
                "details": {
                    "type": "object",
                    "description": "invalid_parameters errors name the field in param",
                },
            },
        }
    },
}
_MESSAGE: Schema = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "tool", "developer"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "null"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                    },
                },
            ]
        },
        "name": STRING_OR_NULL,
        "tool_call_id": STRING_OR_NULL,
        "tool_calls": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["function"],
                "properties": {
                    "id": STRING_OR_NULL,
                    "type": STRING_OR_NULL,
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "arguments": {"type": ["string", "object"]},
                        },
                    },
                },
            },
        },
    },
}
_TOOL: Schema = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "description": STRING_OR_NULL,
                "strict": BOOL_OR_NULL,
                "parameters": {"type": "object"},
            },
        },
    },
}
_GENERATION: Schema = {
    "temperature": NUMBER_OR_NULL,
    "top_p": NUMBER_OR_NULL,
    "min_p": NUMBER_OR_NULL,
    "presence_penalty": NUMBER_OR_NULL,
    "frequency_penalty": NUMBER_OR_NULL,
    "repetition_penalty": NUMBER_OR_NULL,
    "top_k": {"type": ["integer", "null"], "minimum": -1, "maximum": 2**32 - 1},
    "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**64 - 1},
    "logit_bias": {
        "type": ["object", "null"],
        "propertyNames": {"pattern": "^[0-9]+$"},
        "additionalProperties": {"type": "number"},
    },
    "max_tokens": _MAX_TOKENS,
    "max_completion_tokens": _MAX_TOKENS,
    "stop": _STOP,
    "ignore_eos": BOOL_OR_NULL,
    **GUIDED_PROPERTIES,
    "stream": BOOL_OR_NULL,
    "stream_options": {"type": ["object", "null"], "properties": {"include_usage": BOOL_OR_NULL}},
    "user": STRING_OR_NULL,
    "n": _COUNT,
}
_CHAT: Schema = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        **_GENERATION,
        "logprobs": BOOL_OR_NULL,
        "top_logprobs": UINT32_OR_NULL,
        "response_format": {
            "type": ["object", "null"],
            "required": ["type"],
            "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object",
                    "required": ["schema"],
                    "properties": {"name": {"type": "string"}, "schema": {"type": "object"}},
                },
            },
        },
        "tools": {"type": ["array", "null"], "items": _TOOL},
        "tool_choice": {
            "oneOf": [
                {"enum": ["none", "auto", "required"]},
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["type", "function"],
                    "properties": {
                        "type": {"const": "function"},
                        "function": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        },
                    },
                },
            ]
        },
        "parallel_tool_calls": BOOL_OR_NULL,
        "reasoning_format": {"enum": ["auto", "none", "deepseek", None]},
    },
}
_COMPLETION: Schema = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": {"type": "string"},
        "prompt": _PROMPT,
        **_GENERATION,
        "logprobs": {"type": ["integer", "boolean", "null"], "minimum": 0, "maximum": 2**32 - 1},
        "echo": BOOL_OR_NULL,
        "best_of": _COUNT,
        "suffix": STRING_OR_NULL,
    },
}
_MODEL_ID = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_FLAG_QUERY = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}


def _object(required: list[str], properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


def _operation(
    operation_id: str,
    summary: str,
    ok: int = 200,
    body: Schema | None = None,
    parameters: list[Schema] | None = None,
    content_type: str = "application/json",
    response: Schema | None = None,
    events: Schema | None = None,
) -> Schema:
    """One operation: its success response and the seed's error body for every 4xx and 5xx.

    response is the success body's schema; events, for a route that streams when asked, each SSE event's."""
    success: Schema = {content_type: {"schema": response or {}}}
    if events is not None:
        # OpenAPI 3.1 cannot describe the events of a stream (3.2's itemSchema can): x-event-schema does.
        # A failure after the stream began is one Error event, then [DONE].
        success["text/event-stream"] = {
            "schema": {"type": "string", "description": "data: <event JSON> lines, then data: [DONE]"},
            "x-event-schema": {"oneOf": [events, ERROR_REF]},
        }
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            str(ok): {"description": "success", "content": success},
            "4XX": {
                "description": "the request was refused",
                "content": {"application/json": {"schema": ERROR_REF}},
            },
            "5XX": {
                "description": "the server failed",
                "content": {"application/json": {"schema": ERROR_REF}},
            },
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_id(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Inferno gateway",
        "version": "1",
        "description": "OpenAI-compatible inference, model management, API keys and conversion jobs.",
    },
    "components": {
        "schemas": {"Error": _ERROR_SCHEMA, **RESPONSE_SCHEMAS},
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "paths": {
        "/v1/chat/completions": {
            "post": _operation(
                "chat",
                "Chat completion (SSE when stream is true)",
                body=_CHAT,
                response=component("ChatCompletion"),
                events=component("ChatCompletionChunk"),
            )
        },
        "/v1/completions": {
            "post": _operation(
                "completions",
                "Text completion (SSE when stream is true)",
                body=_COMPLETION,
                response=component("Completion"),
                events=component("CompletionChunk"),
            )
        },
        **ANTHROPIC_PATHS,
        **RESPONSES_PATHS,
        "/v1/batch": {
            "post": _operation(
                "batch",
                "Several chat or completion requests in one call; each item carries its own result or error",
                body=_object(
                    ["requests"],
                    {
                        "model": {"type": "string"},
                        "max_tokens": _MAX_TOKENS,
                        "requests": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": ["string", "integer"]},
                                    "messages": _CHAT["properties"]["messages"],
                                    "prompt": _PROMPT,
                                    "max_tokens": _MAX_TOKENS,
                                },
                            },
                        },
                    },
                ),
            )
        },
        "/v1/embeddings": {
            "post": _operation(
                "embeddings",
                "Embeddings of one or more inputs",
                body=_object(
                    ["model", "input"],
                    {
                        "model": {"type": "string"},
                        "input": _PROMPT,
                        "encoding_format": {"enum": ["float", "base64", None]},
                        "dimensions": {"type": ["integer", "null"], "minimum": 1},
                        "user": STRING_OR_NULL,
                    },
                ),
                response=component("EmbeddingList"),
            )
        },
        "/v1/tokenize": {
            "post": _operation(
                "tokenize",
                "Token ids of a text, or of chat messages rendered by the model's template",
                body=_object(
                    [],
                    {
                        "model": STRING_OR_NULL,
                        "content": STRING_OR_NULL,
                        "prompt": STRING_OR_NULL,
                        "messages": {"type": ["array", "null"], "items": _MESSAGE},
                        "add_special": BOOL_OR_NULL,
                        "add_special_tokens": BOOL_OR_NULL,
                        "add_generation_prompt": BOOL_OR_NULL,
                        "with_pieces": BOOL_OR_NULL,
                        "return_token_strs": BOOL_OR_NULL,
                    },
                ),
                response=component("TokenizeResult"),
            )
        },
        "/v1/detokenize": {
            "post": _operation(
                "detokenize",
                "Text of token ids",
                body=_object(
                    ["tokens"], {"model": STRING_OR_NULL, "tokens": {"type": "array", "items": UINT32}}
                ),
                response=component("DetokenizeResult"),
            )
        },
        "/v1/models": {"get": _operation("models", "The model catalog", response=component("ModelList"))},
        "/v1/models/{model_id}": {
            "get": _operation("model", "One model", parameters=[_MODEL_ID], response=component("Model"))
        },
        "/v1/models/{model_id}/status": {
            "get": _operation(
                "model_status",
                "A model's load state and memory",
                parameters=[_MODEL_ID],
                response=component("ModelStatus"),
            )
        },
        "/v1/models/{model_id}/load": {
            "post": _operation(
                "model_load",
                "Load a model (NDJSON progress when stream is true)",
                parameters=[_MODEL_ID, {"name": "stream", "in": "query", "schema": _FLAG_QUERY}],
            )
        },
        "/v1/models/{model_id}/unload": {
            "post": _operation(
                "model_unload",
                "Unload a model (force ends its running requests)",
                parameters=[_MODEL_ID, {"name": "force", "in": "query", "schema": _FLAG_QUERY}],
            )
        },
        "/v1/auth/keys": {
            "post": _operation(
                "auth_keys_create",
                "Create an API key; the secret is in this response only",
                ok=201,
                body=_object(
                    ["name"],
                    {
                        "name": {"type": "string"},
                        "permissions": {"type": "array", "items": {"type": "string"}},
                        "expires_in": STRING_OR_NULL,
                        "rate_limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**32 - 1},
                    },
                ),
            ),
            "get": _operation("auth_keys_list", "API keys, without their secrets"),
        },
        "/v1/auth/keys/{key_id}": {
            "delete": _operation("auth_keys_revoke", "Revoke an API key", parameters=[_path_id("key_id")])
        },
        "/v1/auth/user": {"get": _operation("auth_user", "The caller's identity and permissions")},
        "/v1/convert": {
            "post": _operation(
                "convert_create",
                "Start a conversion job",
                ok=201,
                body=_object(
                    ["source_model", "target_format", "quantization"],
                    {
                        "source_model": {"type": "string"},
                        "target_format": {"type": "string"},
                        "quantization": {"type": "string"},
                        "optimization": {"enum": ["speed", "balanced", "size", None]},
                        "output_file": STRING_OR_NULL,
                    },
                ),
            ),
            "get": _operation("convert_list", "Conversion jobs"),
        },
        "/v1/convert/{job_id}": {
            "get": _operation("convert_get", "One conversion job", parameters=[_path_id("job_id")])
        },
        "/v1/convert/{job_id}/cancel": {
            "post": _operation("convert_cancel", "Cancel a conversion job", parameters=[_path_id("job_id")])
        },
        "/health": {"get": _operation("health", "Liveness and readiness of the gateway and the core")},
        "/metrics": {"get": _operation("metrics", "Prometheus metrics", content_type="text/plain")},
        "/openapi.json": {"get": _operation("openapi", "This document")},
        "/dashboard": {"get": _operation("dashboard", "The operator dashboard", content_type="text/html")},
        "/dashboard/{path}": {
            "get": _operation("dashboard_asset", "A file of the dashboard", parameters=[_path_id("path")])
        },
        "/docs": {"get": _operation("docs", "This document as a readable page", content_type="text/html")},
        "/docs/{path}": {
            "get": _operation(
                "docs_asset", "A script or style of the /docs page", parameters=[_path_id("path")]
            )
        },
    },
}


DOCUMENT["paths"].update(root_tokenizer_paths(DOCUMENT["paths"]))


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
