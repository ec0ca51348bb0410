"""JSON Schemas of the gateway's main response bodies, the components of the OpenAPI document (openapi.py).

Each mirrors the function that writes the body: adapters/openai/responses.py (completions, chunks, models,
tokenize), adapters/openai/embeddings.py and adapters/model_status.py. Objects stay open (a client must
ignore fields it does not know); tests/test_openapi_document.py validates real responses against closed
copies, so a field written but not described here fails there.
"""

from __future__ import annotations

from inferno.model_names import state_name
from inferno.v1 import model_service_pb2

from .openapi_schema import STRING_OR_NULL, Schema


def component(name: str) -> Schema:
    """A reference to one of RESPONSE_SCHEMAS (or the document's Error) by name."""
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Schema, optional: tuple[str, ...] = (), description: str | None = None) -> Schema:
    """An object that always carries every property except those named in optional."""
    schema: Schema = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


_STRING: Schema = {"type": "string"}
_INTEGER: Schema = {"type": "integer", "minimum": 0}
_NUMBER: Schema = {"type": "number"}
_UNIX_SECONDS: Schema = {"type": "integer", "minimum": 0, "description": "Unix time in seconds"}
_HUMAN_BYTES: Schema = {"type": "string", "description": "bytes in binary units: 512B, 120.5MB, 4.2GB"}
_FINISH_REASON: Schema = {"enum": ["stop", "length", "tool_calls"]}
_MODEL_STATES = sorted({state_name(value) for value in model_service_pb2.ModelState.values()})

_TOP_LOGPROB: Schema = _object(
    {"token": _STRING, "logprob": _NUMBER, "bytes": _array({"type": "integer", "minimum": 0, "maximum": 255})}
)
_TOKEN_LOGPROB: Schema = _object({**_TOP_LOGPROB["properties"], "top_logprobs": _array(_TOP_LOGPROB)})
_REFUSAL: Schema = {"type": "null", "description": "always null: OpenAI's refusals are not produced here"}
_REASONING: Schema = {
    **_STRING,
    "description": "the model's reasoning, apart from content (reasoning models only)",
}
_CHAT_LOGPROBS: Schema = _object(
    {"content": _array(_TOKEN_LOGPROB), "refusal": _REFUSAL},
    description="one entry per generated token, each with its top_logprobs alternatives",
)
_COMPLETION_LOGPROBS: Schema = _object(
    {
        "tokens": _array(_STRING),
        "token_logprobs": _array({"type": ["number", "null"]}),
        "top_logprobs": _array(
            {"type": ["object", "null"], "additionalProperties": _NUMBER, "description": "token -> logprob"}
        ),
        "text_offset": _array(_INTEGER),
    },
    description="under echo the prompt's tokens come first; the first has null logprob and top_logprobs",
)
_TOOL_CALL: Schema = _object(
    {
        "id": _STRING,
        "type": {"const": "function"},
        "function": _object({"name": _STRING, "arguments": {**_STRING, "description": "a JSON object"}}),
    }
)
_TOOL_CALL_DELTA: Schema = _object(
    {
        "index": _INTEGER,
        "id": _STRING,
        "type": {"const": "function"},
        "function": _object({"name": _STRING, "arguments": _STRING}, optional=("name",)),
    },
    optional=("id", "type"),
    description="id, type and function.name come on the first piece of each call only",
)
_USAGE: Schema = _object(
    {
        "prompt_tokens": _INTEGER,
        "completion_tokens": _INTEGER,
        "total_tokens": _INTEGER,
        "prompt_tokens_details": _object(
            {"cached_tokens": _INTEGER},
            description="cached_tokens: prompt tokens taken from the prefix cache rather than computed",
        ),
    }
)
_CHUNK_USAGE: Schema = {
    **_nullable(component("Usage")),
    "description": "with stream_options.include_usage: null on each chunk but the last, which has no choices",
}


def _head(object_name: str) -> Schema:
    return {"id": _STRING, "object": {"const": object_name}, "created": _UNIX_SECONDS, "model": _STRING}


