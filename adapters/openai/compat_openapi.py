"""The OpenAPI parts of the compatibility surface, merged into adapters/openapi.py's document: the guided
decoding fields of chat and completions, and vLLM's tokenizer routes at the root."""

from __future__ import annotations

import copy

from ..openapi_schema import ERROR_REF, STRING_OR_NULL, Schema

# llama.cpp's grammar and vLLM's guided decoding, min_tokens and typical_p (at most one guided field).
GUIDED_PROPERTIES: Schema = {
    "typical_p": {"type": ["number", "null"], "description": "locally typical sampling, (0, 1]; 1 is off"},
    "min_tokens": {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": 2**32 - 1,
        "description": "no end of sequence and no stop string before this many tokens",
    },
    "grammar": {**STRING_OR_NULL, "description": "a GBNF grammar (rule root) the output matches"},
    "guided_json": {
        "type": ["object", "string", "null"],
        "description": "a JSON schema (or its JSON text) the output satisfies",
    },
    "guided_regex": {**STRING_OR_NULL, "description": "a regular expression the whole output matches"},
    "guided_choice": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "the output is exactly one of these strings",
    },
}


def root_tokenizer_paths(paths: Schema) -> Schema:
    """/tokenize and /detokenize (the /v1 operations under new ids) and /tokenizer_info."""
    root: Schema = {}
    for name in ("tokenize", "detokenize"):
        operation = copy.deepcopy(paths[f"/v1/{name}"]["post"])
        operation["operationId"] = f"{name}_root"
        operation["summary"] += " (vLLM's route)"
        root[f"/{name}"] = {"post": operation}
    root["/tokenizer_info"] = {"get": _tokenizer_info_operation()}
    return root


def _tokenizer_info_operation() -> Schema:
    string_or_null = {"type": ["string", "null"]}
    info = {
        "type": "object",
        "required": ["tokenizer_class", "model", "bos_token", "eos_token", "model_max_length"],
        "properties": {
            "tokenizer_class": {"type": "string"},
            "model": {"type": "string"},
            "bos_token": string_or_null,
            "eos_token": string_or_null,
            "add_bos_token": {"type": "boolean"},
            "add_eos_token": {"type": "boolean"},
            "model_max_length": {"type": "integer"},
            "vocab_size": {"type": "integer"},
            "chat_template": {"type": "string"},
        },
    }
    error = {"content": {"application/json": {"schema": ERROR_REF}}}
    return {
        "operationId": "tokenizer_info",
        "summary": "The tokenizer's settings: special tokens, context length, chat template (vLLM's route)",
        "parameters": [
            {"name": "model", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1}}
        ],
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": info}}},
            "4XX": {"description": "the request was refused", **error},
            "5XX": {"description": "the server failed", **error},
        },
    }