_CHAT_COMPLETION = _object(
    {
        **_head("chat.completion"),
        "choices": _array(
            _object(
                {
                    "index": _INTEGER,
                    "message": _object(
                        {
                            "role": {"const": "assistant"},
                            "content": {
                                **STRING_OR_NULL,
                                "description": "null when it holds only tool calls",
                            },
                            "refusal": _REFUSAL,
                            "reasoning_content": _REASONING,
                            "tool_calls": _array(_TOOL_CALL),
                        },
                        optional=("reasoning_content", "tool_calls"),
                    ),
                    "logprobs": _nullable(_CHAT_LOGPROBS),
                    "finish_reason": _FINISH_REASON,
                }
            )
        ),
        "usage": component("Usage"),
    }
)
_CHAT_COMPLETION_CHUNK = _object(
    {
        **_head("chat.completion.chunk"),
        "choices": _array(
            _object(
                {
                    "index": _INTEGER,
                    "delta": _object(
                        {
                            "role": {"const": "assistant"},
                            "reasoning_content": _REASONING,
                            "content": _STRING,
                            "tool_calls": _array(_TOOL_CALL_DELTA),
                        },
                        optional=("role", "reasoning_content", "content", "tool_calls"),
                    ),
                    "logprobs": _nullable(_CHAT_LOGPROBS),
                    "finish_reason": _nullable(_FINISH_REASON),
                }
            )
        ),
        "usage": _CHUNK_USAGE,
    },
    optional=("usage",),
    description="one SSE event's data; the stream ends with data: [DONE]",
)
_COMPLETION_CHOICE: Schema = _object(
    {
        "text": _STRING,
        "index": _INTEGER,
        "logprobs": _nullable(_COMPLETION_LOGPROBS),
        "finish_reason": _FINISH_REASON,
    }
)
_COMPLETION = _object(
    {**_head("text_completion"), "choices": _array(_COMPLETION_CHOICE), "usage": component("Usage")}
)
_COMPLETION_CHUNK = _object(
    {
        **_head("text_completion"),
        "choices": _array(
            {
                **_COMPLETION_CHOICE,
                "properties": {
                    **_COMPLETION_CHOICE["properties"],
                    "finish_reason": _nullable(_FINISH_REASON),
                },
            }
        ),
        "usage": _CHUNK_USAGE,
    },
    optional=("usage",),
    description="one SSE event's data; the stream ends with data: [DONE]",
)
_EMBEDDING_LIST = _object(
    {
        "object": {"const": "list"},
        "data": _array(
            _object(
                {
                    "object": {"const": "embedding"},
                    "embedding": {
                        "oneOf": [
                            _array(_NUMBER),
                            {**_STRING, "contentEncoding": "base64", "description": "little-endian float32"},
                        ]
                    },
                    "index": _INTEGER,
                }
            )
        ),
        "model": _STRING,
        "usage": _object({"prompt_tokens": _INTEGER, "total_tokens": _INTEGER}),
    }
)
_MODEL = _object(
    {
        "id": _STRING,
        "object": {"const": "model"},
        "created": _UNIX_SECONDS,
        "owned_by": _STRING,
        "permission": {
            **_array({}),
            "maxItems": 0,
            "description": "always empty (older OpenAI clients read it)",
        },
        "root": _STRING,
        "parent": STRING_OR_NULL,
    }
)
_MODEL_LIST = _object({"object": {"const": "list"}, "data": _array(component("Model"))})
_MODEL_STATUS = _object(
    {
        "model_id": _STRING,
        "status": {"enum": _MODEL_STATES},
        "backend": {**_STRING, "description": "the model's file format"},
        "memory_usage": {**_nullable(_HUMAN_BYTES), "description": "null unless loaded"},
        "metrics": _object(
            {
                "total_requests": _INTEGER,
                "avg_latency_ms": _NUMBER,
                "tokens_per_second": _NUMBER,
                "last_used": {"type": ["string", "null"], "format": "date-time"},
                "memory_usage": _nullable(_HUMAN_BYTES),
                "queue_depth": _INTEGER,
                "running_sequences": _INTEGER,
            }
        ),
        "progress": {"type": ["number", "null"], "description": "0 to 1 while loading, else null"},
        "error": STRING_OR_NULL,
        "estimated_memory": _HUMAN_BYTES,
        "load_seconds": _NUMBER,
        "engine": _object(
            {
                "name": _STRING,
                "device": STRING_OR_NULL,
                "gpu_memory_used": _nullable(_HUMAN_BYTES),
                "running_sequences": _INTEGER,
                "waiting_sequences": _INTEGER,
                "decode_steps": _INTEGER,
                "max_sequences_per_step": _INTEGER,
                "last_step_sequences": _INTEGER,
                "kv_cache_usage": {**_NUMBER, "description": "fraction of the KV cache in use"},
                "max_parallel_sequences": _INTEGER,
                "prompt_tokens_total": _INTEGER,
                "generated_tokens_total": _INTEGER,
            }
        ),
    }
)
_TOKENIZE = _object(
    {
        "tokens": _array(_INTEGER),
        "count": _INTEGER,
        "max_model_len": {**_INTEGER, "description": "the model's context length"},
        "pieces": _array(
            _object(
                {
                    "id": _INTEGER,
                    "piece": {
                        "oneOf": [_STRING, _array(_INTEGER)],
                        "description": "the token's text, or its bytes when it holds part of a character",
                    },
                }
            )
        ),
        "token_strs": {**_array(_STRING), "description": "each token's text (vLLM's name), with pieces"},
    },
    optional=("pieces", "token_strs"),
)
_DETOKENIZE = _object(
    {"content": _STRING, "prompt": {**_STRING, "description": "the same text (vLLM's name)"}}
)

RESPONSE_SCHEMAS: dict[str, Schema] = {
    "ChatCompletion": _CHAT_COMPLETION,
    "ChatCompletionChunk": _CHAT_COMPLETION_CHUNK,
    "Completion": _COMPLETION,
    "CompletionChunk": _COMPLETION_CHUNK,
    "Usage": _USAGE,
    "EmbeddingList": _EMBEDDING_LIST,
    "Model": _MODEL,
    "ModelList": _MODEL_LIST,
    "ModelStatus": _MODEL_STATUS,
    "TokenizeResult": _TOKENIZE,
    "DetokenizeResult": _DETOKENIZE,
}
